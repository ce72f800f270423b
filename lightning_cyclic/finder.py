"""The LR range test engine: a short side-effect-free training run with a growing lr.

:func:`run_range_test` runs inside a ``fit`` (from a callback's ``on_fit_start``) and
trains as ``fit`` does, step by step through the same objects: the strategy's
``training_step`` and ``backward`` (DDP, FSDP and the precision context), the
module's ``optimizer_zero_grad``, ``optimizer_step`` and backward hooks, and the
precision plugin's optimizer step (its GradScaler, ``configure_gradient_clipping``,
``on_before_optimizer_step``). It steps the optimizer once per
``accumulate_grad_batches`` micro-batches (their mean loss is the point of the
curve), keeps the param groups' lr ratios, and reduces losses over ranks so every
rank sees one curve and one suggestion. A step the GradScaler skipped (overflowed
fp16 gradients) is not a point of the curve: that lr is tried again.

Nothing of this shows outside: no other callback sees its steps, no counter moves,
nothing is logged, and everything it changes (weights, optimizer, schedulers, RNGs,
the GradScaler, DataLoader generators) is put back from an in-memory
:class:`~lightning_cyclic.snapshot.Snapshot`. Under ``fast_dev_run`` it does not run.

A curve that reaches ``max_lr`` before the loss turns back up (the ``edge`` rule has nothing
to read) is extended: the sweep goes on from where it is, with the same spacing, up to
``extend`` times ``max_lr``. A curve that still has no reading gets a stated fallback for
``"auto"`` arguments (:func:`fallback`); ``RangeTestResult.outcome`` says which happened, and
:meth:`RangeTestResult.warning` is the one line that says so.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Generator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import lightning.pytorch as pl
import torch

from lightning_cyclic import _compat
from lightning_cyclic.optim import ParamGroupWriter, lr_ratios
from lightning_cyclic.shapes import OneCycleSchedule, RangeTestSweep, anneal_exp, anneal_linear
from lightning_cyclic.shapes._checks import check_choice, check_number
from lightning_cyclic.snapshot import Snapshot, dataloaders, loader_generators, rng_states, set_rng_states
from lightning_cyclic.suggest import (
    EDGE_LEVELS,
    RULES,
    Suggestion,
    ema,
    finite_prefix,
    minimum,
    read_edge,
    suggest,
    unreadable,
)

EVALUATE = ("auto", "train", "val")
# found: the rule read the configured sweep; extended: it read the sweep extended past max_lr; fallback: it
# read nothing and ``fallback`` holds what "auto" takes; skipped: no test ran; none: no reading, no fallback
OUTCOMES = ("found", "extended", "fallback", "skipped", "none")


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
    extend: float = 100.0
    trials: bool = True
    trial_steps: int | None = None

    def __post_init__(self) -> None:
        RangeTestSweep(min_lr=self.min_lr, max_lr=self.max_lr, num_steps=self.num_steps, mode=self.mode)
        check_number("smooth", self.smooth, 0, 1, high_open=True)
        check_number("diverge", self.diverge, 1, low_open=True)
        check_choice("suggestion", self.suggestion, tuple(RULES))
        check_choice("evaluate", self.evaluate, EVALUATE)
        check_number("val_batches", self.val_batches, 1, integer=True)
        check_number("extend", self.extend, 1)
        check_choice("trials", self.trials, (True, False))
        if self.trial_steps is not None:
            check_number("trial_steps", self.trial_steps, 2, integer=True)

    @property
    def sweep(self) -> RangeTestSweep:
        return RangeTestSweep(min_lr=self.min_lr, max_lr=self.max_lr, num_steps=self.num_steps, mode=self.mode)

    def lr(self, k: int) -> float:
        """The lr of sweep step ``k``; past ``num_steps - 1`` the sweep goes on with the same spacing
        (the sweep's own anneal, not held at ``max_lr`` as the ``RangeTestSweep`` schedule is)."""
        anneal = anneal_exp if self.mode == "exponential" else anneal_linear
        return anneal(self.min_lr, self.max_lr, max(k, 0) / (self.num_steps - 1))

    @property
    def extra_steps(self) -> int:
        """How many steps an extension may add: up to ``extend * max_lr``, and never more than ``num_steps``."""
        if self.extend <= 1:
            return 0
        if self.mode == "exponential":
            steps = math.log(self.extend) / math.log(self.max_lr / self.min_lr) * (self.num_steps - 1)
        else:
            steps = (self.extend - 1) * self.max_lr / (self.max_lr - self.min_lr) * (self.num_steps - 1)
        return min(math.floor(steps + 1e-9), self.num_steps)


@dataclass
class RangeTestResult:
    """The curve of a range test and its reading. ``suggestion.lr`` is the suggested lr (or ``None``).

    ``suggestion.confidence`` says how far to trust it. Where the rule found nothing, ``fallback``
    holds what ``"auto"`` arguments take instead (see :func:`fallback`); :attr:`chosen` is whichever
    of the two they take, ``outcome`` one of ``OUTCOMES``, and ``extra["extended_to"]`` the highest
    lr of a sweep that went on past ``max_lr``.
    """

    lrs: list[float]
    losses: list[float]
    config: RangeTestConfig
    suggestion: Suggestion
    stop_reason: str = ""
    seconds: float = 0.0
    optimizer_steps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    outcome: str = ""  # one of OUTCOMES; "" works it out from the rest
    fallback: Suggestion | None = None

    def __post_init__(self) -> None:
        if not self.outcome:
            if self.extra.get("skipped"):
                self.outcome = "skipped"
            elif self.suggestion:
                self.outcome = "extended" if "extended_to" in self.extra else "found"
            else:
                self.outcome = "fallback" if self.fallback else "none"
        check_choice("outcome", self.outcome, OUTCOMES)

    @property
    def chosen(self) -> Suggestion:
        """What ``"auto"`` arguments take: the suggestion as the short trials moved it (``extra["trials"]``,
        where they ran and chose), or where the rule read nothing, the fallback (if any)."""
        if not self.suggestion and self.fallback:
            return self.fallback
        return self._moved(self.suggestion)

    def _moved(self, s: Suggestion) -> Suggestion:
        """``s`` with its lr, and its good range with it, moved to the trials' choice."""
        trial = self.extra.get("trials") or {}
        if not s or self.suggestion.lr is None or trial.get("lr") is None:
            return s
        ratio = trial["lr"] / self.suggestion.lr

        def scaled(x: float | None) -> float | None:
            return None if x is None else x * ratio

        return replace(
            s,
            rule="trials",
            lr=s.lr * ratio,
            low=scaled(s.low),
            high=scaled(s.high),
            index=None,
            reason=f"{trial['reason']} (the {s.rule} rule read {s.lr:.3g}: {s.reason})",
        )

    def warning(self) -> str:
        """The one line to warn with: how the fallback came about, or why the suggestion is not to be
        trusted and what steadies the curve; ``""`` when neither applies."""
        s, c = self.suggestion, self.suggestion.confidence
        if self.outcome == "fallback" and self.fallback is not None:
            went = self.extra.get("extended_to")
            past = f" (the sweep went on past max_lr={self.config.max_lr:g} up to lr {went:.3g})" if went else ""
            return (
                f"LRFinder: the LR range test found no sound suggestion: {s.reason}{past}. 'auto' arguments take the "
                f"fallback lr={self.fallback.lr:.3g} instead ({self.fallback.rule}: {self.fallback.reason}); "
                f"to choose yourself, give them a number."
            )
        if s and c is not None and c.level == "low":
            remedies = [f"more num_steps (now {self.config.num_steps})"]
            if self.config.evaluate == "train" and self.extra.get("val_data"):
                remedies.append("evaluate='val' (the loss of fixed validation batches, not each step's training loss)")
            remedies.append("a larger batch size")
            return (
                f"LRFinder: low confidence in the suggested lr={s.lr:.3g} ({s.rule}): {c.describe()}. "
                f"To steady the curve, try {', '.join(remedies[:-1])} or {remedies[-1]}."
            )
        return ""

    @property
    def smoothed(self) -> list[float]:
        return ema([x if math.isfinite(x) else math.nan for x in self.losses], self.config.smooth)

    def suggest(self, rule: str | None = None, smooth: float | None = None, warmup: bool = True) -> Suggestion:
        """Read the same curve with another rule or smoothing, or for a schedule that does not warm up to the
        suggested lr (``warmup=False``: see :func:`~lightning_cyclic.suggest.suggest`)."""
        return suggest(
            self.lrs,
            self.losses,
            rule or self.config.suggestion,
            self.config.smooth if smooth is None else smooth,
            warmup=warmup,
        )

    def chosen_for(self, warmup: bool = True) -> Suggestion:
        """What ``"auto"`` arguments of a schedule that does (or does not) warm up to its peak take: the
        suggestion read for it, or where there is none, the fallback. ``chosen_for(warmup=True)`` is
        :attr:`chosen`."""
        if warmup or not self.suggestion:
            return self.chosen
        return self._moved(self.suggest(warmup=False))

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
            "outcome": self.outcome,
            "fallback": self.fallback.to_dict() if self.fallback is not None else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RangeTestResult:
        """The inverse of :meth:`to_dict`; keys added since a dict was saved take their defaults."""
        fallback = data.get("fallback")
        return cls(
            lrs=list(data["lrs"]),
            losses=[math.nan if x is None else float(x) for x in data["losses"]],
            config=RangeTestConfig(**data["config"]),
            suggestion=Suggestion.from_dict(data["suggestion"]),
            stop_reason=data.get("stop_reason", ""),
            seconds=data.get("seconds", 0.0),
            optimizer_steps=data.get("optimizer_steps", len(data["lrs"])),
            extra=dict(data.get("extra", {})),
            outcome=data.get("outcome", ""),
            fallback=Suggestion.from_dict(fallback) if fallback else None,
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
        """The loss against lr (log x axis), smoothed and raw, with the suggestion and its good range marked.

        Returns the matplotlib figure, saved at ``path`` when one is given; without a path nothing is written,
        and in a notebook the figure shows inline (``result.plot()`` as a cell's last line)."""
        from lightning_cyclic.plot import _pyplot

        plt = _pyplot()
        if ax is None:
            fig, ax = plt.subplots(figsize=(6.4, 3.8))
        else:
            fig = ax.figure
        n = len(self.lrs)
        ax.plot(self.lrs, self.losses[:n], color="0.75", linewidth=0.8, label="loss")
        ax.plot(self.lrs, self.smoothed[:n], color="tab:blue", label=f"smoothed (beta={self.config.smooth})")
        s = self.suggestion if self.suggestion else self.chosen  # the curve's reading (the trials' choice below)
        which = "" if s is self.suggestion else " (fallback)"
        if s.low is not None and s.high is not None:
            ax.axvspan(s.low, s.high, color="tab:green", alpha=0.12, label="good range")
        if s.lr is not None:
            reading = read_edge(*finite_prefix(self.lrs, self.losses[:n])) if s.rule == "edge" else None
            if reading is not None:
                ax.axvline(reading.at, color="tab:orange", linestyle=":", label=f"unstable from {reading.at:.3g}")
                label = f"suggestion{which}: {s.lr:.3g} (that / {reading.at / s.lr:.2g})"
            else:
                label = f"suggestion ({s.rule}{which}): {s.lr:.3g}"
            ax.axvline(s.lr, color="tab:red", linestyle="--", label=label)
        trials = self.extra.get("trials") or {}
        if trials.get("losses"):  # the short trials: each candidate's loss after its trial, and what they chose
            points = [(lr, x) for lr, x in zip(trials["lrs"], trials["losses"]) if x is not None]
            if points:
                ax.plot(*zip(*points), "x", color="tab:purple", markersize=7, label="loss after each short trial")
            if trials.get("lr") is not None:
                ax.axvline(trials["lr"], color="tab:purple", linestyle="-.", label=f"short trials: {trials['lr']:.3g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        finite = [x for x in self.smoothed[:n] if math.isfinite(x)]
        tried = [x for x in (self.extra.get("trials") or {}).get("losses") or [] if x is not None]
        lowest = min([x for x in self.losses[:n] if math.isfinite(x)] + finite + tried, default=None)
        if finite and lowest is not None:  # keep the divergence from flattening the interesting part
            top = min(max(finite), finite[0] * 1.5) if finite[0] > 0 else max(finite)
            top = max(top, finite[0])
            ax.set_ylim(lowest - 0.05 * abs(top - lowest), top + 0.05 * abs(top - lowest))
        found = self.suggestion
        ax.set_title(title or ("LR range test" + ("" if found else f": no suggestion ({found.reason})")))
        ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3, which="both")
        if path is not None:
            fig.tight_layout()
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=110)
        return fig


# ---------------------------------------------------------------------------
FAST_DEV_RUN = "fast_dev_run skips the LR range test"
SKIPPED_IN_A_ROW = 25  # a fresh fp16 GradScaler (scale 2**16) is down to 2**-9 after 25 overflows: stop there


def skipped_result(config: RangeTestConfig, reason: str) -> RangeTestResult:
    """The result of a range test that did not run: no curve, no suggestion, and why."""
    return RangeTestResult(
        lrs=[],
        losses=[],
        config=config,
        suggestion=Suggestion(rule=config.suggestion, lr=None, reason=reason),
        stop_reason=reason,
        optimizer_steps=0,
        extra={"skipped": reason},
        outcome="skipped",
    )


def fallback(lrs: list[float], losses: list[float], smooth: float, optimizer_lr: float | None) -> Suggestion | None:
    """What ``"auto"`` takes where the rule read nothing, the first of these that exists:

    1. fastai's ``valley`` reading, on a curve of at least ``MIN_POINTS`` finite losses that fell;
    2. a tenth of the lr of the lowest smoothed loss, on a shorter curve whose loss fell;
    3. the optimizer's own lr (the largest of its param groups'), where it is positive.
    """
    if not unreadable(lrs, losses, smooth):
        s = suggest(lrs, losses, "valley", smooth)
        return replace(s, reason=f"fastai's valley rule, {s.reason}")
    lrs, losses = finite_prefix(lrs, losses)
    smoothed = ema(losses, smooth)
    if len(lrs) >= 2 and min(smoothed[1:]) < smoothed[0]:
        return replace(
            minimum(lrs, losses, smoothed),
            reason=f"a tenth of the lr of the lowest smoothed loss, on {len(lrs)} finite points",
        )
    if optimizer_lr is not None and optimizer_lr > 0:
        return Suggestion("optimizer", optimizer_lr, optimizer_lr / 4, optimizer_lr, None, "the optimizer's own lr")
    return None


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


def _batches(loader: Any) -> Generator[Any, None, None]:
    """Batches forever, starting the loader over when it runs out."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("the train dataloader yielded no batches for the LR range test")


class _Silenced:
    """``self.log`` / ``self.log_dict`` are no-ops inside: the test's steps log nothing."""

    def __init__(self, module: pl.LightningModule):
        self.module = module

    def __enter__(self) -> None:
        def silent(*args: Any, **kwargs: Any) -> None:
            return None

        # instance attributes shadow the methods; deleting them brings the methods back
        setattr(self.module, "log", silent)  # noqa: B010
        setattr(self.module, "log_dict", silent)  # noqa: B010

    def __exit__(self, *exc: Any) -> None:
        delattr(self.module, "log")
        delattr(self.module, "log_dict")


class StepWatch:
    """Tells whether an optimizer step really changed the weights.

    A GradScaler that finds inf/NaN gradients skips ``optimizer.step()`` (or, for an optimizer that
    unscales itself, such as fused Adam, passes it ``found_inf`` and the step does nothing) and halves
    its scale. So a step happened when the optimizer's step post-hook fired and the scale did not drop.
    Use as a context manager (the hook is registered inside only), :meth:`begin` before each step.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, scaler: Any = None):
        self.optimizer = optimizer
        self.scaler = scaler if scaler is not None and scaler.is_enabled() else None
        self.calls = 0
        self._scale: float | None = None
        self._handle: Any = None

    def __enter__(self) -> StepWatch:
        register = getattr(self.optimizer, "register_step_post_hook", None)  # not on optimizers outside torch.optim
        self._handle = register(self._stepped) if register is not None else None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._handle is not None:
            self._handle.remove()

    def _stepped(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self.calls += 1

    def begin(self) -> None:
        self.calls = 0
        self._scale = float(self.scaler.get_scale()) if self.scaler is not None else None

    def stepped(self) -> bool:
        if self._handle is not None and self.calls == 0:
            return False
        return self._scale is None or self.scaler is None or float(self.scaler.get_scale()) >= self._scale


def run_range_test(trainer: pl.Trainer, pl_module: pl.LightningModule, config: RangeTestConfig) -> RangeTestResult:
    """Run the range test inside a ``fit`` whose strategy is set up (``on_fit_start`` or later).

    Under ``fast_dev_run`` nothing runs: the result has no curve and its suggestion says why.
    """
    if _compat.fast_dev_run(trainer):
        return skipped_result(config, FAST_DEV_RUN)
    if not pl_module.automatic_optimization:
        raise ValueError(
            "LRFinder needs automatic optimization (the LR range test steps the optimizer itself); "
            "this LightningModule sets automatic_optimization=False"
        )
    optimizers = trainer.optimizers
    if len(optimizers) != 1:
        raise ValueError(f"LRFinder works with one optimizer, got {len(optimizers)} from configure_optimizers")
    optimizer = optimizers[0]
    optimizer_lr = max(float(g["lr"]) for g in optimizer.param_groups)
    schedulers = [cfg.scheduler for cfg in trainer.lr_scheduler_configs]
    # Set up the dataloaders first, as fit would anyway; only the test is undone. Fit's order: validation
    # first, in the sanity check, whose RNG draws are undone (isolate_rng); then training, whose draws stay.
    # A fit with no sanity check (num_sanity_val_steps=0, a resume) sets its validation data up at its first
    # validation instead, where their draws move the training's random stream on: there the validation loop is
    # put back as it was after the test, so that the fit sets them up at that point, as it would have.
    val_before: dict[str, Any] | None = None
    if config.evaluate != "train" and _compat.has_val_source(trainer):
        if not _compat.runs_sanity_check(trainer):
            val_before = _compat.val_data_state(trainer)
        states = rng_states()
        _compat.setup_val_data(trainer)
        set_rng_states(states)
    _compat.setup_train_data(trainer)
    val_data = _has_val(trainer) if config.evaluate != "train" else _compat.has_val_source(trainer)
    if config.evaluate == "auto":
        config = replace(config, evaluate="val" if _has_val(trainer) else "train")
    loaders = dataloaders(trainer.train_dataloader, trainer.val_dataloaders)
    persistent = [loader for loader in loaders if getattr(loader, "persistent_workers", False)]
    snapshot = Snapshot(
        pl_module,
        [optimizer],
        schedulers,
        generators=loader_generators(loaders),
        stateful=[trainer.precision_plugin],  # the GradScaler's scale and growth tracker
    )
    callbacks = _compat.trainer_callbacks(trainer)
    # no schedule, logger or monitor sees the test's steps (the precision plugin calls them)
    _compat.set_trainer_callbacks(trainer, [])
    # fit's own persistent-worker iterators (set up for its next epoch) are set aside: the test starts its own
    kept = [(loader, _compat.swap_worker_iterator(loader, None)) for loader in persistent]
    start = time.perf_counter()
    trials: dict[str, Any] | None = None
    try:
        with _Silenced(pl_module):
            curve = _sweep(trainer, pl_module, optimizer, config)
            suggestion = suggest(curve.lrs, curve.losses, config.suggestion, config.smooth)
            if config.trials and config.suggestion == "edge" and suggestion.lr is not None:
                trials = _trials(trainer, pl_module, optimizer, config, suggestion.lr, snapshot)
    finally:
        _compat.set_trainer_callbacks(trainer, callbacks)
        for loader, iterator in kept:
            _compat.shutdown_workers(_compat.swap_worker_iterator(loader, iterator))
        snapshot.restore()
        if val_before is not None:
            _compat.set_val_data_state(trainer, val_before)
    seconds = time.perf_counter() - start
    extra: dict[str, Any] = {
        "world_size": trainer.world_size,
        "accumulate_grad_batches": trainer.accumulate_grad_batches,
        "skipped_steps": curve.skipped,
        "optimizer_lr": optimizer_lr,
        "val_data": val_data,
    }
    if curve.extended:
        extra["extended_to"] = curve.lrs[-1]
    if trials is not None:
        extra["trials"] = trials
    result = RangeTestResult(
        lrs=curve.lrs,
        losses=curve.losses,
        config=config,
        suggestion=suggestion,
        stop_reason=curve.stop_reason,
        seconds=seconds,
        optimizer_steps=len(curve.lrs),
        extra=extra,
        fallback=None if suggestion else fallback(curve.lrs, curve.losses, config.smooth, optimizer_lr),
    )
    if trainer.world_size > 1:  # identical on every rank already; rank 0's copy makes it certain
        result = RangeTestResult.from_dict(trainer.strategy.broadcast(result.to_dict(), src=0))
    return result


class _Curve(NamedTuple):
    lrs: list[float]
    losses: list[float]
    stop_reason: str
    skipped: int  # optimizer steps the GradScaler skipped, tried again at the same lr
    extended: bool = False  # the sweep went on past max_lr


def _needs_edge(lrs: list[float], losses: list[float], config: RangeTestConfig) -> bool:
    """The ``edge`` rule reads nothing off this curve only because the loss has not turned back up yet."""
    return config.suggestion == "edge" and not unreadable(lrs, losses, config.smooth) and read_edge(lrs, losses) is None


def _edge_complete(lrs: list[float], losses: list[float]) -> bool:
    """The loss has climbed back all of the way to its start: every level the ``edge`` rule reads is there."""
    reading = read_edge(lrs, losses)
    return reading is not None and reading.levels == len(EDGE_LEVELS)


def _no_sync(strategy: Any) -> Any:
    """No gradient all-reduce in this backward (DDP's ``no_sync``), as fit does before a window's last micro-batch."""
    block = getattr(strategy, "block_backward_sync", None)
    return block() if block is not None else contextlib.nullcontext()


class _Stepper:
    """Optimizer steps as fit takes them, one call each, on batches drawn from a fresh pass over the training
    data: the strategy's ``training_step`` and ``backward``, the module's zero_grad and ``optimizer_step`` with
    Lightning's closure, ``accumulate_grad_batches`` micro-batches a step. Use as a context manager."""

    def __init__(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer):
        self.trainer, self.pl_module, self.optimizer = trainer, pl_module, optimizer
        self.strategy = trainer.strategy
        self.accumulate = trainer.accumulate_grad_batches
        self.epoch = trainer.current_epoch
        self.device = self.strategy.root_device
        stepping = pl_module.optimizers()  # the LightningOptimizer fit hands to optimizer_step
        self.stepping = stepping[0] if isinstance(stepping, list) else stepping  # (one optimizer: checked)
        self.writer = ParamGroupWriter(optimizer, lr_ratios([g["lr"] for g in optimizer.param_groups]), "LRFinder")
        self.cycles = any("betas" in g or g.get("momentum", 0) > 0 for g in optimizer.param_groups)
        self.watch = StepWatch(optimizer, getattr(trainer.precision_plugin, "scaler", None))
        self.window: dict[int, torch.Tensor] = {}  # batch_idx -> loss of this window's micro-batches
        self.ran: set[int] = set()  # batch_idx of every closure that ran
        self.batch_idx = 0
        self.batches: Generator[Any, None, None] | None = None

    def __enter__(self) -> _Stepper:
        self.batches = _batches(self.trainer.train_dataloader)
        self.watch.__enter__()
        self.pl_module.train()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.watch.__exit__(*exc)
        if self.batches is not None:
            self.batches.close()

    def training_loss(self, batch: Any, batch_idx: int, on_device: bool = False) -> torch.Tensor | None:
        strategy = self.strategy
        loss = _loss_of(strategy.training_step(batch if on_device else strategy.batch_to_device(batch), batch_idx))
        if loss is None and self.trainer.world_size > 1:
            raise RuntimeError(
                f"training_step returned None for batch {batch_idx} of the LR range test under "
                f"{self.trainer.world_size} processes; each rank must return a loss (the gradient all-reduce waits "
                "for all)"
            )
        return loss

    def _closure(self, batch: Any, batch_idx: int) -> Any:
        """Lightning's automatic-optimization closure: training step, zero_grad at a window's start, backward."""

        @torch.enable_grad()
        def closure() -> torch.Tensor | None:
            self.ran.add(batch_idx)
            loss = self.training_loss(batch, batch_idx)
            if batch_idx % self.accumulate == 0:
                self.pl_module.on_before_zero_grad(self.optimizer)
                self.pl_module.optimizer_zero_grad(self.epoch, batch_idx, self.optimizer)
            if loss is None:
                return None
            self.window[batch_idx] = loss.detach().float()
            normalized = loss / self.accumulate
            result = normalized.detach().clone()  # the precision plugin scales the loss it is given
            self.strategy.backward(normalized, self.optimizer)
            return result

        return closure

    def step(self, lr: float, momentum: float | None = None, k: int = 0) -> tuple[float, bool]:
        """One optimizer step at ``lr`` (and ``momentum`` where the optimizer has one): the mean loss of its
        micro-batches over all ranks, and whether the optimizer really stepped (a GradScaler may skip it)."""
        assert self.batches is not None
        self.writer.write(lr, momentum if self.cycles else None)
        self.window.clear()
        self.ran.clear()
        self.watch.begin()
        strategy = self.strategy
        for i in range(self.accumulate):
            batch_idx = self.batch_idx
            closure = self._closure(next(self.batches), batch_idx)
            if i == self.accumulate - 1 or strategy.handles_gradient_accumulation:
                self.pl_module.optimizer_step(self.epoch, batch_idx, self.stepping, closure)
                if batch_idx not in self.ran:
                    raise ValueError(
                        f"{type(self.pl_module).__name__}.optimizer_step did not call optimizer_closure() in the "
                        "LR range test; it must, as in fit: optimizer.step(closure=optimizer_closure)"
                    )
            else:
                with _no_sync(strategy):
                    closure()
            self.batch_idx += 1
        stepped = 1.0 if self.watch.stepped() else 0.0
        window = self.window
        total = torch.stack(list(window.values())).sum() if window else torch.zeros((), device=self.device)
        local = torch.tensor([float(total), len(window), stepped], device=self.device)
        total, counted, stepped = strategy.reduce(local, reduce_op="mean").tolist()
        if counted == 0:
            raise ValueError(
                f"training_step returned None for all {self.accumulate} micro-batches of LR range test step {k}; "
                "the test needs a loss to read"
            )
        return total / counted, stepped >= 1 - 1e-6


def _sweep(
    trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer, config: RangeTestConfig
) -> _Curve:
    val_batches = _ValBatches(_val_batches(trainer, config), trainer.strategy) if config.evaluate == "val" else None
    lrs: list[float] = []
    losses: list[float] = []
    best = first = math.inf
    avg = 0.0
    skipped = in_a_row = 0
    k = 0
    limit, extended = config.num_steps, False
    with _Stepper(trainer, pl_module, optimizer) as stepper:
        while k < limit:
            lr = config.lr(k)
            value, stepped = stepper.step(lr, None, k)
            if not stepped and math.isfinite(value):  # the GradScaler skipped it: not a point
                skipped += 1
                in_a_row += 1
                if in_a_row >= SKIPPED_IN_A_ROW:
                    why = f"{in_a_row} optimizer steps in a row did not step the optimizer at lr {lr:.3g} (step {k})"
                    why += "; a GradScaler skips steps whose gradients overflow"
                    return _Curve(lrs, losses, why, skipped, extended)
                continue
            in_a_row = 0
            if val_batches is not None and math.isfinite(value):
                value = val_batches.loss(pl_module, stepper.training_loss, stepper.device)
            lrs.append(lr)
            losses.append(value)
            if not math.isfinite(value):
                return _Curve(lrs, losses, f"the loss became {value} at lr {lr:.3g} (step {k})", skipped, extended)
            avg = config.smooth * avg + (1 - config.smooth) * value
            smoothed = avg / (1 - config.smooth ** (k + 1))
            best = min(best, smoothed)
            first = smoothed if k == 0 else first
            if smoothed > config.diverge * best and smoothed > first:
                why = f"the smoothed loss passed {config.diverge:g}x its best and its start"
                past = ", past max_lr" if extended else ""
                return _Curve(lrs, losses, f"diverged at lr {lr:.3g} (step {k}{past}): {why}", skipped, extended)
            k += 1
            if extended and _edge_complete(lrs, losses):
                why = f"the loss climbed back to its start at lr {lr:.3g} (step {k - 1}, past max_lr)"
                return _Curve(lrs, losses, why, skipped, extended)
            if k == config.num_steps and config.extra_steps and _needs_edge(lrs, losses, config):
                limit, extended = limit + config.extra_steps, True  # the edge rule needs more: go on
    if extended:
        why = (
            f"reached max_lr after {config.num_steps} steps before the loss turned back up, went on to lr "
            f"{lrs[-1]:.3g} ({k - config.num_steps} more steps, extend={config.extend:g})"
        )
        return _Curve(lrs, losses, why, skipped, extended)
    return _Curve(lrs, losses, f"reached max_lr after {config.num_steps} steps", skipped)


# --- the second signal: short trials around the edge ----------------------------------------------------------
# Chosen on the range-test corpus (recipes/range_test_corpus, trials.py and analyse_trials.py), leave one task out:
TRIAL_LADDER = (-2, -1, 0, 1, 2)  # candidates: the edge suggestion times 2 ** j
TRIAL_SHARE = 0.03  # a trial's length, as a share of the fit's optimizer steps ...
TRIAL_MIN_STEPS = 30  # ... and at least this many
TRIAL_BIAS = 2**0.5  # a short run favours a bolder peak than the whole run wants: the pick is divided by this


def trial_length(config: RangeTestConfig, total: float) -> int | None:
    """Optimizer steps of one trial in a fit of ``total`` steps; ``None`` where the fit's length is unknown."""
    if config.trial_steps is not None:
        return config.trial_steps
    if not math.isfinite(total) or total <= 0:
        return None
    return max(TRIAL_MIN_STEPS, round(TRIAL_SHARE * total))


def _trial(
    trainer: pl.Trainer,
    pl_module: pl.LightningModule,
    optimizer: torch.optim.Optimizer,
    peak: float,
    steps: int,
    val_batches: _ValBatches | None,
) -> float:
    """One-cycle compressed to ``steps`` at ``peak`` from the weights as they are; the validation loss after it
    (the training loss of its last quarter where there is no validation data); ``inf`` where it blew up."""
    shape = OneCycleSchedule(max_lr=peak, total_steps=steps)
    tail: list[float] = []
    with _Stepper(trainer, pl_module, optimizer) as stepper:
        for k in range(steps):
            lr, momentum = shape(k)
            value, _ = stepper.step(lr, momentum, k)
            if not math.isfinite(value):
                return math.inf
            if k >= steps - max(1, steps // 4):
                tail.append(value)
        if val_batches is not None:
            value = val_batches.loss(pl_module, stepper.training_loss, stepper.device)
            return value if math.isfinite(value) else math.inf
    return sum(tail) / len(tail)


def _trials(
    trainer: pl.Trainer,
    pl_module: pl.LightningModule,
    optimizer: torch.optim.Optimizer,
    config: RangeTestConfig,
    edge: float,
    snapshot: Snapshot,
) -> dict[str, Any]:
    """The short trials at ``edge * 2 ** j`` (``TRIAL_LADDER``), each from the state in ``snapshot``; what they
    chose: the candidate of the lowest loss divided by ``TRIAL_BIAS``; where every trial blew up, a quarter of
    the lowest candidate."""
    steps = trial_length(config, float(trainer.estimated_stepping_batches))
    if steps is None:
        return {"lr": None, "reason": "the fit's length is unknown (max_steps and max_epochs are -1)"}
    val_batches = _ValBatches(_val_batches(trainer, config), trainer.strategy) if config.evaluate == "val" else None
    candidates = [edge * 2.0**j for j in TRIAL_LADDER]
    losses = []
    for peak in candidates:
        snapshot.restore()
        losses.append(_trial(trainer, pl_module, optimizer, peak, steps, val_batches))
    read = "validation loss" if val_batches is not None else "training loss of the last quarter"
    out: dict[str, Any] = {"lrs": candidates, "losses": [x if math.isfinite(x) else None for x in losses]}
    out.update(steps=steps, evaluated=read)
    if not any(math.isfinite(x) for x in losses):  # even a quarter of the edge blew up: far below it, not at it
        lr = candidates[0] / 4
        reason = (
            f"all {len(losses)} trials of {steps} steps blew up, the lowest at {candidates[0]:.3g}: a quarter of that"
        )
        return {**out, "lr": lr, "reason": reason}
    best = min(range(len(losses)), key=lambda i: (losses[i], i))
    lr = candidates[best] / TRIAL_BIAS
    j = TRIAL_LADDER[best]
    reason = (
        f"{len(candidates)} trials of {steps} steps (one-cycle) at the edge x 2^{TRIAL_LADDER[0]}..{TRIAL_LADDER[-1]}: "
        f"the lowest {read} ({losses[best]:.4g}) at x 2^{j}, divided by {TRIAL_BIAS:.3g} for the short horizon"
    )
    return {**out, "lr": lr, "reason": reason}


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


class _NotMergeable(Exception):
    pass


def merge_batches(batches: list[Any]) -> Any:
    """The batches as one, concatenated along the first dimension, where every batch has the same structure
    (tensors, or plain tuples, lists, named tuples and dicts of them) and the tensors agree in everything but
    their first dimension; raises ``_NotMergeable`` otherwise."""
    first = batches[0]
    if isinstance(first, torch.Tensor):
        if first.dim() == 0 or not all(
            isinstance(b, torch.Tensor)
            and b.shape[1:] == first.shape[1:]
            and b.dtype == first.dtype
            and b.device == first.device
            for b in batches
        ):
            raise _NotMergeable
        return torch.cat(batches)
    kind = type(first)
    if kind in (tuple, list) or (issubclass(kind, tuple) and hasattr(kind, "_fields")):
        if not all(type(b) is kind and len(b) == len(first) for b in batches):
            raise _NotMergeable
        parts = [merge_batches([b[i] for b in batches]) for i in range(len(first))]
        return kind(*parts) if hasattr(kind, "_fields") else kind(parts)
    if kind is dict:
        if not all(type(b) is dict and b.keys() == first.keys() for b in batches):
            raise _NotMergeable
        return {k: merge_batches([b[k] for b in batches]) for k in first}
    raise _NotMergeable


class _ValBatches:
    """The fixed validation batches of ``evaluate="val"``, moved to the device once (the module's transfer hooks
    run once per batch, not once per step), and read as one concatenated batch where they merge (one forward
    per step instead of ``val_batches``; the mean loss is the same for losses averaged over equal batches).
    Where the merged batch cannot be built, or its first evaluation raises (a model that expects its batch size,
    memory), they are read one by one from then on."""

    def __init__(self, batches: list[Any], strategy: Any):
        self.batches = [strategy.batch_to_device(b) for b in batches]
        self.merged: Any = None
        if len(self.batches) > 1:
            with contextlib.suppress(_NotMergeable):
                self.merged = merge_batches(self.batches)
        self.strategy = strategy
        self.checked = False

    @torch.no_grad()
    def loss(self, pl_module: pl.LightningModule, training_loss: Any, device: Any) -> float:
        """The mean loss of the batches, through ``training_step`` in eval mode, over all ranks."""
        modes = [(m, m.training) for m in pl_module.modules()]
        pl_module.eval()
        try:
            total = None
            if self.merged is not None:
                try:
                    loss = training_loss(self.merged, 0, on_device=True)
                    total = torch.zeros((), device=device) if loss is None else loss.float()
                except Exception:
                    if self.checked:
                        raise
                    self.merged = None  # read them one by one from now on
                self.checked = True
            if total is None:
                total = torch.zeros((), device=device)
                for i, batch in enumerate(self.batches):
                    loss = training_loss(batch, i, on_device=True)
                    if loss is not None:
                        total += loss.float()
                total /= max(len(self.batches), 1)
        finally:
            for module, training in modes:  # as they were: a part frozen in eval mode stays so
                module.training = training
        return float(self.strategy.reduce(total, reduce_op="mean"))
