"""``SnapshotEnsemble``: M models for the price of one (Huang et al., 2017).

With :class:`~lightning_cyclic.WarmRestarts` in the same ``fit``, it keeps the
weights at the end of every cycle -- where the lr is lowest and the model sits
in a minimum -- up to ``max_snapshots`` (the most recent ones). With any other
schedule it keeps them every ``every_n_epochs`` epochs. At the end of ``fit``
it evaluates every member and the ensemble (the mean of the members' softmax
outputs) on the validation data, and :meth:`SnapshotEnsemble.ensemble` gives
an ``nn.Module`` for prediction that can be saved and loaded. An evaluation it
cannot do (no validation data, batches of another shape, a model that does not
return class logits) is skipped with a warning; the snapshots are kept.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from typing_extensions import override

from lightning_cyclic._compat import Callback, trainer_callbacks
from lightning_cyclic.callbacks.cycles import WarmRestarts
from lightning_cyclic.callbacks.ensemble_eval import NO_DATA, CannotEvaluate, Predict, evaluate
from lightning_cyclic.callbacks.weights import cpu_state
from lightning_cyclic.shapes import WarmRestartsSchedule
from lightning_cyclic.shapes._checks import check_number

__all__ = ["CannotEvaluate", "Ensemble", "Predict", "SnapshotEnsemble"]


class Ensemble(nn.Module):
    """Averages the softmax outputs of its members: ``forward(x)`` returns class probabilities."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member, got none")
        self.members = nn.ModuleList(members)

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        probs = [torch.softmax(member(*args, **kwargs).float(), dim=-1) for member in self.members]
        return torch.stack(probs).mean(0)

    def save(self, path: str | Path) -> Path:
        """Write the members' state dicts (one file; load with :meth:`load` and a model to copy)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save([cpu_state(m) for m in self.members], path)
        return path

    @classmethod
    def load(cls, path: str | Path, model: nn.Module) -> Ensemble:
        """The ensemble saved at ``path``, each member a copy of ``model`` with its weights."""
        states = torch.load(path, map_location="cpu", weights_only=True)
        members = []
        for state in states:
            member = copy.deepcopy(model)
            member.load_state_dict(state)
            members.append(member.eval())
        return cls(members)


class SnapshotEnsemble(Callback):
    """Keep a snapshot at each warm-restart cycle end (or every N epochs) and evaluate their ensemble.

    Args:
        max_snapshots: keep at most this many, the most recent (Huang et al. use the last M).
        every_n_epochs: take snapshots on this rhythm instead of at cycle ends; required when
            there is no ``WarmRestarts`` callback in the Trainer.
        evaluate: at the end of ``fit``, report each member's and the ensemble's validation
            accuracy and negative log-likelihood (logged as ``ensemble/val_acc`` etc.), and the
            accuracy of the ensemble of the last k snapshots for every k (``metrics["last_k_acc"]``).
        save_path: write the ensemble there at the end of ``fit`` (see :meth:`Ensemble.load`).
        predict: ``predict(pl_module, batch) -> (logits, targets)`` for one validation batch (already
            on the module's device): class logits of shape ``(N, C)`` and integer targets of shape
            ``(N,)``. ``None`` reads batches as ``(inputs, targets, ...)`` tuples or lists and calls
            ``pl_module(inputs)``; dict batches need ``predict`` (or an override of
            :meth:`logits_and_targets`), since which keys go into ``forward`` is the module's choice.

    The evaluation never ends a finished ``fit``: without validation data, with batches it cannot
    read, or when ``predict`` or ``forward`` raises, it warns with the reason and is skipped
    (``metrics`` stays empty); the snapshots, ``save_path`` and :meth:`ensemble` are unaffected.
    """

    def __init__(
        self,
        max_snapshots: int = 5,
        every_n_epochs: int | None = None,
        evaluate: bool = True,
        save_path: str | Path | None = None,
        predict: Predict | None = None,
    ) -> None:
        check_number("max_snapshots", max_snapshots, 1, integer=True)
        if every_n_epochs is not None:
            check_number("every_n_epochs", every_n_epochs, 1, integer=True)
        if predict is not None and not callable(predict):
            raise TypeError(
                f"predict must be a callable (pl_module, batch) -> (logits, targets), or None, got {predict!r}"
            )
        self.max_snapshots, self.every_n_epochs = max_snapshots, every_n_epochs
        self.evaluate, self.save_path = evaluate, Path(save_path) if save_path is not None else None
        self.predict = predict
        self._fresh()

    def _fresh(self) -> None:
        """The state of one fit: each ``fit`` starts here (at ``setup``), then a checkpoint's state replaces it."""
        self.snapshots: list[dict[str, Any]] = []  # {"epoch", "step", "state"}
        self.metrics: dict[str, Any] = {}
        self.skipped_reason = ""  # why the last evaluation was skipped, "" when it ran
        self._restarts: WarmRestarts | None = None

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":  # a callback's state belongs to one fit: a checkpoint's is loaded after setup
            self._fresh()

    @property
    def state_key(self) -> str:
        return self._cached_state_key(max_snapshots=self.max_snapshots, every_n_epochs=self.every_n_epochs)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restarts = next((cb for cb in trainer_callbacks(trainer) if isinstance(cb, WarmRestarts)), None)
        if self.every_n_epochs is None and self._restarts is None:
            raise ValueError(
                "SnapshotEnsemble takes snapshots at WarmRestarts' cycle ends, and this Trainer has no WarmRestarts "
                "callback; add one, or give every_n_epochs=N for a fixed rhythm"
            )

    def _take(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.snapshots and self.snapshots[-1]["step"] == trainer.global_step:
            return
        self.snapshots.append(
            {"epoch": trainer.current_epoch, "step": trainer.global_step, "state": cpu_state(pl_module)}
        )
        del self.snapshots[: -self.max_snapshots]

    def _cycles_done(self, step: int) -> int:
        """How many warm-restart cycles have ended by the schedule's step ``step``."""
        restarts = self._restarts
        schedule = None if restarts is None else restarts.schedule
        if restarts is None or not isinstance(schedule, WarmRestartsSchedule):
            return 0
        # the schedule's own place of the step (where epochs change length, its restarts are at the epoch starts)
        position = restarts.position_of(step) - schedule.warmup
        if position < 0:
            return 0
        done = schedule.cycle_position(position)[0]  # the step is in cycle `done`: those before it ended
        if schedule.cycle_limit is not None:
            done = min(done, schedule.cycle_limit)
        return done

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.every_n_epochs is not None or self._restarts is None or self._restarts.schedule is None:
            return
        # the schedule's steps taken (optimizer steps, or batches under manual optimization); a cycle has ended when
        # the next step starts a new one
        done = self._restarts.steps_done(trainer)
        if self._cycles_done(done) > self._cycles_done(done - 1):
            self._take(trainer, pl_module)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every_n_epochs is not None and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._take(trainer, pl_module)

    # the ensemble -----------------------------------------------------------
    def ensemble(self, model: nn.Module) -> Ensemble:
        """The snapshots as an :class:`Ensemble` of copies of ``model`` (on the CPU, in eval mode)."""
        if not self.snapshots:
            raise ValueError("SnapshotEnsemble has no snapshots yet: fit first (with WarmRestarts or every_n_epochs)")
        template = copy.deepcopy(model).cpu()
        members = []
        for snap in self.snapshots:
            member = copy.deepcopy(template)
            member.load_state_dict(snap["state"])
            members.append(member.eval())
        return Ensemble(members)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.snapshots:
            return
        if self.save_path is not None and trainer.is_global_zero:
            self.ensemble(pl_module).save(self.save_path)
        if not self.evaluate:
            return
        self.metrics, self.skipped_reason = {}, ""
        metrics, reason, warn_here = evaluate(trainer, pl_module, self.snapshots, self.logits_and_targets)
        if reason:
            self.skipped_reason = reason
            no_data = any(known in reason for known in NO_DATA)
            todo = (
                "give fit() validation data with a validation_step"
                if no_data
                else "give SnapshotEnsemble(predict=...) a function (pl_module, batch) -> (logits (N, C), targets (N,))"
            )
            if warn_here:
                warnings.warn(
                    f"SnapshotEnsemble skipped the evaluation of its {len(self.snapshots)} snapshots: {reason}. "
                    f"To evaluate them, {todo}; evaluate=False skips it silently. The snapshots are kept and "
                    "ensemble() and save_path work.",
                    UserWarning,
                    stacklevel=1,
                )
            return
        self.metrics = metrics
        for logger in trainer.loggers:
            logger.log_metrics(
                {f"ensemble/{k}": v for k, v in self.metrics.items() if isinstance(v, float)}, trainer.global_step
            )
        members = ", ".join(f"{a:.4f}" for a in self.metrics["member_acc"])
        rank_zero_info(
            f"SnapshotEnsemble: {len(self.snapshots)} snapshots (epochs "
            f"{', '.join(str(s['epoch']) for s in self.snapshots)}): members' val acc {members}; "
            f"ensemble {self.metrics['val_acc']:.4f}"
        )

    def logits_and_targets(self, pl_module: pl.LightningModule, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits ``(N, C)`` and integer targets ``(N,)`` of one validation batch.

        Calls ``predict`` when given; else reads ``(inputs, targets, ...)`` and calls ``pl_module(inputs)``.
        Override it for other batches; raise :class:`CannotEvaluate` with a reason to skip the evaluation.
        """
        if self.predict is not None:
            return self.predict(pl_module, batch)
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            shape = f"a {type(batch).__name__}" + (
                f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else ""
            )
            raise CannotEvaluate(f"the validation batches are {shape}, not (inputs, targets, ...)")
        return pl_module(batch[0]), batch[1]

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"snapshots": self.snapshots}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.snapshots = list(state_dict.get("snapshots", []))
