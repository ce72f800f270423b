"""Torch glue: read and write lr and momentum on any optimizer's param groups.

"Momentum" is whatever the optimizer calls it: ``momentum`` for SGD and
RMSprop, ``betas[0]`` for the Adam family (Adam, AdamW, NAdam, RAdam, Adamax,
...), whose ``betas[1]`` is kept as it is. Param groups keep their lr ratios:
a backbone group built at 0.1x the head's lr stays at 0.1x through a schedule.

``ScheduleLR`` runs any schedule from :mod:`lightning_cyclic.shapes` as a
``torch.optim.lr_scheduler.LRScheduler``, for plain PyTorch loops, a
LightningModule's ``configure_optimizers`` or ``LightningCLI``'s ``--lr_scheduler``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.hooks import RemovableHandle

from lightning_cyclic.shapes import Schedule
from lightning_cyclic.shapes._checks import check_number


def momentum_key(group: dict[str, Any]) -> str | None:
    """The key a param group keeps its momentum under, or ``None`` if it has none to cycle.

    SGD and RMSprop built with ``momentum=0`` count as having none: turning
    momentum on would change the optimizer's algorithm behind the user's back.
    """
    if "betas" in group:
        return "betas"
    if "momentum" in group and group["momentum"] > 0:
        return "momentum"
    return None


def is_schedule_free(optimizer: Any) -> bool:
    """Whether ``optimizer`` is a schedule-free one (Defazio et al. 2024; the ``schedulefree`` package): it keeps a
    train/eval mode in its param groups and switches between them with ``train()`` and ``eval()``."""
    groups = getattr(optimizer, "param_groups", None) or []
    return bool(groups) and "train_mode" in groups[0] and callable(getattr(optimizer, "eval", None))


def layer_decay_groups(
    module: torch.nn.Module,
    lr: float,
    decay: float,
    layers: Sequence[torch.nn.Module] | None = None,
    first_depth: int = 0,
) -> list[dict[str, Any]]:
    """Param groups with layer-wise lr decay (timm's ``param_groups_layer_decay``, for any module).

    The layers are ``layers`` or, by default, ``module``'s direct children that hold parameters, in order (the
    input side first); parameters of ``module`` itself go with the first layer. The last layer gets
    ``lr * decay ** first_depth`` and each layer before it ``decay`` times the next: with the head as the last
    layer, ``first_depth=0`` leaves it at ``lr``; for a backbone below a head, ``first_depth=1``. Frozen
    parameters (``requires_grad=False``) are left out; layers without trainable parameters give no group.
    """
    check_number("decay", decay, 0, 1, low_open=True)
    check_number("lr", lr, 0)
    check_number("first_depth", first_depth, 0, integer=True)
    chosen = list(layers) if layers is not None else [m for m in module.children() if any(True for _ in m.parameters())]
    if not chosen:
        raise ValueError(f"{type(module).__name__} has no layers with parameters to group")
    seen: set[int] = set()
    per_layer: list[list[torch.nn.Parameter]] = []
    for layer in chosen:
        params = [p for p in layer.parameters() if id(p) not in seen]
        seen.update(id(p) for p in params)
        per_layer.append(params)
    per_layer[0] = [p for p in module.parameters() if id(p) not in seen] + per_layer[0]  # the module's own
    n = len(per_layer)
    groups = []
    for i, params in enumerate(per_layer):
        trainable = [p for p in params if p.requires_grad]
        if trainable:
            groups.append({"params": trainable, "lr": lr * decay ** (n - 1 - i + first_depth)})
    return groups


def get_momentum(group: dict[str, Any]) -> float | None:
    key = momentum_key(group)
    if key is None:
        return None
    return float(group["betas"][0]) if key == "betas" else float(group["momentum"])


def lr_ratios(lrs: Sequence[float]) -> list[float]:
    """Each group's lr relative to the largest: the schedule's lr goes to the largest group."""
    lrs = [float(lr) for lr in lrs]
    top = max(lrs, default=0.0)
    if top <= 0:
        return [1.0] * len(lrs)
    return [lr / top for lr in lrs]


SCALING_RULES = ("linear", "sqrt")


def lr_scale_factor(batch_size: int, base_batch_size: int, rule: str) -> float:
    """How much to multiply an lr tuned at ``base_batch_size`` by, at ``batch_size``.

    ``"linear"`` (Goyal et al., 2017: lr proportional to the batch, for SGD) or
    ``"sqrt"`` (proportional to its square root, often better for Adam).
    ``batch_size`` is the effective one: per device x devices x nodes x accumulation.
    """
    from lightning_cyclic.shapes._checks import check_choice, check_number

    check_choice("rule", rule, SCALING_RULES)
    check_number("batch_size", batch_size, 1, integer=True)
    check_number("base_batch_size", base_batch_size, 1, integer=True)
    ratio = batch_size / base_batch_size
    return ratio if rule == "linear" else ratio**0.5


def optimizer_name(optimizer: Optimizer) -> str:
    return type(optimizer).__name__


def momentum_warning(optimizer: Optimizer, owner: str) -> str:
    return (
        f"{owner}: {optimizer_name(optimizer)} has no momentum to cycle (no 'betas', and 'momentum' "
        f"absent or 0), so momentum is left alone and only the lr is scheduled. "
        f"Pass moms=None to silence this, or build the optimizer with momentum > 0."
    )


class ParamGroupWriter:
    """Writes a schedule's ``(lr, momentum)`` into an optimizer, keeping group ratios.

    It warns once, naming the optimizer, if momentum is to be cycled on an
    optimizer that has none.
    """

    def __init__(self, optimizer: Optimizer, ratios: Sequence[float] | None = None, owner: str = "schedule"):
        self.optimizer = optimizer
        self.ratios = list(ratios) if ratios is not None else lr_ratios([g["lr"] for g in optimizer.param_groups])
        if len(self.ratios) != len(optimizer.param_groups):
            raise ValueError(
                f"ratios must have one value per param group ({len(optimizer.param_groups)}), got {len(self.ratios)}"
            )
        self.owner = owner
        self._warned = False

    def momentum_missing(self) -> str | None:
        """The warning to give once, where no param group has a momentum to cycle (``None`` where one has); the
        writes then stay quiet about it."""
        if any(momentum_key(g) is not None for g in self.optimizer.param_groups):
            return None
        self._warned = True
        return momentum_warning(self.optimizer, self.owner)

    def write(self, lr: float, momentum: float | None) -> None:
        # Runs at every optimizer step, so it keeps to plain dict writes, and an Adam-family ``betas``
        # tuple is rebuilt only when its momentum changes (otherwise the tuple written would be equal).
        for group, ratio in zip(self.optimizer.param_groups, self.ratios):
            old = group["lr"]
            if isinstance(old, torch.Tensor):  # capturable/fused optimizers keep lr as a tensor
                old.fill_(lr * ratio)
            else:
                group["lr"] = lr * ratio
            if momentum is None:
                continue
            if "betas" in group:
                betas = group["betas"]
                if type(betas) is not tuple or type(betas[0]) is not float or betas[0] != momentum:
                    group["betas"] = (momentum, *tuple(betas)[1:])
            elif "momentum" in group and group["momentum"] > 0:
                group["momentum"] = momentum
            elif not self._warned:
                self._warned = True
                warnings.warn(momentum_warning(self.optimizer, self.owner), UserWarning, stacklevel=3)


class ScheduleLR(LRScheduler):
    """A closed-form ``LRScheduler`` that runs any :class:`~lightning_cyclic.shapes.Schedule`.

    The lr at ``last_epoch = k`` is ``schedule.lr(k)`` times each group's ratio
    to the largest group's initial lr; momentum is set too where the schedule
    cycles it. It keeps only ``last_epoch``, never raises past the planned end,
    and resumes exactly from its ``state_dict``.

    Who advances it. A schedule's unit is the optimizer step, so by default
    (``step_with_optimizer=True``) the scheduler advances by itself after every
    ``optimizer.step()``, through the optimizer's public
    ``register_step_post_hook``, and its own ``step()`` does nothing. A loop that
    calls ``opt.step(); sched.step()`` gets the same trajectory as without the
    hook, and so does a loop that steps the scheduler at another interval: this
    is what makes ``LightningCLI``'s ``--lr_scheduler`` right, whose
    ``configure_optimizers`` returns the scheduler with Lightning's default
    ``interval="epoch"``. An optimizer step that does not happen (a
    ``GradScaler`` skipping a step on inf/NaN gradients) does not advance the
    schedule. A ``step(epoch)`` call, with the position given (torch's fractional epochs
    for warm restarts), detaches the hook: the loop drives the schedule from then on.
    ``step_with_optimizer=False`` gives the plain torch contract:
    every ``step()`` call advances, whenever it comes (a schedule written in
    epochs and stepped once per epoch). :meth:`detach` removes the hook and
    switches to that contract.

    Resume. ``load_state_dict`` writes the loaded step's lr (and momentum, where
    the schedule cycles it) into the optimizer, so building the optimizer and
    the scheduler afresh and then loading both states (the order Lightning uses:
    optimizer, then scheduler) continues exactly where the saved run was. If the
    scheduler's state is loaded first and the optimizer's after it, the
    optimizer's saved param groups (which hold the lr and momentum) overwrite
    what the scheduler wrote; that is the same step's values when both states
    were saved together, as with torch's own schedulers, whose lr also lives in
    the optimizer's state.

    Example::

        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        sched = ScheduleLR(opt, OneCycleSchedule(max_lr=0.1, total_steps=1000))
        for batch in loader:
            ...; opt.step()  # sched follows; a sched.step() here is harmless

    From the command line (``LightningCLI``)::

        --optimizer torch.optim.SGD --optimizer.lr 0.1 --optimizer.momentum 0.9
        --lr_scheduler lightning_cyclic.ScheduleLR
        --lr_scheduler.schedule lightning_cyclic.shapes.OneCycleSchedule
        --lr_scheduler.schedule.max_lr 0.1 --lr_scheduler.schedule.total_steps 1000
    """

    def __init__(
        self, optimizer: Optimizer, schedule: Schedule, last_epoch: int = -1, step_with_optimizer: bool = True
    ):
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be a lightning_cyclic.shapes.Schedule, got {type(schedule).__name__}")
        if not isinstance(step_with_optimizer, bool):
            raise ValueError(f"step_with_optimizer must be True or False, got {step_with_optimizer!r}")
        self.schedule = schedule
        initial = [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]
        self._writer = ParamGroupWriter(optimizer, lr_ratios(initial), owner=type(self).__name__)
        self._hook: RemovableHandle | None = None  # unset while torch's initial step() runs
        super().__init__(optimizer, last_epoch)
        if step_with_optimizer:
            self._hook = optimizer.register_step_post_hook(self._after_optimizer_step)

    @property
    def step_with_optimizer(self) -> bool:
        """Whether the scheduler follows the optimizer's steps (and ignores ``step()`` calls)."""
        return self._hook is not None

    def _after_optimizer_step(self, optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        LRScheduler.step(self)

    def step(self, epoch: float | None = None) -> None:
        """Advance one step, unless the scheduler follows the optimizer's steps: then do nothing.

        ``step(epoch)`` puts the schedule at ``epoch``, fractional ones included, as torch's
        ``CosineAnnealingWarmRestarts`` takes them (``scheduler.step(epoch + i / iters)`` after each batch): the
        loop says where the schedule is, so the scheduler stops following the optimizer's steps from then on
        (as after :meth:`detach`), and the lr (and momentum) is the schedule's at ``epoch``.
        """
        if epoch is not None:
            self.detach()
            super().step(epoch)  # type: ignore[arg-type]  # torch's closed form takes any position
        elif self._hook is None:
            super().step()

    def detach(self) -> None:
        """Stop following the optimizer's steps: from now on only ``step()`` calls advance the schedule."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def get_lr(self) -> list[float | torch.Tensor]:  # torch's signature: ours are always floats
        lr, momentum = self.schedule(self.last_epoch)
        if momentum is not None:
            self._writer.write(lr, momentum)  # momentum now; torch writes the lrs we return
        return [lr * r for r in self._writer.ratios]

    def _get_closed_form_lr(self) -> list[float | torch.Tensor]:
        return self.get_lr()

    def _total_steps(self) -> float | None:
        """The schedule's planned length (every schedule here has ``total_steps``; a user's may not)."""
        return getattr(self.schedule, "total_steps", None)

    # The schedule and the hook are configuration, rebuilt by whoever builds this scheduler; the
    # state is plain numbers only, so checkpoints load with torch.load(weights_only=True).
    _not_state = ("_writer", "schedule", "_hook")

    def state_dict(self) -> dict[str, Any]:
        state = {k: v for k, v in super().state_dict().items() if k not in self._not_state}
        state["planned_total_steps"] = self._total_steps()  # to tell a resume with another run length
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load the state and put the loaded step's lr (and momentum) into the optimizer; warn when the
        checkpoint was planned for another run length (as the schedule callbacks do)."""
        state = dict(state_dict)
        planned = state.pop("planned_total_steps", None)
        super().load_state_dict({k: v for k, v in state.items() if k not in self._not_state})
        if planned is not None and planned != self._total_steps():
            warnings.warn(
                f"ScheduleLR: the checkpoint was planned for total_steps={planned}, this schedule for "
                f"total_steps={self._total_steps()}; it follows the new plan from step {self.last_epoch}, "
                f"so the lr may jump there. Resume with the original max_epochs/max_steps to continue the "
                f"original trajectory.",
                UserWarning,
                stacklevel=2,
            )
        self._writer.write(*self.schedule(self.last_epoch))
