"""What a :class:`~lightning_cyclic.Guard`'s rollback does: it puts back the weights, every optimizer's state, the
GradScaler's and the running averages of EMA/SWA callbacks, copied to the CPU every few steps into the memory of
the copy they replace, and it scales the lr of every later step."""

from __future__ import annotations

import copy
import math
from collections import deque
from typing import Any, cast

import lightning.pytorch as pl
import torch

from lightning_cyclic import _compat
from lightning_cyclic.callbacks.blowup import median

# a snapshot becomes the good one only if its loss is at most this many times the good one's: a run that has
# drifted up since (the weights damaged by a jump the rules did not call a blow-up) is not where to roll back to
WORSE = 1.5

_SHARED = frozenset((int, float, bool, str, type(None)))  # values a snapshot may share: none changes in place


def _copy(value: Any, into: Any, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> Any:
    """A copy of ``value`` with every tensor on the CPU: a tensor of ``into`` (an earlier copy of the same structure)
    of the same shape and dtype is reused, its copy listed in ``pairs`` (to copy all at once); others are new."""
    kind = type(value)
    if kind in _SHARED:
        return value
    if isinstance(value, torch.Tensor):
        if (
            type(into) is torch.Tensor
            and (kind is torch.Tensor or kind is torch.nn.Parameter)  # (not a subclass: a sharded tensor)
            and into.shape == value.shape
            and into.dtype == value.dtype
            and value.layout == into.layout == torch.strided
        ):
            pairs.append((into, value))
            return into
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        old = into if isinstance(into, dict) else {}
        return {k: v if type(v) in _SHARED else _copy(v, old.get(k), pairs) for k, v in value.items()}
    if kind is list or kind is tuple:
        olds = into if type(into) is kind and len(into) == len(value) else (None,) * len(value)
        items = [v if type(v) in _SHARED else _copy(v, o, pairs) for v, o in zip(value, olds)]
        return items if kind is list else tuple(items)
    return copy.deepcopy(value)


class RollbackPoint:
    """What a rollback puts back: the weights, every optimizer's state, the precision plugin's (a GradScaler's)
    state, the running average of each weight-averaging callback (Lightning's ``EMAWeightAveraging``,
    ``WeightAveraging``, ``StochasticWeightAveraging``) and the loss history as it was, all copied to the CPU (into
    the memory of ``reuse``, a snapshot no longer needed, where it fits)."""

    weights: dict[str, torch.Tensor]
    optimizers: list[dict[str, Any]]
    precision: dict[str, Any]
    averages: list[tuple[Any, dict[str, Any]]]

    @torch.no_grad()
    def __init__(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        history: deque[float],
        patience: int,
        reuse: RollbackPoint | None = None,
        lowest: float = math.inf,
    ) -> None:
        self.step = trainer.global_step
        pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
        old = reuse.optimizers if reuse is not None else []
        self.weights = _copy(pl_module.state_dict(), reuse and reuse.weights, pairs)
        self.optimizers = [
            _copy(opt.state_dict(), old[i] if i < len(old) else None, pairs) for i, opt in enumerate(trainer.optimizers)
        ]
        self.precision = _copy(trainer.precision_plugin.state_dict(), reuse and reuse.precision, pairs)
        # the running averages of Lightning's weight-averaging callbacks (EMA, SWA): the steps rolled back leave them
        olds = dict(reuse.averages) if reuse is not None else {}
        self.averages = [(cb, _copy(state, olds.get(cb), pairs)) for cb, state in _compat.weight_averages(trainer)]
        if pairs:
            intos, values = zip(*pairs)
            torch._foreach_copy_(intos, values)
        self.history = list(history)
        self.lowest = lowest  # the run's lowest median of ``patience`` steps so far (the Guard's rules)
        self.relearning = False  # taken after a rollback to before the run had learnt, before it learnt again
        # the loss where it was taken (the median of the last ``patience`` steps; None before there are any)
        self.level = median(self.history[-patience:]) if history else None

    def no_worse_than(self, other: RollbackPoint) -> bool:
        """Whether this snapshot's loss is at most ``WORSE`` times the other's (it may replace it as the good one)."""
        return other.level is None or (self.level is not None and self.level <= WORSE * other.level)

    @torch.no_grad()
    def restore(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Put it back into the model, the optimizers and the precision plugin (it stays, to be put back again)."""
        pl_module.load_state_dict(self.weights)
        for optimizer, state in zip(trainer.optimizers, self.optimizers):
            # the optimizer's state goes back; its hyperparameters (the schedule's lr and momentum of now) stay
            now = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
            state = copy.deepcopy(state)
            # groups added since (BackboneFinetuning, FineTune) join as they are now: their parameters had no
            # optimizer state at the snapshot, and have none after it
            state["param_groups"] += optimizer.state_dict()["param_groups"][len(state["param_groups"]) :]
            optimizer.load_state_dict(state)
            for group, kept in zip(optimizer.param_groups, now):
                group.update(kept)
        if self.precision:
            trainer.precision_plugin.load_state_dict(copy.deepcopy(self.precision))
        for callback, average in self.averages:
            _compat.load_weight_average(callback, average)


class ScaledSteps:
    """The lr scale of the rollbacks, applied by the optimizers' own step hooks (``register_step_pre_hook``) to the
    lr each step is given and taken off after the step, so that a schedule, a ``configure_optimizers`` scheduler or
    a constant lr goes on as if nothing had happened, only scaled. A mixin for a callback, which sets ``lr_scale``
    and ``_trainer`` (``None`` outside its fit)."""

    lr_scale: float
    _trainer: pl.Trainer | None

    def _fresh_scale(self) -> None:
        self._handles: list[Any] = []
        self._saved_lrs: dict[int, list[Any]] = {}
        self._depth: dict[int, int] = {}  # how deep inside nested step() calls each optimizer is
        self._ramp: tuple[int, int] | None = None  # (the optimizer step it starts at, its length): see _step_scale
        self._ramped: float | None = None  # the scale the last step of a warm-up was given (for the log)

    def _step_scale(self, step: int) -> float:
        """The scale of optimizer step ``step``: ``lr_scale``, or during a ramp (the lr warmed up again after a
        rollback), a linear rise to it from ``lr_scale / length`` over ``length`` steps."""
        ramp = self._ramp
        if ramp is None:
            return self.lr_scale
        done = step - ramp[0] + 1
        if done >= ramp[1] or done <= 0:
            self._ramp = None if done >= ramp[1] else ramp
            scale = self.lr_scale
        else:
            scale = self.lr_scale * done / ramp[1]
        self._ramped = scale
        return scale

    def _scale_lrs(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        # torch runs the hooks at every level of a step that calls its base class's (an optimizer subclass whose
        # step() calls super().step()): the scale goes on at the outermost level only, and comes off there
        depth = self._depth.get(id(optimizer), 0)
        self._depth[id(optimizer)] = depth + 1
        trainer, callback = self._trainer, cast(object, self)  # (the callback this is mixed into)
        # not inside an LR range test (it runs a fit's steps with the Trainer's callbacks set aside)
        if depth or trainer is None or callback not in _compat.trainer_callbacks(trainer):
            return
        self._saved_lrs[id(optimizer)] = [group["lr"] for group in optimizer.param_groups]
        scale = self._step_scale(trainer.global_step)
        for group in optimizer.param_groups:
            group["lr"] = group["lr"] * scale

    def _unscale_lrs(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        depth = self._depth[id(optimizer)] = self._depth.get(id(optimizer), 1) - 1
        saved = self._saved_lrs.pop(id(optimizer), None) if depth <= 0 else None
        if saved is not None:
            for group, lr in zip(optimizer.param_groups, saved):
                group["lr"] = lr

    def _hook(self, trainer: pl.Trainer) -> None:
        if not self._handles:
            for optimizer in trainer.optimizers:
                self._handles.append(optimizer.register_step_pre_hook(self._scale_lrs))
                self._handles.append(optimizer.register_step_post_hook(self._unscale_lrs))

    def _release(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
