"""``Guard``: roll a run back when its training loss blows up, and go on at a lower lr.

What large-model training does by hand, as one callback: watch the training loss;
when it turns NaN/inf, or rises and stays far above where it was, put back the
last good weights and optimizer state (kept in memory, on the CPU), scale the lr
of every later step down by ``factor``, and go on with the next batches. After
``max_rollbacks`` rollbacks it gives up: the good weights go back and the fit
stops, with one message that says what happened.

It works with every schedule, ours or torch's, and on its own: the scale is
applied by the optimizer's own step hooks (``register_step_pre_hook``), to the
lr each step is given, and taken off again after the step, so a schedule, a
``configure_optimizers`` scheduler or a constant lr goes on as if nothing had
happened, only scaled. The scale and the rollbacks are in the callback's state,
so a resumed run goes on at the same scale.
"""

from __future__ import annotations

import copy
import math
import statistics
from collections import deque
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from typing_extensions import override

from lightning_cyclic import _compat
from lightning_cyclic._compat import Callback
from lightning_cyclic.shapes._checks import check_choice, check_number

# a snapshot becomes the good one only if its loss is at most this many times the good one's: a run that has
# drifted up since (the weights damaged by a jump the rules did not call a blow-up) is not where to roll back to
WORSE = 1.5
# a rise that stays counts only above this share of the run's first losses: a loss that doubles from 0.05 to 0.1
# (a cross-entropy that started at 2.3) is the noise of a nearly fitted model, not a blow-up
FLOOR = 0.1
_LOWEST = -math.inf
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


