"""One optimizer step of the range test at a given lr, as ``fit`` takes it.

:class:`Stepper` draws batches from a fresh pass over the training data and goes through the objects ``fit``
uses: the strategy's ``training_step`` and ``backward`` (DDP, FSDP and the precision context), the module's
``optimizer_zero_grad``, ``optimizer_step`` and backward hooks, and the precision plugin's optimizer step (its
GradScaler, ``configure_gradient_clipping``, ``on_before_optimizer_step``). :class:`StepWatch` tells whether the
optimizer really stepped; :class:`Silenced` keeps ``self.log`` quiet meanwhile.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from typing import Any

import lightning.pytorch as pl
import torch

from lightning_cyclic.optim import ParamGroupWriter, lr_ratios


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


class Silenced:
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


def _no_sync(strategy: Any) -> Any:
    """No gradient all-reduce in this backward (DDP's ``no_sync``), as fit does before a window's last micro-batch."""
    block = getattr(strategy, "block_backward_sync", None)
    return block() if block is not None else contextlib.nullcontext()


class Stepper:
    """Optimizer steps as fit takes them, one call each, on batches drawn from a fresh pass over the training
    data: the strategy's ``training_step`` and ``backward``, the module's zero_grad and ``optimizer_step`` with
    Lightning's closure, ``accumulate_grad_batches`` micro-batches a step. Use as a context manager."""

    def __init__(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer):
        self.trainer, self.pl_module, self.optimizer = trainer, pl_module, optimizer
        self.strategy = trainer.strategy
        self.accumulate = trainer.accumulate_grad_batches
        self.epoch = trainer.current_epoch
        self.device = self.strategy.root_device
        self.single = trainer.world_size == 1
        stepping = pl_module.optimizers()  # the LightningOptimizer fit hands to optimizer_step
        self.stepping = stepping[0] if isinstance(stepping, list) else stepping  # (one optimizer: checked)
        self.writer = ParamGroupWriter(optimizer, lr_ratios([g["lr"] for g in optimizer.param_groups]), "LRFinder")
        self.cycles = any("betas" in g or g.get("momentum", 0) > 0 for g in optimizer.param_groups)
        self.watch = StepWatch(optimizer, getattr(trainer.precision_plugin, "scaler", None))
        self.window: dict[int, torch.Tensor] = {}  # batch_idx -> loss of this window's micro-batches
        self.ran: set[int] = set()  # batch_idx of every closure that ran
        self.batch_idx = 0
        self.batches: Generator[Any, None, None] | None = None

    def __enter__(self) -> Stepper:
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

        def closure() -> torch.Tensor | None:
            with torch.enable_grad():  # (as ``@torch.enable_grad()`` would, without wrapping a new closure each step)
                self.ran.add(batch_idx)
                loss = self.training_loss(batch, batch_idx)
                if batch_idx % self.accumulate == 0:
                    self.pl_module.on_before_zero_grad(self.optimizer)
                    self.pl_module.optimizer_zero_grad(self.epoch, batch_idx, self.optimizer)
                if loss is None:
                    return None
                self.window[batch_idx] = loss.detach().float()
                # (x / 1 is x, and so are its gradients: one tensor op less a step where nothing accumulates)
                normalized = loss / self.accumulate if self.accumulate != 1 else loss
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
        values = list(self.window.values())
        total = values[0] if len(values) == 1 else torch.stack(values).sum() if values else None
        if self.single:  # nothing to reduce: the same numbers without three tensor ops a step
            if total is None:
                raise self._no_loss(k)
            return float(total) / len(values), self.watch.stepped()
        stepped = 1.0 if self.watch.stepped() else 0.0
        local = torch.tensor([float(total) if total is not None else 0.0, len(values), stepped], device=self.device)
        total, counted, stepped = strategy.reduce(local, reduce_op="mean").tolist()
        if counted == 0:
            raise self._no_loss(k)
        return total / counted, stepped >= 1 - 1e-6

    def _no_loss(self, k: int) -> ValueError:
        return ValueError(
            f"training_step returned None for all {self.accumulate} micro-batches of LR range test step {k}; "
            "the test needs a loss to read"
        )
