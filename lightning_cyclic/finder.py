"""The LR range test engine: a short side-effect-free training run with a growing lr.

:func:`run_range_test` drives the LightningModule's own ``training_step``
inside a running ``fit`` (from a callback's ``on_fit_start``), without the
Trainer's loops: no other callback sees its steps, no counter moves, nothing
is logged, and everything it changes is put back from an in-memory
:class:`~lightning_cyclic.snapshot.Snapshot`. It steps the optimizer once per
``accumulate_grad_batches`` micro-batches (the loss is their mean), keeps the
param groups' lr ratios, runs under the Trainer's precision, and under DDP
all-reduces gradients and losses so every rank sees one curve and one suggestion.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from lightning_cyclic.optim import ParamGroupWriter, lr_ratios
from lightning_cyclic.shapes import RangeTestSweep
from lightning_cyclic.shapes._checks import check_choice, check_number
from lightning_cyclic.snapshot import Snapshot
from lightning_cyclic.suggest import RULES, Suggestion, ema, suggest

EVALUATE = ("auto", "train", "val")


@dataclass(frozen=True)
class RangeTestConfig:
    """What to sweep and how to read it. See :class:`~lightning_cyclic.LRFinder` for the arguments."""

    min_lr: float = 1e-7
    max_lr: float = 10.0
    num_steps: int = 100
    mode: str = "exponential"
    smooth: float = 0.9
    diverge: float = 4.0
    suggestion: str = "edge"
    evaluate: str = "auto"
    val_batches: int = 4

    def __post_init__(self) -> None:
        RangeTestSweep(min_lr=self.min_lr, max_lr=self.max_lr, num_steps=self.num_steps, mode=self.mode)
        check_number("smooth", self.smooth, 0, 1, high_open=True)
        check_number("diverge", self.diverge, 1, low_open=True)
        check_choice("suggestion", self.suggestion, tuple(RULES))
        check_choice("evaluate", self.evaluate, EVALUATE)
        check_number("val_batches", self.val_batches, 1, integer=True)

    @property
    def sweep(self) -> RangeTestSweep:
        return RangeTestSweep(min_lr=self.min_lr, max_lr=self.max_lr, num_steps=self.num_steps, mode=self.mode)


@dataclass
class RangeTestResult:
    """The curve of a range test and its reading. ``suggestion.lr`` is the suggested lr (or ``None``)."""

    lrs: list[float]
    losses: list[float]
    config: RangeTestConfig
    suggestion: Suggestion
    stop_reason: str = ""
    seconds: float = 0.0
    optimizer_steps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def smoothed(self) -> list[float]:
        return ema([x if math.isfinite(x) else math.nan for x in self.losses], self.config.smooth)

    def suggest(self, rule: str | None = None, smooth: float | None = None) -> Suggestion:
        """Read the same curve with another rule or smoothing."""
        return suggest(
            self.lrs,
            self.losses,
            rule or self.config.suggestion,
            self.config.smooth if smooth is None else smooth,
        )

    # records ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "lrs": list(self.lrs),
            "losses": [x if math.isfinite(x) else None for x in self.losses],
            "config": asdict(self.config),
            "suggestion": self.suggestion.to_dict(),
            "stop_reason": self.stop_reason,
            "seconds": self.seconds,
            "optimizer_steps": self.optimizer_steps,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RangeTestResult:
        return cls(
            lrs=list(data["lrs"]),
            losses=[math.nan if x is None else float(x) for x in data["losses"]],
            config=RangeTestConfig(**data["config"]),
            suggestion=Suggestion(**data["suggestion"]),
            stop_reason=data.get("stop_reason", ""),
            seconds=data.get("seconds", 0.0),
            optimizer_steps=data.get("optimizer_steps", len(data["lrs"])),
            extra=dict(data.get("extra", {})),
        )

    def save_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load_json(cls, path: str | Path) -> RangeTestResult:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def plot(self, path: str | Path | None = None, ax: Any = None, title: str | None = None) -> Any:
        """The loss against lr (log x axis), smoothed and raw, with the suggestion and its good range marked."""
        from lightning_cyclic.plot import _pyplot

        plt = _pyplot()
        if ax is None:
            fig, ax = plt.subplots(figsize=(6.4, 3.8))
        else:
            fig = ax.figure
        n = len(self.lrs)
        ax.plot(self.lrs, self.losses[:n], color="0.75", linewidth=0.8, label="loss")
        ax.plot(self.lrs, self.smoothed[:n], color="tab:blue", label=f"smoothed (beta={self.config.smooth})")
        s = self.suggestion
        if s.low is not None and s.high is not None:
            ax.axvspan(s.low, s.high, color="tab:green", alpha=0.12, label="good range")
        if s.lr is not None:
            ax.axvline(s.lr, color="tab:red", linestyle="--", label=f"{s.rule}: {s.lr:.3g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        finite = [x for x in self.smoothed[:n] if math.isfinite(x)]
        lowest = min([x for x in self.losses[:n] if math.isfinite(x)] + finite, default=None)
        if finite and lowest is not None:  # keep the divergence from flattening the interesting part
            top = min(max(finite), finite[0] * 1.5) if finite[0] > 0 else max(finite)
            top = max(top, finite[0])
            ax.set_ylim(lowest - 0.05 * abs(top - lowest), top + 0.05 * abs(top - lowest))
        ax.set_title(title or ("LR range test" + ("" if s.lr is not None else f": no suggestion ({s.reason})")))
        ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3, which="both")
        if path is not None:
            fig.tight_layout()
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=110)
        return fig


# ---------------------------------------------------------------------------
def _loss_of(output: Any) -> torch.Tensor | None:
    if output is None:
        return None
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict) and "loss" in output:
        return output["loss"]
    raise TypeError(
        f"training_step must return a loss tensor, a dict with a 'loss' key, or None; got {type(output).__name__}"
    )


def _batches(loader: Any) -> Iterator[Any]:
    """Batches forever, starting the loader over when it runs out."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("the train dataloader yielded no batches for the LR range test")