class _Good:
    """What a rollback puts back: the weights, every optimizer's state, the precision plugin's (a GradScaler's)
    state, and the loss history as it was, all copied to the CPU (into the memory of ``reuse``, a snapshot no
    longer needed, where it fits)."""

    weights: dict[str, torch.Tensor]
    optimizers: list[dict[str, Any]]
    precision: dict[str, Any]

    @torch.no_grad()
    def __init__(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        history: deque[float],
        patience: int,
        reuse: _Good | None = None,
    ) -> None:
        self.step = trainer.global_step
        pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
        old = reuse.optimizers if reuse is not None else []
        self.weights = _copy(pl_module.state_dict(), reuse and reuse.weights, pairs)
        self.optimizers = [
            _copy(opt.state_dict(), old[i] if i < len(old) else None, pairs) for i, opt in enumerate(trainer.optimizers)
        ]
        self.precision = _copy(trainer.precision_plugin.state_dict(), reuse and reuse.precision, pairs)
        if pairs:
            intos, values = zip(*pairs)
            torch._foreach_copy_(intos, values)
        self.history = list(history)
        # the loss where it was taken (the median of the last ``patience`` steps; None before there are any)
        self.level = statistics.median(self.history[-patience:]) if history else None

    def no_worse_than(self, other: _Good) -> bool:
        """Whether this snapshot's loss is at most ``WORSE`` times the other's (it may replace it as the good one)."""
        return other.level is None or (self.level is not None and self.level <= WORSE * other.level)

    @torch.no_grad()
    def restore(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
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


class Guard(Callback):
    """Roll back to the last good weights when the training loss blows up, and go on at a lower lr.

    A blow-up is a training loss that is NaN/inf; one that jumps above ``spike`` times the
    highest loss of the last ``window`` steps (a step that throws the weights out, as the first
    steps at too high an lr do); or one whose median over the last ``patience`` optimizer steps
    is more than ``spike`` times its median over the ``window`` steps before them (a rise that
    stays, not one bad batch) and more than a tenth of the run's first losses (a nearly fitted
    model's loss doubling from 0.05 to 0.1 is noise). The loss is taken to be positive (a cross-entropy, an error).
    On a blow-up the Guard

    1. skips the update of that step (a non-finite loss never reaches the weights),
    2. puts back the last good snapshot: the weights, every optimizer's state and the
       GradScaler's, as they were at least ``every`` healthy steps before,
    3. multiplies the lr of every later optimizer step by ``factor`` (on top of any earlier
       rollback's), whatever sets the lr: a schedule callback, a torch scheduler, a constant,
    4. skips the updates of the next ``skip_batches`` steps, if asked, and goes on with the
       data where it is (the batches between the snapshot and the blow-up are not replayed),
    5. logs ``guard/lr_scale`` and ``guard/rollbacks`` and says what it did in one line.

    After ``max_rollbacks`` rollbacks, a further blow-up puts the good weights back and stops
    the fit (``trainer.should_stop``), with ``gave_up`` set and one line that says why.

    Args:
        factor: the lr scale is multiplied by this at each rollback, in (0, 1).
        spike: how many times its recent highest, or its recent level, the loss must reach to count
            as a blow-up (> 1).
        patience: the optimizer steps over which a spike must hold (their median is compared).
        window: the optimizer steps before them whose median is the loss's level.
        every: a snapshot is taken every this many optimizer steps; it becomes the good one
            once ``every`` more steps have passed without a blow-up, if its loss is no more than
            1.5 times the good one's.
        max_rollbacks: rollbacks allowed before the Guard gives up; ``0`` gives up at once.
        skip_batches: optimizer steps after a rollback whose update is skipped.
        verbose: say what happened at each rollback.

    After ``fit``: ``lr_scale``, ``rollbacks``, ``events`` (one dict per blow-up: its step,
    reason, loss, level and the scale from then on) and ``gave_up``.

    Under DDP the loss each decision reads is the mean over ranks (one all-reduce of a scalar
    per step), so every rank decides the same and keeps the same weights. Memory: two copies of
    the weights and the optimizer state on the CPU (the good snapshot and the next one). The
    snapshots are not in checkpoints: a resumed run takes its first good snapshot where it
    resumes, and keeps the scale, the rollbacks and the loss history it had.

    Example::

        trainer = Trainer(callbacks=[OneCycle(max_lr="auto"), LRFinder(), Guard()])
    """

    # BestSnapshot (and PlateauDecay) leave a non-finite training loss to a callback that says this
    handles_nonfinite_loss: ClassVar[bool] = True

    def __init__(
        self,
        factor: float = 0.5,
        spike: float = 2.0,
        patience: int = 10,
        window: int = 100,
        every: int = 50,
        max_rollbacks: int = 4,
        skip_batches: int = 0,
        verbose: bool = True,
    ) -> None:
        check_number("factor", factor, 0, 1, low_open=True, high_open=True)
        check_number("spike", spike, 1, low_open=True)
        check_number("patience", patience, 1, integer=True)
        check_number("window", window, 1, integer=True)
        check_number("every", every, 1, integer=True)
        check_number("max_rollbacks", max_rollbacks, 0, integer=True)
        check_number("skip_batches", skip_batches, 0, integer=True)
        check_choice("verbose", verbose, (True, False))
        self.factor, self.spike, self.patience, self.window = float(factor), float(spike), patience, window
        self.every, self.max_rollbacks, self.skip_batches, self.verbose = every, max_rollbacks, skip_batches, verbose
        self._fresh()

    def _fresh(self) -> None:
        """The state of one fit (a second fit with the same instance starts from here)."""
        self.lr_scale = 1.0
        self.rollbacks = 0
        self.events: list[dict[str, Any]] = []
        self.gave_up = False
        # the training loss of each optimizer step (the last window + patience)
        self.history: deque[float] = deque(maxlen=self.window + self.patience)
        self._level: float | None = None  # the median of history[:-patience], refreshed every patience steps
        self._level_due = 0
        self._initial = 0.0  # the median of the first ``patience`` losses of the run
        self._calm = -math.inf  # a loss up to this cannot be a rise (-inf: the level is not known yet)
        self._skip_left = 0
        self._good: _Good | None = None
        self._pending: _Good | None = None
        self._spare: _Good | None = None  # a snapshot no longer needed, whose memory the next one reuses
        self._reduce = False  # whether the loss is averaged over ranks
        self._loss: torch.Tensor | None = None  # this step's loss so far (micro-batches add up)
        self._verdict: str | None = None  # this step's: None (not read yet), "" (healthy) or the reason
        self._verdict_step = 0  # the optimizer step it is about
        self._handles: list[Any] = []
        self._saved_lrs: dict[int, list[Any]] = {}
        self._depth: dict[int, int] = {}  # how deep inside nested step() calls each optimizer is
        self._trainer: pl.Trainer | None = None

    @property
    def state_key(self) -> str:
        # Lightning reads it at every hook call: built once (the identity arguments are fixed at construction)
        key = self.__dict__.get("_key")
        if key is None:
            key = self._key = self._generate_state_key(factor=self.factor, spike=self.spike, patience=self.patience)
        return key

    # --- the lr scale, on the optimizer's own step ----------------------------------------------
    def _scale_lrs(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        # torch runs the hooks at every level of a step that calls its base class's (an optimizer subclass whose
        # step() calls super().step()): the scale goes on at the outermost level only, and comes off there
        depth = self._depth.get(id(optimizer), 0)
        self._depth[id(optimizer)] = depth + 1
        trainer = self._trainer
        # not inside an LR range test (it runs a fit's steps with the Trainer's callbacks set aside)
        if depth or trainer is None or self not in _compat.trainer_callbacks(trainer):
            return
        self._saved_lrs[id(optimizer)] = [group["lr"] for group in optimizer.param_groups]
        for group in optimizer.param_groups:
            group["lr"] = group["lr"] * self.lr_scale

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

    # --- hooks -----------------------------------------------------------------------------------
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":  # a callback's state belongs to one fit: a checkpoint's is loaded after setup
            self._fresh()

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._trainer = trainer
        self._reduce = trainer.world_size > 1
        self._release()
        if self.lr_scale != 1.0:  # a resumed run that was scaled (else the hooks come with the first rollback)
            self._hook(trainer)
        self._good = _Good(trainer, pl_module, self.history, self.patience)  # the start (or the resume point) is good
        self._pending = self._spare = None
        self._log(trainer)

    # the three hooks below run at every step: they do as little as they can (their cost: recipes/guard)
    @override
    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        # kept as it is until the step reads it (its graph is freed by the backward); micro-batches add up detached
        self._loss = loss if self._loss is None else self._loss.detach() + loss.detach()

    @override
    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Any) -> None:
        if self._verdict is None:  # once per batch, however many optimizers step in it
            # this step's loss (the mean over ranks): ``""`` if healthy, else why it is a blow-up
            loss, self._loss, verdict = self._loss, None, ""
            if loss is not None:  # (None: a training_step that returned None, nothing to read)
                if self._reduce:
                    loss = trainer.strategy.reduce(loss.detach().float(), reduce_op="mean")
                value = loss.tolist()  # (a Python float, read faster than float(loss))
                if type(value) is not float:
                    value = float(loss)
                history = self.history
                # most steps: finite, no jump over the last loss, and below the level's bar
                if _LOWEST < value <= self._calm and value <= self.spike * history[-1]:
                    history.append(value)
                    self._level_due -= 1
                    if self._level_due <= 0:
                        verdict = self._refresh(value)
                else:
                    verdict = self._judge(value)
            self._verdict = verdict
            if verdict:
                self._verdict_step = trainer.global_step
        if self._verdict or self._skip_left:
            optimizer.zero_grad(set_to_none=True)  # no update: a parameter without a gradient is left as it is

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        verdict, self._verdict = self._verdict, None
        if verdict is None:  # no optimizer step in this batch (accumulating)
            return
        if verdict:
            self._roll_back(trainer, pl_module, verdict)
            return
        if self._skip_left:
            self._skip_left -= 1
            return
        if trainer.global_step % self.every == 0:
            pending, good = self._pending, self._good
            if pending is not None:
                # ``every`` healthy steps have passed since it was taken, and it is no worse than the good one
                if good is None or pending.no_worse_than(good):
                    self._good, self._spare = pending, good
                else:
                    self._spare = pending
            self._pending = _Good(trainer, pl_module, self.history, self.patience, self._spare)
            self._spare = None

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._release()
        self._good = self._pending = self._spare = None  # the memory goes with the fit
        self._trainer = None

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._release()

    # --- deciding --------------------------------------------------------------------------------
    def _judge(self, value: float) -> str:
        """The rules in full, for a step that the quick test in ``on_before_optimizer_step`` could not clear:
        ``""`` if healthy, else why it is a blow-up."""
        if not math.isfinite(value):
            return f"the training loss is {value}"
        # the medians and the maximum are taken only when the loss is high enough for them to matter (the level
        # is refreshed every ``patience`` steps)
        last = self.history[-1] if self.history else math.inf
        self.history.append(value)
        history = list(self.history)
        if value > self.spike * last and len(history) > self.patience:  # the last loss is a floor of the highest
            before = history[-self.window - 1 : -1]
            highest = max(before)
            if value > self.spike * highest:  # one step that throws the weights out
                return (
                    f"the training loss jumped to {value:.4g}, {value / highest:.1f}x the highest of the last "
                    f"{len(before)} steps"
                )
        if len(history) < 2 * self.patience:  # a level of at least as many steps as the recent median
            if len(history) == self.patience:
                self._initial = statistics.median(history)
                self._set_calm()
            return ""
        self._level_due -= 1
        if self._level is None or self._level_due <= 0:
            return self._refresh(value)
        return "" if value <= self._calm else self._rise()  # (a rise shows in this step too)

    def _refresh(self, value: float) -> str:
        """The level taken again (every ``patience`` steps), and this step's loss judged by it."""
        self._level, self._level_due = statistics.median(list(self.history)[: -self.patience]), self.patience
        self._set_calm()
        return "" if value <= self._calm else self._rise()

    def _set_calm(self) -> None:
        if self._level is None or not self.history:
            self._calm = -math.inf
        else:
            self._calm = max(self.spike * self._level, FLOOR * self._initial)

    def _rise(self) -> str:
        """Why the loss is a rise that stays, or ``""``."""
        history = list(self.history)
        level = statistics.median(history[: -self.patience])
        recent = statistics.median(history[-self.patience :])
        if level > 0 and recent > self.spike * level and recent > FLOOR * self._initial:
            return (
                f"the training loss rose to {recent:.4g} (median of the last {self.patience} steps), "
                f"{recent / level:.1f}x its level of {level:.4g}"
            )
        return ""

    def _roll_back(self, trainer: pl.Trainer, pl_module: pl.LightningModule, reason: str) -> None:
        step = self._verdict_step
        good = self._good
        if good is None:  # (on_train_start takes one)
            raise RuntimeError("Guard has no snapshot: on_train_start has not run")
        good.restore(trainer, pl_module)
        self.history, self._level, self._calm = deque(good.history, self.history.maxlen), None, -math.inf
        self._spare, self._pending = self._pending or self._spare, None
        event = {"step": step, "reason": reason, "restored_step": good.step, "level": good.level}
        if self.rollbacks >= self.max_rollbacks:
            self.gave_up = True
            trainer.should_stop = True
            self.events.append({**event, "lr_scale": self.lr_scale, "gave_up": True})
            rank_zero_warn(
                f"Guard: {reason} at step {step}, after {self.rollbacks} rollback(s) (max_rollbacks="
                f"{self.max_rollbacks}); giving up: the weights of step {good.step} are back and the fit stops. "
                f"Lower the lr (it was already scaled by {self.lr_scale:.4g}) or look for bad data."
            )
            self._log(trainer)
            return
        self.rollbacks += 1
        self.lr_scale *= self.factor
        self._hook(trainer)
        self._skip_left = self.skip_batches
        self.events.append({**event, "lr_scale": self.lr_scale, "gave_up": False})
        if self.verbose:
            rank_zero_info(
                f"Guard: {reason} at step {step}; rolled back to step {good.step} and scaled the lr by "
                f"{self.lr_scale:.4g} from here on (rollback {self.rollbacks} of {self.max_rollbacks})"
            )
        self._log(trainer)

    def _log(self, trainer: pl.Trainer) -> None:
        metrics = {"guard/lr_scale": self.lr_scale, "guard/rollbacks": float(self.rollbacks)}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=_compat.batches_stepped(trainer))

    # --- resume ----------------------------------------------------------------------------------
    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "lr_scale": self.lr_scale,
            "rollbacks": self.rollbacks,
            "events": self.events,
            "gave_up": self.gave_up,
            "history": list(self.history),
            # the cached level and the run's first losses: a resume decides as the run would have
            "level": [self._level, self._level_due, self._initial],
            "skip_left": self._skip_left,
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.lr_scale = float(state_dict.get("lr_scale", 1.0))
        self.rollbacks = int(state_dict.get("rollbacks", 0))
        self.events = list(state_dict.get("events", []))
        self.gave_up = bool(state_dict.get("gave_up", False))
        self.history = deque(state_dict.get("history", []), self.window + self.patience)
        self._level, self._level_due, self._initial = state_dict.get("level", (None, 0, 0.0))
        self._set_calm()
        self._skip_left = int(state_dict.get("skip_left", 0))

    def __repr__(self) -> str:
        return (
            f"Guard(factor={self.factor}, spike={self.spike}, patience={self.patience}, window={self.window}, "
            f"every={self.every}, max_rollbacks={self.max_rollbacks}, skip_batches={self.skip_batches})"
        )
