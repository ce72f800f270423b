"""A schedule callback's arguments: checked against the shape's declaration, lengths in epochs converted to optimizer
steps (:meth:`ScheduleArguments.build`, the one place), and ``"auto"`` ones filled from the LR range test at the
start of each fit. :class:`~lightning_cyclic.callbacks.schedule.ScheduleCallback` applies the schedule in the fit.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from lightning_cyclic import _compat
from lightning_cyclic._compat import Callback
from lightning_cyclic.callbacks.lr_finder import LRFinder
from lightning_cyclic.callbacks.plan import INTERVALS, RunPlan, plan
from lightning_cyclic.callbacks.writing import optimizer_indices
from lightning_cyclic.finder import RangeTestResult
from lightning_cyclic.shapes import Schedule
from lightning_cyclic.shapes._checks import check_choice, check_number

AUTO = "auto"
LRS = ("base_lr", "max_lr")  # the lrs a run's summary names


class ScheduleArguments(Callback):
    """What a schedule callback is made of: its shape (``schedule_cls``), its arguments and how they become a
    schedule in optimizer steps. The base of :class:`~lightning_cyclic.callbacks.schedule.ScheduleCallback`."""

    schedule_cls: type[Schedule]  # the shape: its fields declare the arguments (CustomSchedule: per instance)
    # whether the schedule warms up to its "auto" peak (one-cycle, warmup) or jumps to it in one step (restarts):
    # the range test's reading depends on it (lightning_cyclic.suggest.edge's ``warmup``)
    warms_up: ClassVar[bool] = True

    def __init__(
        self,
        params: dict[str, Any],
        interval: str = "step",
        total_steps: int | None = None,
        log: bool = True,
        finder: LRFinder | None = None,
        optimizer: int | list[int] | None = None,
    ) -> None:
        check_choice("interval", interval, INTERVALS)
        if total_steps is not None:
            check_number("total_steps", total_steps, 1, integer=True)
        self.params = dict(params)
        self.interval = interval
        self.total_steps = total_steps
        self.log = log
        self.optimizer = optimizer_indices(optimizer)
        self.auto = {name: part for name, part in self.auto_fields.items() if self.params.get(name) == AUTO}
        self.finder = finder
        self.schedule_cls.check_arguments(self.params, skip=self.auto)  # every argument now, "auto" ones later
        self._last_resolved: dict[str, float] | None = None  # the last fit's "auto" values, to say they are not reused
        self._key_args = self._state_key_args()
        suffix = "" if self.optimizer is None else "-optimizer" + "-".join(map(str, self.optimizer))
        self._metric_names = (f"lr{suffix}", f"momentum{suffix}")  # two callbacks of two optimizers: two names
        self._fresh()

    def _fresh(self) -> None:
        """The state of one fit (see :class:`~lightning_cyclic.callbacks.schedule.ScheduleCallback`)."""
        self.resolved: dict[str, float] | None = None  # values found for the "auto" arguments

    @property
    def lengths(self) -> tuple[str, ...]:
        """The arguments that are lengths in ``interval`` units (declared in the shape's fields)."""
        return tuple(name for name, arg in self.schedule_cls.ARGS.items() if arg.unit == "length")

    @property
    def auto_fields(self) -> dict[str, str]:
        """The arguments that may be "auto", and which part of the range test's suggestion each takes."""
        return {name: arg.auto for name, arg in self.schedule_cls.ARGS.items() if arg.auto}

    @classmethod
    def declared(cls, given: dict[str, Any]) -> dict[str, Any]:
        """The shape's arguments out of ``given`` (a subclass's ``locals()``), in the order the shape declares
        them: a momentum pair as a tuple (Hydra hands lists), positions as a list."""
        out = {}
        for name, arg in cls.schedule_cls.ARGS.items():
            value = given[name]
            if arg.kind == "moms":
                value = as_pair(value)
            elif arg.kind == "positions" and value is not None:
                value = list(value)
            out[name] = value
        return out

    # the one place where lengths in epochs become optimizer steps -------------
    def build(self, total_steps: float | None, steps_per_epoch: float) -> Schedule:
        """The schedule in optimizer steps, for a run of ``total_steps`` steps ("auto" arguments filled)."""
        missing = [name for name in self.auto if name not in (self.resolved or {})]
        if missing:
            raise ValueError(
                f"{type(self).__name__}: {', '.join(missing)}='auto' has no value yet: the LR range test runs at "
                f"the start of fit"
            )
        unit = steps_per_epoch if self.interval == "epoch" else 1
        kwargs: dict[str, Any] = {**self.params, **(self.resolved or {})}
        for name in self.lengths:
            value = kwargs.get(name)
            if isinstance(value, (list, tuple)):
                kwargs[name] = [v * unit if isinstance(v, (int, float)) else v for v in value]
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                kwargs[name] = value * unit
        if "total_steps" in {f.name for f in dataclasses.fields(self.schedule_cls)}:
            kwargs["total_steps"] = total_steps  # (a shape of the user's without an end need not take it)
        return self.schedule_cls(**self._fit_to_run(kwargs, total_steps))

    def _fit_to_run(self, kwargs: dict[str, Any], total_steps: float | None) -> dict[str, Any]:
        """The arguments, in optimizer steps, adjusted where a default would not fit a run of ``total_steps``
        (see :class:`~lightning_cyclic.WarmupDecay`); as given by default."""
        return kwargs

    def planned(self, trainer: pl.Trainer) -> RunPlan:
        """This fit's run in optimizer steps (see :func:`plan`), checked against what the schedule needs."""
        name = type(self).__name__
        try:
            run = plan(trainer, self.interval, self.total_steps)
        except ValueError as err:
            raise ValueError(f"{name}(interval={self.interval!r}): {err}") from None
        if run["total_steps"] is None and self.schedule_cls.requires_total({**self.params, **(self.resolved or {})}):
            raise ValueError(
                f"{name} needs the run's length, but the Trainer's is unbounded (max_epochs={trainer.max_epochs}, "
                f"max_steps={trainer.max_steps}); set max_epochs or max_steps, or pass total_steps=..."
            )
        return run

    # "auto" -----------------------------------------------------------------
    def _resolve_auto(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Fill the "auto" arguments from the LR range test of this fit (run now if it has not run)."""
        callbacks = _compat.trainer_callbacks(trainer)
        finder = self.finder or next((cb for cb in callbacks if isinstance(cb, LRFinder)), None)
        if finder is None:
            finder = self.finder = LRFinder()
        result = finder.run(trainer, pl_module)
        resolved = self._auto_values(result)
        missing = [name for name, value in resolved.items() if value is None]
        if missing:  # no suggestion and no fallback either (the optimizer's lr is not positive)
            args = ", ".join(f"{name}='auto'" for name in missing)
            raise ValueError(
                f"{type(self).__name__}({args}): the LR range test found no sound suggestion "
                f"({result.suggestion.reason}) and has no fallback. Give {' and '.join(missing)} a number, or "
                f"change the LRFinder's min_lr/max_lr/num_steps."
            )
        found = {name: value for name, value in resolved.items() if value is not None}
        if "base_lr" in found and "max_lr" in found and found["base_lr"] >= found["max_lr"]:
            found["base_lr"] = found["max_lr"] / 4  # a degenerate range: Smith's rule of thumb
        self.schedule_cls.check_arguments({**self.params, **found})  # the found values pass the same checks
        self.resolved = found

    def _auto_values(self, result: RangeTestResult) -> dict[str, float | None]:
        """The values of the "auto" arguments read off a range test (``None`` where it has none): its
        suggestion for a schedule that does or does not warm up to it (``warms_up``), or where that has no
        lr, its fallback."""
        chosen = result.chosen_for(warms_up=self.warms_up)
        return {name: getattr(chosen, part) for name, part in self.auto.items()}

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.auto or self.resolved is not None:
            return
        last, self._last_resolved = self._last_resolved, None
        if _compat.fast_dev_run(trainer):  # no range test (as Lightning's Tuner): the optimizer's own lr is used
            return
        if last:
            found = ", ".join(f"{name}={value:.4g}" for name, value in last.items())
            rank_zero_info(
                f"{type(self).__name__}: a new fit: the LR range test runs again (the last fit's {found} is not reused)"
            )
        self._resolve_auto(trainer, pl_module)

    def describe(self, trainer: pl.Trainer) -> str:
        """One line for a run's summary: the callback and its lr, found by the range test or given."""
        name = type(self).__name__
        if not self.resolved:
            given = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.params.items() if k in LRS]
            return ", ".join([name, *given])
        used = ", ".join(f"{k}={v:.4g}" for k, v in self.resolved.items())
        finder = self.finder or next((c for c in _compat.trainer_callbacks(trainer) if isinstance(c, LRFinder)), None)
        result = finder.result if finder is not None else None
        trials = result is not None and (result.extra.get("trials") or {}).get("lr") is not None
        return f"{name}, {used} (found by the LR range test{' and its short trials' if trials else ''})"

    @property
    def state_key(self) -> str:
        return self._fixed_state_key(self._key_args, self._key_args.copy)

    def _state_key_args(self) -> dict[str, Any]:
        """What tells two schedule callbacks' states apart, read once (the arguments do not change)."""
        # callables (a custom scale_fn) by name: their repr holds a memory address that changes between runs
        params = {k: getattr(v, "__qualname__", v) if callable(v) else v for k, v in self.params.items()}
        if self.optimizer is not None:  # two callbacks driving two optimizers keep two states
            params["optimizer"] = self.optimizer
        if type(self).__dict__.get("schedule_cls") is None:  # a shape given per instance (CustomSchedule)
            params["shape"] = self.schedule_cls.__qualname__
        return {"interval": self.interval, **params}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args}, interval={self.interval!r})"


def as_pair(moms: Any) -> Any:
    """Hydra hands lists as ``ListConfig``; make a plain tuple (validation happens in the schedule)."""
    if moms is None or isinstance(moms, str):
        return moms
    try:
        return tuple(moms)
    except TypeError:
        return moms
