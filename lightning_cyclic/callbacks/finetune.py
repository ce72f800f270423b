"""``FineTune``: fastai's ``fine_tune`` as one callback: the head with the backbone frozen, then everything, each
phase a one-cycle, the backbone at lower lrs than the head.

    phase 1 (``freeze_epochs``)   the backbone frozen; one-cycle of the head up to ``max_lr``, rising for
                                   ``frozen_pct_start`` of the phase (fastai: 0.99)
    phase 2 (the rest of the run)  the backbone unfrozen and added to the optimizer: as one param group at
                                   ``backbone_lr_mult`` times the head's lr, or (``layer_decay``) one group per
                                   layer, ``layer_decay ** d`` times it for the layer ``d`` layers below the head
                                   (timm's ``param_groups_layer_decay``); one-cycle up to ``unfrozen_max_lr``
                                   (default ``max_lr / 2``, as fastai) for every group at its ratio

``max_lr="auto"`` runs the LR range test at the start of the fit (the backbone frozen) and ``unfrozen_max_lr=
"auto"`` runs it again when the backbone is unfrozen, on the whole model with its new groups: the lr that suits
the head alone is rarely the one that suits the whole network.

It is a :class:`~lightning_cyclic.Sequential` of the two one-cycles (the schedule's hooks are that class's own),
and a Lightning ``BaseFinetuning`` (the freezing, the param groups added mid-fit, their restore on resume). It
replaces ``BackboneFinetuning`` rather than sitting beside it (both would add the backbone to the
optimizer): the schedule here is the whole run's, the backbone's lr moves with the head's instead of ramping
on its own. ``configure_optimizers`` must give the optimizer the trainable parameters only
(``filter(lambda p: p.requires_grad, self.parameters())``), as for ``BackboneFinetuning``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BaseFinetuning
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from lightning_cyclic.callbacks.arguments import AUTO
from lightning_cyclic.callbacks.composed import Sequential
from lightning_cyclic.callbacks.cycles import OneCycle
from lightning_cyclic.callbacks.lr_finder import LRFinder
from lightning_cyclic.callbacks.schedule import ScheduleCallback
from lightning_cyclic.finder import run_range_test
from lightning_cyclic.optim import layer_decay_groups
from lightning_cyclic.shapes._checks import check_number


class FineTune(Sequential, BaseFinetuning):
    """Freeze the backbone for ``freeze_epochs``, then unfreeze it with discriminative lrs (see the module).

    Args:
        backbone: the LightningModule's attribute that holds the backbone (an ``nn.Module``): a name, a dotted
            path, and a slice of an ``nn.Sequential`` at its end (``"net[:-1]"``: all of ``net`` but its head).
        freeze_epochs: epochs with the backbone frozen (>= 1).
        max_lr: the head's peak in phase 1, or ``"auto"`` (the range test at the start of fit).
        unfrozen_max_lr: the head's peak in phase 2, ``"auto"`` (a range test when the backbone is unfrozen),
            or ``None``: ``max_lr / 2``.
        backbone_lr_mult: the backbone's lr as a share of the head's (one group), in (0, 1].
        layer_decay: instead, one group per layer of the backbone (its direct children with parameters, in
            order), the one next to the head at ``layer_decay`` times the head's lr and each below it
            ``layer_decay`` times the next, in (0, 1].
        pct_start: phase 2's share rising.
        frozen_pct_start: phase 1's share rising.
        div_factor: each phase starts at its peak / ``div_factor`` (fastai's ``div``: 5).
        final_div_factor: and ends ``final_div_factor`` lower still.
        moms: ``(high, low)`` momentum, cycled inversely in both phases; ``None`` leaves it alone.
        train_bn: train the backbone's batch-norm layers while it is frozen (Lightning's ``train_bn``).
        finder: the ``LRFinder`` whose settings the range tests use (default: ``LRFinder()``'s).
        log: log ``lr`` and ``momentum``, as the schedule callbacks do.

    Its state (the phases' peaks, whether the backbone is unfrozen, the schedule) belongs to one fit: the same
    instance in a second ``fit`` (a k-fold loop) freezes the new model's backbone and runs its own range tests;
    a fit resumed from a checkpoint goes on where the checkpoint was.
    """

    def __init__(
        self,
        backbone: str = "backbone",
        freeze_epochs: int = 1,
        max_lr: float | str = AUTO,
        unfrozen_max_lr: float | str | None = AUTO,
        backbone_lr_mult: float = 0.01,
        layer_decay: float | None = None,
        pct_start: float = 0.3,
        frozen_pct_start: float = 0.99,
        div_factor: float = 5.0,
        final_div_factor: float = 1e4,
        moms: tuple[float, float] | None = (0.95, 0.85),
        train_bn: bool = True,
        finder: LRFinder | None = None,
        log: bool = True,
    ) -> None:
        if not isinstance(backbone, str) or not backbone:
            raise ValueError(f"backbone must be the name of the module's backbone attribute, got {backbone!r}")
        check_number("freeze_epochs", freeze_epochs, 1, integer=True)
        check_number("backbone_lr_mult", backbone_lr_mult, 0, 1, low_open=True)
        if layer_decay is not None:
            check_number("layer_decay", layer_decay, 0, 1, low_open=True)
        for name, value in (("max_lr", max_lr), ("unfrozen_max_lr", unfrozen_max_lr)):
            if value is not None and value != AUTO:
                check_number(name, value, 0, low_open=True)
        if max_lr is None:
            raise ValueError("max_lr must be a number > 0 or 'auto', got None")
        self.div_factor, self.final_div_factor, self.moms = div_factor, final_div_factor, moms
        self.pct_start, self.frozen_pct_start = pct_start, frozen_pct_start
        self.backbone, self.freeze_epochs = backbone, freeze_epochs
        self.max_lr, self.unfrozen_max_lr = max_lr, unfrozen_max_lr
        self.backbone_lr_mult, self.layer_decay = backbone_lr_mult, layer_decay
        self.train_bn = train_bn
        # the phases' arguments, checked now; their peaks are known at the start of fit (see _phases)
        parts = [self._cycle(1.0, frozen_pct_start), self._cycle(1.0, pct_start)]
        super().__init__(parts, boundaries=[freeze_epochs], interval="epoch", log=log)
        self.finder = finder  # (the range tests' settings; the phases take numbers)

    @override
    def _fresh(self) -> None:
        """The state of one fit: each ``fit`` starts frozen, with its own range tests, unless it resumes."""
        super()._fresh()
        self._internal_optimizer_metadata: dict[int, Any] = {}  # BaseFinetuning's: the param groups added
        self._restarting = False
        self.lrs: list[float | None] = [None, None]  # the peaks of the two phases, once known
        self.results: list[Any] = [None, None]  # the range tests' results, where they ran
        self.unfrozen = False

    @property
    @override
    def state_key(self) -> str:
        return type(self).__qualname__  # one FineTune to a Trainer, as BaseFinetuning's key says

    # freezing (BaseFinetuning) ------------------------------------------------------------------------
    def _backbone(self, pl_module: pl.LightningModule) -> torch.nn.Module:
        """The module ``backbone`` names: an attribute path (``"encoder"``, ``"net.body"``), whose last part may
        slice an ``nn.Sequential`` (``"net[:-1]"``: every layer but the head)."""
        import re

        module: Any = pl_module
        for part in self.backbone.split("."):
            match = re.fullmatch(r"(\w+)(?:\[(-?\d*):(-?\d*)\])?", part)
            module = getattr(module, match.group(1), None) if match else None
            if match and match.group(2) is not None and isinstance(module, torch.nn.Sequential):
                start, stop = (int(x) if x else None for x in (match.group(2), match.group(3)))
                module = torch.nn.Sequential(*list(module)[start:stop])  # (a subclass may not rebuild)
        if not isinstance(module, torch.nn.Module):
            raise ValueError(
                f"FineTune(backbone={self.backbone!r}): the LightningModule has no nn.Module attribute "
                f"{self.backbone!r}; name the attribute that holds the backbone"
            )
        return module

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        ScheduleCallback.setup(self, trainer, pl_module, stage)  # a new fit's state; a checkpoint's is loaded later
        BaseFinetuning.setup(self, trainer, pl_module, stage)  # freezes the backbone (of a new fit: not unfrozen)

    @override
    def freeze_before_training(self, pl_module: pl.LightningModule) -> None:
        if not self.unfrozen:
            self.freeze(self._backbone(pl_module), train_bn=self.train_bn)

    @override
    def finetune_function(self, pl_module: pl.LightningModule, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        if epoch != self.freeze_epochs or self.unfrozen:
            return
        backbone = self._backbone(pl_module)
        self.make_trainable(backbone)
        if self.filter_on_optimizer(optimizer, list(backbone.parameters())) != list(backbone.parameters()):
            raise ValueError(
                "FineTune: the optimizer already holds backbone parameters, so they cannot get lrs of their own; "
                "give the optimizer the trainable parameters only: "
                "filter(lambda p: p.requires_grad, self.parameters())"
            )
        head = max(float(g["lr"]) for g in optimizer.param_groups)  # the scheduled lr of this step
        if self.layer_decay is not None:
            groups = layer_decay_groups(backbone, head, self.layer_decay, first_depth=1)
        else:
            groups = [{"params": list(backbone.parameters()), "lr": head * self.backbone_lr_mult}]
        for group in groups:
            optimizer.add_param_group(group)
        self.unfrozen = True

    # the schedule: two one-cycles -------------------------------------------------------------------
    def _range_test(self, trainer: pl.Trainer, pl_module: pl.LightningModule, phase: int) -> float:
        # the curve's reading alone: the trials' length is a share of the fit, and a phase is not one
        config = replace((self.finder or LRFinder(verbose=False)).config, trials=False)
        result = run_range_test(trainer, pl_module, config)
        self.results[phase] = result
        lr = result.chosen.lr
        if lr is None:
            raise ValueError(
                f"FineTune: the LR range test of phase {phase + 1} found no lr ({result.suggestion.reason})"
            )
        rank_zero_info(f"FineTune: phase {phase + 1} peaks at {lr:.4g} (LR range test: {result.suggestion.reason})")
        return lr

    def _cycle(self, max_lr: float, pct_start: float) -> OneCycle:
        return OneCycle(
            max_lr=max_lr,
            pct_start=pct_start,
            div_factor=self.div_factor,
            final_div_factor=self.final_div_factor,
            moms=self.moms,
            log=False,
        )

    def _phases(self) -> list[ScheduleCallback]:
        """The two phases at their peaks (on a run too short for the second, Sequential leaves it out, with one
        warning)."""
        first, second = self.lrs
        if first is None:
            raise RuntimeError("FineTune: phase 1's lr is not known before on_fit_start")
        second = second if second is not None else first / 2  # (until a phase-2 range test says otherwise)
        return [self._cycle(first, self.frozen_pct_start), self._cycle(second, self.pct_start)]

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        BaseFinetuning.on_fit_start(self, trainer, pl_module)  # a resume puts back the param groups added before
        if self.unfrozen:
            self.make_trainable(self._backbone(pl_module))  # (setup froze it again)
        first = self.lrs[0]
        if first is None:
            first = self.lrs[0] = self._range_test(trainer, pl_module, 0) if self.max_lr == AUTO else float(self.max_lr)
        if self.lrs[1] is None and self.unfrozen_max_lr != AUTO:  # a number, or None: half of phase 1's (fastai)
            self.lrs[1] = float(self.unfrozen_max_lr) if self.unfrozen_max_lr is not None else first / 2

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.parts = self._phases()
        super().on_train_start(trainer, pl_module)

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        was = self.unfrozen
        BaseFinetuning.on_train_epoch_start(self, trainer, pl_module)  # finetune_function: unfreeze at freeze_epochs
        if self.unfrozen and not was and self.unfrozen_max_lr == AUTO and self.lrs[1] is None:
            self.lrs[1] = self._range_test(trainer, pl_module, 1)  # the whole model, every group at its ratio
            self.on_train_start(trainer, pl_module)  # phase 2's peak is known now: the schedule again

    @override
    def describe(self, trainer: pl.Trainer) -> str:
        """One line for a run's summary: the frozen phase, the two peaks, the backbone's share."""
        first, second = (f"{v:.4g}" if isinstance(v, float) else str(v) for v in self.lrs)
        share = f"layers x{self.layer_decay:g} each" if self.layer_decay else f"x{self.backbone_lr_mult:g}"
        return (
            f"FineTune, {self.backbone} frozen for {self.freeze_epochs} epoch(s) at peak {first}, then peak {second}, "
            f"the backbone at {share} of the head"
        )

    # checkpoints ------------------------------------------------------------------------------------
    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            **BaseFinetuning.state_dict(self),
            "lrs": list(self.lrs),
            "unfrozen": self.unfrozen,
            "schedule": super().state_dict(),
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        BaseFinetuning.load_state_dict(self, state_dict)
        self.lrs = list(state_dict.get("lrs", [None, None]))
        self.unfrozen = bool(state_dict.get("unfrozen", False))
        super().load_state_dict(state_dict.get("schedule") or {})
