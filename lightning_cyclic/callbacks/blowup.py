"""When a training loss is a blow-up: the rules of :class:`~lightning_cyclic.Guard`, and the NaN/inf check on
which :class:`~lightning_cyclic.BestSnapshot` stops a run."""

from __future__ import annotations

import math
from collections import deque
from itertools import islice
from typing import Any, cast

import lightning.pytorch as pl
import torch

# a rise that stays, or a jump, counts only above this share of the run's first losses: a loss that doubles from 0.05
# to 0.1 (a cross-entropy that started at 2.3) is the noise of a nearly fitted model, not a blow-up
FLOOR = 0.1
# a run whose loss fell by at least LEARNT of where it started, and whose median over ``patience`` steps climbs
# back by LOST of that fall, has lost what it learnt: a collapse to the chance level (a too bold lr), which the
# rules by ratio do not see when the fall was less than ``spike``-fold
LEARNT = 0.1
LOST = 0.9
SPAN = 3  # ... over the last SPAN * patience steps (the recipe's 21 runs at their best lr: no false alarm)
_LOWEST = -math.inf


def median(values: Any) -> float:
    """The median of an iterable of floats (``statistics.median``'s value: the mean of the middle two of an even
    count), sorted once with no copy before (the level is taken every ``patience`` steps)."""
    ordered = sorted(values)
    half = len(ordered) // 2
    return ordered[half] if len(ordered) % 2 else (ordered[half - 1] + ordered[half]) / 2