def _distributed(trainer: pl.Trainer) -> bool:
    return trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()


def _all_reduce_mean_(tensors: list[torch.Tensor], world_size: int) -> None:
    """Average tensors across ranks in one collective."""
    if not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    torch.distributed.all_reduce(flat)
    flat /= world_size
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()


class _Silenced:
    """``self.log`` / ``self.log_dict`` are no-ops inside: the test's steps log nothing."""

    def __init__(self, module: pl.LightningModule):
        self.module = module

    def __enter__(self) -> None:
        self.module.log = lambda *args, **kwargs: None
        self.module.log_dict = lambda *args, **kwargs: None

    def __exit__(self, *exc: Any) -> None:
        del self.module.log
        del self.module.log_dict


def run_range_test(trainer: pl.Trainer, pl_module: pl.LightningModule, config: RangeTestConfig) -> RangeTestResult:
    """Run the range test inside a ``fit`` whose strategy is set up (``on_fit_start`` or later)."""
    if not pl_module.automatic_optimization:
        raise ValueError(
            "LRFinder needs automatic optimization (the LR range test steps the optimizer itself); "
            "this LightningModule sets automatic_optimization=False"
        )
    optimizers = trainer.optimizers
    if len(optimizers) != 1:
        raise ValueError(f"LRFinder works with one optimizer, got {len(optimizers)} from configure_optimizers")
    optimizer = optimizers[0]
    schedulers = [cfg.scheduler for cfg in trainer.lr_scheduler_configs]
    # Set up the dataloaders first, as fit would anyway (this draws from the RNGs): only the test is undone.
    trainer.fit_loop.setup_data()
    if config.evaluate != "train":
        val_loop = trainer.fit_loop.epoch_loop.val_loop
        if val_loop._data_source.is_defined():  # as fit would, when it has validation data at all
            val_loop.setup_data()
        if config.evaluate == "auto":
            config = replace(config, evaluate="val" if _has_val(trainer) else "train")
    snapshot = Snapshot(pl_module, [optimizer], schedulers)
    start = time.perf_counter()
    try:
        with _Silenced(pl_module):
            lrs, losses, stop_reason = _sweep(trainer, pl_module, optimizer, config)
    finally:
        snapshot.restore()
    seconds = time.perf_counter() - start
    result = RangeTestResult(
        lrs=lrs,
        losses=losses,
        config=config,
        suggestion=suggest(lrs, losses, config.suggestion, config.smooth),
        stop_reason=stop_reason,
        seconds=seconds,
        optimizer_steps=len(lrs),
        extra={"world_size": trainer.world_size, "accumulate_grad_batches": trainer.accumulate_grad_batches},
    )
    if trainer.world_size > 1:  # identical on every rank already; rank 0's copy makes it certain
        result = RangeTestResult.from_dict(trainer.strategy.broadcast(result.to_dict(), src=0))
    return result


