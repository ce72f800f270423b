"""``Guard``: roll a run back when its training loss blows up, and go on at a lower lr.

What large-model training does by hand, as one callback: watch the training loss;
when it turns NaN/inf, rises and stays far above where it was, or climbs back to
where the run started (a collapse to the chance level), put back the last good
weights and optimizer state (kept in memory, on the CPU), scale the lr of every
later step down by ``factor``, and go on with the next batches. After
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
import inspect
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from typing_extensions import override

from lightning_cyclic import _compat
from lightning_cyclic._compat import Callback
from lightning_cyclic.callbacks.blowup import FLOOR, SPAN, BlowupRules
from lightning_cyclic.callbacks.rollback import WORSE, RollbackPoint, ScaledSteps
from lightning_cyclic.shapes._checks import check_choice, check_number

__all__ = ["FLOOR", "WORSE", "Guard"]

# the arguments that name a Guard's state in a checkpoint beside factor, spike and patience, where not at their
# defaults: its rules and its snapshots' rhythm (not max_rollbacks or skip_batches, which a resume may change)
_KEYED = ("window", "every", "collapse", "rewarm")


class Guard(BlowupRules, ScaledSteps, Callback):
    """Roll back to the last good weights when the training loss blows up, and go on at a lower lr.

    A blow-up is a training loss that is NaN/inf; one that jumps above ``spike`` times the highest loss of the last
    ``window`` steps (a step that throws the weights out, as the first steps at too high an lr do) and above a tenth
    of the run's first losses; or one whose median over the last ``patience`` optimizer steps is more than ``spike``
    times its median over the ``window`` steps before them (a rise that stays, not one bad batch) and more than a
    tenth of the run's first losses (a nearly fitted model's loss doubling from 0.05 to 0.1 is noise); or, once the
    median of ``patience`` steps has fallen by a tenth of the run's first losses, one whose median over the last
    ``patience`` steps climbs back by nine tenths of that fall (a run that collapses to the chance level has lost
    what it learnt, though its loss rose less than ``spike``-fold); or, in a run that had learnt a tenth and was
    rolled back to a snapshot from before it had (its start), one that has not fallen by a tenth again within about
    as many steps as were rolled back plus ``3 x patience`` (the run is stuck at the chance level: the scaled lr is
    still too bold). The loss is taken to be positive (a cross-entropy, an error).
    On a blow-up the Guard

    1. skips the update of that step (a non-finite loss never reaches the weights),
    2. puts back the last good snapshot: the weights, every optimizer's state, the
       GradScaler's and the running average of Lightning's weight-averaging callbacks
       (``EMAWeightAveraging``, ``StochasticWeightAveraging``: the steps rolled back leave
       no trace in it), as they were at least ``every`` healthy steps before,
    3. multiplies the lr of every later optimizer step by ``factor`` (on top of any earlier
       rollback's), whatever sets the lr: a schedule callback, a torch scheduler, a constant;
       back at a snapshot from before the run had learnt a tenth, the scale rises to that over
       as many steps as were rolled back (``rewarm``), as a run's first steps warm up,
    4. skips the updates of the next ``skip_batches`` steps, if asked, and goes on with the
       data where it is (the batches between the snapshot and the blow-up are not replayed),
    5. logs ``guard/lr_scale`` and ``guard/rollbacks`` (and the scale each step of a warm-up is
       given) and says what it did in one line.

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
            1.5 times the good one's and not back where the run started (the collapse rule's bar).
        max_rollbacks: rollbacks allowed before the Guard gives up; ``0`` gives up at once.
        skip_batches: optimizer steps after a rollback whose update is skipped.
        verbose: say what happened at each rollback.
        collapse: also count a climb back to where the run started as a blow-up, and a run stuck there after a
            rollback (the last two rules above); ``False`` for a run whose loss may rightly go back there (new
            data, a curriculum).
        rewarm: after a rollback to before the run had learnt, warm the lr up again to its new scale (a
            restart from near the initial weights at the schedule's peak is what threw the run out).

    After ``fit``: ``lr_scale``, ``rollbacks``, ``events`` (one dict per blow-up: its step,
    reason, loss, level and the scale from then on) and ``gave_up``.

    Under DDP the loss each decision reads is the mean over ranks (one all-reduce of a scalar
    per step), so every rank decides the same and keeps the same weights. Memory: two copies of
    the weights, the optimizer state and any weight average on the CPU (the good snapshot and
    the next one). The snapshots are not in checkpoints: a resumed run takes its first good
    snapshot where it resumes, and keeps the scale, its warm-up, the rollbacks and the loss
    history it had.

    Example::

        trainer = Trainer(callbacks=[OneCycle(max_lr="auto"), LRFinder(), Guard()])
    """

    # BestSnapshot (and PlateauDecay) leave a non-finite training loss to a callback that says this
    handles_nonfinite_loss: ClassVar[bool] = True
    # with it in the fit, ``max_lr="auto"`` takes the short trials' pick as it is (not divided by sqrt(2))
    catches_bold_peaks: ClassVar[bool] = True

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
        collapse: bool = True,
        rewarm: bool = True,
    ) -> None:
        check_number("factor", factor, 0, 1, low_open=True, high_open=True)
        check_number("spike", spike, 1, low_open=True)
        check_number("patience", patience, 1, integer=True)
        check_number("window", window, 1, integer=True)
        check_number("every", every, 1, integer=True)
        check_number("max_rollbacks", max_rollbacks, 0, integer=True)
        check_number("skip_batches", skip_batches, 0, integer=True)
        check_choice("verbose", verbose, (True, False))
        check_choice("collapse", collapse, (True, False))
        check_choice("rewarm", rewarm, (True, False))
        self.factor, self.spike, self.patience, self.window = float(factor), float(spike), patience, window
        self.every, self.max_rollbacks, self.skip_batches, self.verbose = every, max_rollbacks, skip_batches, verbose
        self.collapse, self.rewarm = collapse, rewarm
        self._fresh()

    def _fresh(self) -> None:
        """The state of one fit (a second fit with the same instance starts from here)."""
        self.lr_scale = 1.0
        self.rollbacks = 0
        self.events: list[dict[str, Any]] = []
        self.gave_up = False
        self._fresh_rules()
        self._skip_left = 0
        self._good: RollbackPoint | None = None
        self._pending: RollbackPoint | None = None
        self._spare: RollbackPoint | None = None  # a snapshot no longer needed, whose memory the next one reuses
        self._reduce = False  # whether the loss is averaged over ranks
        self._loss: torch.Tensor | None = None  # this step's loss so far (micro-batches add up)
        self._verdict: str | None = None  # this step's: None (not read yet), "" (healthy) or the reason
        self._verdict_step = 0  # the optimizer step it is about
        self._fresh_scale()
        self._trainer: pl.Trainer | None = None

    @property
    def state_key(self) -> str:
        # Lightning reads it at every hook call: built once (the identity arguments are fixed at construction).
        # The rules' other arguments name it where they are not at their defaults (two Guards that differ only there
        # can share a Trainer, each with its own state); the key of a Guard at its defaults is as it always was
        key = self.__dict__.get("_key")
        if key is None:
            defaults = inspect.signature(Guard.__init__).parameters
            named = {name: getattr(self, name) for name in _KEYED if getattr(self, name) != defaults[name].default}
            key = self._key = self._generate_state_key(**self._identity(), **named)
        return key

    def _identity(self) -> dict[str, float]:
        return {"factor": self.factor, "spike": self.spike, "patience": self.patience}

    @override
    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # a checkpoint written before the key named the rules' other arguments holds this Guard's state under the key
        # of then (Lightning looks under the new one only, and would start the resumed run unscaled)
        states, older = checkpoint.get("callbacks") or {}, self._generate_state_key(**self._identity())
        if self.state_key not in states and older in states:
            self.load_state_dict(copy.deepcopy(states[older]))

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
        # the start (or the resume point) is good
        self._good = RollbackPoint(trainer, pl_module, self.history, self.patience, lowest=self._lowest)
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
                verdict = self._check(value if type(value) is float else float(loss))
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
        if self._ramped is not None:  # a step of the warm-up after a rollback: the scale it was given, logged
            self._log(trainer, self._ramped)
            self._ramped = None
        if self._skip_left:
            self._skip_left -= 1
            return
        if trainer.global_step % self.every == 0:
            pending, good = self._pending, self._good
            if pending is not None:
                # ``every`` healthy steps have passed since it was taken, it is no worse than the good one, and it
                # was not taken after the run lost what it had learnt (a collapse the rules see only later)
                if (
                    (good is None or pending.no_worse_than(good))
                    and not self._lost(pending.level)
                    and not pending.relearning
                ):
                    self._good, self._spare = pending, good
                else:
                    self._spare = pending
            self._pending = RollbackPoint(trainer, pl_module, self.history, self.patience, self._spare, self._lowest)
            self._pending.relearning = self._relearn is not None  # (taken while the run is stuck: never trusted)
            self._spare = None

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._release()
        self._good = self._pending = self._spare = None  # the memory goes with the fit
        self._trainer = None

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._release()

    # --- rolling back ---------------------------------------------------------------------------
    def _roll_back(self, trainer: pl.Trainer, pl_module: pl.LightningModule, reason: str) -> None:
        step = self._verdict_step
        good = self._good
        if good is None:  # (on_train_start takes one)
            raise RuntimeError("Guard has no snapshot: on_train_start has not run")
        good.restore(trainer, pl_module)
        back = max(step - good.step, 1)  # the steps rolled back
        # (a run that had learnt a tenth, back before it had: as many steps as were rolled back, and the collapse
        # rule's span, to learn one again, else it is stuck)
        self._rewind(good.history, good.lowest, back + SPAN * self.patience)
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
        if self.rewarm and not self._learnt():
            # back before the run had learnt (at its start): the steps rolled back are taken again with the lr warmed
            # up from low to the new scale, as a run's first steps are
            self._ramp = (trainer.global_step, back)
        self._hook(trainer)
        self._skip_left = self.skip_batches
        self.events.append({**event, "lr_scale": self.lr_scale, "gave_up": False})
        if self.verbose:
            rank_zero_info(
                f"Guard: {reason} at step {step}; rolled back to step {good.step} and scaled the lr by "
                f"{self.lr_scale:.4g} from here on (rollback {self.rollbacks} of {self.max_rollbacks})"
            )
        self._log(trainer)

    def _log(self, trainer: pl.Trainer, scale: float | None = None) -> None:
        """``guard/lr_scale`` (``scale``, or the scale from here on) and ``guard/rollbacks``, at this batch's step."""
        scale = self.lr_scale if scale is None else scale
        metrics = {"guard/lr_scale": scale, "guard/rollbacks": float(self.rollbacks)}
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
            **self._rules_state(),  # the losses, the cached level and the run's first losses
            "skip_left": self._skip_left,
            "ramp": None if self._ramp is None else list(self._ramp),
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.lr_scale = float(state_dict.get("lr_scale", 1.0))
        self.rollbacks = int(state_dict.get("rollbacks", 0))
        self.events = list(state_dict.get("events", []))
        self.gave_up = bool(state_dict.get("gave_up", False))
        self._load_rules(state_dict)
        self._skip_left = int(state_dict.get("skip_left", 0))
        ramp = state_dict.get("ramp")
        self._ramp = None if ramp is None else (int(ramp[0]), int(ramp[1]))

    def __repr__(self) -> str:
        return (
            f"Guard(factor={self.factor}, spike={self.spike}, patience={self.patience}, window={self.window}, "
            f"every={self.every}, max_rollbacks={self.max_rollbacks}, skip_batches={self.skip_batches}, "
            f"collapse={self.collapse}, rewarm={self.rewarm})"
        )