class BlowupRules:
    """The Guard's rules over the training loss of each optimizer step, as a mixin that holds their state:
    ``history`` (the last ``window + patience`` losses), the level (the median of all but the last ``patience``,
    taken again every ``patience`` steps), the run's first losses and the lowest median of ``patience`` steps it
    reached (read at the same times). The class that mixes it in sets ``spike``, ``patience`` and ``window``."""

    spike: float
    patience: int
    window: int
    collapse: bool  # whether the collapse rule is on

    def _fresh_rules(self) -> None:
        # the training loss of each optimizer step (the last window + patience)
        self.history: deque[float] = deque(maxlen=self.window + self.patience)
        self._level: float | None = None  # the median of history[:-patience], refreshed every patience steps
        self._level_due = 0
        self._initial = 0.0  # the median of the first ``patience`` losses of the run
        self._lowest = math.inf  # the lowest median of the last ``patience`` losses, at each refresh of the level
        self._calm = -math.inf  # a loss up to this cannot be a rise (-inf: the level is not known yet)
        # after a rollback to before the run had learnt a tenth: the refreshes of the level left for it to learn one
        # again (None: no such rollback, or learnt since)
        self._relearn: int | None = None

    def _check(self, value: float) -> str:
        """This step's loss, recorded: ``""`` if healthy, else why it is a blow-up."""
        history = self.history
        # most steps: finite, no jump over the last loss, and below the level's bar (two comparisons)
        if _LOWEST < value <= self._calm and value <= self.spike * history[-1]:
            history.append(value)
            self._level_due -= 1
            return self._refresh(value) if self._level_due <= 0 else ""
        return self._judge(value)

    def _judge(self, value: float) -> str:
        """The rules in full, for a step that the quick test of :meth:`_check` could not clear."""
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
            # one step that throws the weights out (not one hard batch of a nearly fitted model: below the floor)
            if value > self.spike * highest and value > FLOOR * self._initial:
                return (
                    f"the training loss jumped to {value:.4g}, {value / highest:.1f}x the highest of the last "
                    f"{len(before)} steps"
                )
        if len(history) < 2 * self.patience:  # a level of at least as many steps as the recent median
            if len(history) == self.patience:
                self._initial = median(history)
                self._set_calm()
            return ""
        self._level_due -= 1
        if self._level is None or self._level_due <= 0:
            return self._refresh(value)
        return "" if value <= self._calm else self._rise()  # (a rise shows in this step too)

    def _refresh(self, value: float) -> str:
        """The level taken again (every ``patience`` steps), and this step's loss judged by it."""
        history = self.history
        self._level, self._level_due = median(islice(history, len(history) - self.patience)), self.patience
        self._lowest = min(self._lowest, median(islice(history, len(history) - self.patience, None)))
        self._set_calm()
        stuck = self._relearnt() if self._relearn is not None else ""
        return stuck or ("" if value <= self._calm else self._rise())

    def _learnt(self) -> bool:
        """Whether the run's lowest has fallen by ``LEARNT`` of its first losses."""
        return self._initial > 0 and self._initial - self._lowest >= LEARNT * self._initial

    def _relearnt(self) -> str:
        """After a rollback to before the run had learnt: ``""`` while it may still learn again, else why not."""
        if self._learnt():
            self._relearn = None
            return ""
        self._relearn = left = cast(int, self._relearn) - 1
        if left > 0:
            return ""
        self._relearn = None
        return (
            f"the training loss has not fallen by a tenth of where the run started ({self._initial:.4g}) since the "
            f"rollback to before it had (median of the last {self.patience} steps {self._lowest:.4g} at its lowest): "
            "it is stuck, the lr still too bold"
        )

    def _set_calm(self) -> None:
        if self._level is None or not self.history:
            self._calm = -math.inf
        else:
            self._calm = min(max(self.spike * self._level, FLOOR * self._initial), self._lost_bar())

    def _lost(self, level: float | None) -> bool:
        """Whether a loss of ``level`` is back where the run started, by the collapse rule's bar."""
        return level is not None and level >= self._lost_bar()

    def _lost_bar(self) -> float:
        """The loss above which the run has lost what it learnt (``inf`` until it has learnt ``LEARNT``)."""
        if not self.collapse or not self._learnt():
            return math.inf
        return self._initial - (1 - LOST) * (self._initial - self._lowest)

    def _rise(self) -> str:
        """Why the loss is a rise that stays, or ``""``."""
        history = list(self.history)
        level = median(history[: -self.patience])
        recent = median(history[-self.patience :])
        if level > 0 and recent > self.spike * level and recent > FLOOR * self._initial:
            return (
                f"the training loss rose to {recent:.4g} (median of the last {self.patience} steps), "
                f"{recent / level:.1f}x its level of {level:.4g}"
            )
        # a collapse stays: the median of a longer span must be back too (a healthy run's loss can climb back for a
        # few steps at the peak of a warmup; none of the 21 tasks' runs at their best one-cycle lr stayed back)
        span, bar = min(SPAN * self.patience, len(history)), self._lost_bar()
        if recent >= bar and (back := median(history[-span:])) >= bar:
            return (
                f"the training loss rose back to {back:.4g} (median of the last {span} steps), near where "
                f"the run started ({self._initial:.4g}) from its lowest of {self._lowest:.4g}: what it learnt is lost"
            )
        return ""

    def _rewind(self, history: list[float], lowest: float, relearn: int = 0) -> None:
        """The losses and the lowest as they were at a rollback's snapshot; the level is taken again from them.
        A run that had learnt a tenth, rolled back to before it had (its start): it must learn one again within
        about ``relearn`` optimizer steps after the rollback, or it is stuck (``0``: no such limit)."""
        learnt = self._learnt()  # (before the blow-up)
        self.history, self._level, self._calm = deque(history, self.history.maxlen), None, -math.inf
        self._lowest = lowest  # (back at the start, the run has learnt nothing yet: no collapse until it has)
        self._relearn = None
        # only a run that had learnt a tenth is expected to learn it again (a fine-tune's loss may never fall a tenth)
        if relearn and self.collapse and learnt and not self._learnt():
            self._relearn = -(-relearn // self.patience) + 1  # (in refreshes of the level: one each patience steps)

    def _rules_state(self) -> dict[str, Any]:
        return {
            "history": list(self.history),
            # the cached level, the run's first losses and its lowest: a resume decides as the run would have
            "level": [self._level, self._level_due, self._initial, self._lowest],
            "relearn": self._relearn,
        }

    def _load_rules(self, state_dict: dict[str, Any]) -> None:
        self.history = deque(state_dict.get("history", []), self.window + self.patience)
        level = list(state_dict.get("level", (None, 0, 0.0)))
        self._level, self._level_due, self._initial = level[:3]
        self._lowest = level[3] if len(level) > 3 else math.inf  # (a checkpoint from before the rule: not known)
        self._relearn = state_dict.get("relearn")
        self._set_calm()


def nonfinite_loss(trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any) -> str:
    """Why the training loss of this batch (``outputs`` of ``on_train_batch_end``) is NaN/inf on some rank, with
    that rank and its value, or ``""``: decided on all ranks together."""
    loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
    local_bad = isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss.detach()).all())
    bad = local_bad
    if trainer.world_size > 1:
        bad = trainer.strategy.reduce_boolean_decision(local_bad, all=False)
    if not bad:
        return ""
    value = float(loss.detach().float().mean()) if isinstance(loss, torch.Tensor) else math.nan
    where = ""
    if trainer.world_size > 1:  # every rank is here: say which one's loss it was, with its value
        device = loss.device if isinstance(loss, torch.Tensor) else pl_module.device
        mine = torch.tensor([float(local_bad), value], device=device, dtype=torch.float64)
        gathered = trainer.strategy.all_gather(mine).reshape(-1, 2).cpu()
        rank = next(r for r in range(len(gathered)) if gathered[r, 0] > 0)
        value, where = float(gathered[rank, 1]), f" on rank {rank}"
    return f"the training loss is {value}{where} after {trainer.global_step} optimizer steps"