def _sweep(
    trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer, config: RangeTestConfig
) -> tuple[list[float], list[float], str]:
    strategy = trainer.strategy
    precision = trainer.precision_plugin
    accumulate = trainer.accumulate_grad_batches
    distributed = _distributed(trainer)
    device = strategy.root_device
    scaler = torch.amp.GradScaler(device.type) if getattr(precision, "scaler", None) is not None else None
    params = [p for group in optimizer.param_groups for p in group["params"]]
    writer = ParamGroupWriter(optimizer, lr_ratios([g["lr"] for g in optimizer.param_groups]), owner="LRFinder")
    sweep = config.sweep

    batches = _batches(trainer.train_dataloader)
    val_batches = _val_batches(trainer, config) if config.evaluate == "val" else None

    def step_loss(batch: Any, batch_idx: int) -> torch.Tensor | None:
        batch = strategy.batch_to_device(batch)
        with precision.train_step_context():
            return _loss_of(pl_module.training_step(batch, batch_idx))

    lrs: list[float] = []
    losses: list[float] = []
    best = first = math.inf
    avg = 0.0
    batch_idx = 0
    pl_module.train()
    for k in range(config.num_steps):
        lr = sweep.lr(k)
        writer.write(lr, None)
        optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=device)
        counted = torch.zeros((), device=device)
        for _ in range(accumulate):
            loss = step_loss(next(batches), batch_idx)
            batch_idx += 1
            if loss is None:
                continue
            scaled = loss / accumulate
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
            total += loss.detach().float()
            counted += 1
        grads = [p.grad for p in params if p.grad is not None]
        if distributed:
            _all_reduce_mean_([*grads, total.view(1), counted.view(1)], trainer.world_size)
        if float(counted) == 0:
            raise ValueError("training_step returned None for every batch of the LR range test")
        if scaler is not None:
            scaler.unscale_(optimizer)
        _clip(trainer, params)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if val_batches is not None:
            value = _evaluate(pl_module, val_batches, step_loss, distributed, trainer.world_size, device)
        else:
            value = float(total / counted)
        lrs.append(lr)
        losses.append(value)
        if not math.isfinite(value):
            return lrs, losses, f"the loss became {value} at lr {lr:.3g} (step {k})"
        avg = config.smooth * avg + (1 - config.smooth) * value
        smoothed = avg / (1 - config.smooth ** (k + 1))
        best = min(best, smoothed)
        first = smoothed if k == 0 else first
        if smoothed > config.diverge * best and smoothed > first:
            why = f"the smoothed loss passed {config.diverge:g}x its best and its start"
            return lrs, losses, f"diverged at lr {lr:.3g} (step {k}): {why}"
    return lrs, losses, f"reached max_lr after {config.num_steps} steps"


def _clip(trainer: pl.Trainer, params: list[torch.nn.Parameter]) -> None:
    clip = trainer.gradient_clip_val
    if not clip:
        return
    if trainer.gradient_clip_algorithm == "value":
        torch.nn.utils.clip_grad_value_(params, clip)
    else:
        torch.nn.utils.clip_grad_norm_(params, clip)


def _has_val(trainer: pl.Trainer) -> bool:
    loaders = trainer.val_dataloaders
    if loaders is None or trainer.limit_val_batches == 0:
        return False
    return not isinstance(loaders, (list, tuple)) or len(loaders) > 0


def _val_batches(trainer: pl.Trainer, config: RangeTestConfig) -> list[Any]:
    loaders = trainer.val_dataloaders
    if loaders is None:
        raise ValueError("LRFinder(evaluate='val') needs a validation dataloader; this fit has none")
    loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
    out = []
    for batch in loader:
        out.append(batch)
        if len(out) == config.val_batches:
            break
    return out


@torch.no_grad()
def _evaluate(pl_module, batches, step_loss, distributed, world_size, device) -> float:
    pl_module.eval()
    total = torch.zeros((), device=device)
    for i, batch in enumerate(batches):
        loss = step_loss(batch, i)
        if loss is not None:
            total += loss.float()
    pl_module.train()
    total /= max(len(batches), 1)
    if distributed:
        _all_reduce_mean_([total.view(1)], world_size)
    return float(total)
