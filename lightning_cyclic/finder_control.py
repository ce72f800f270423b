"""The range test's decisions, in plain Python: which lr each step takes, when the sweep stops or goes on past
``max_lr``, how long the short trials run and which of them wins.

:func:`~lightning_cyclic.finder.run_range_test` asks these and does the steps; nothing here knows torch or
Lightning, so every rule can be tried on a curve written by hand, as :mod:`~lightning_cyclic.suggest`'s are.
"""

from __future__ import annotations

import math
from typing import Any

from lightning_cyclic.finder_result import RangeTestConfig
from lightning_cyclic.suggest import EDGE_LEVELS, EMA, read_edge, unreadable

SKIPPED_IN_A_ROW = 25  # a fresh fp16 GradScaler (scale 2**16) is down to 2**-9 after 25 overflows: stop there


class SweepControl:
    """The sweep of one range test, one step at a time.

    The loop takes an optimizer step at :attr:`lr` and reports it: :meth:`skip` where the optimizer did not step
    (a GradScaler skipped it; that lr is tried again), :meth:`add` with the step's loss otherwise. It stops when
    ``stop_reason`` is set: the loss became NaN/inf, its smoothed value passed ``diverge`` times its best and
    its start, the sweep reached ``max_lr``, or too many steps in a row were skipped. A curve that reaches
    ``max_lr`` before the ``edge`` rule can read it goes on with the same spacing, up to ``extend * max_lr``
    (``extra_steps`` more), until its loss has climbed back to its start.
    """

    def __init__(self, config: RangeTestConfig):
        self.config = config
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.skipped = 0  # optimizer steps the GradScaler skipped, tried again at the same lr
        self.extended = False  # the sweep went on past max_lr
        self.stop_reason = ""
        self._sweep = config.sweep
        self._steps = config.num_steps  # where the sweep ends, unless extended
        self._in_a_row = 0
        self._smoothed = EMA(config.smooth)
        self._best = self._first = math.inf

    @property
    def k(self) -> int:
        """The step :attr:`lr` belongs to: the number of points of the curve so far."""
        return len(self.lrs)

    @property
    def lr(self) -> float:
        """The lr of the next step."""
        return self._sweep.extended_lr(self.k)

    def counts(self, loss: float, stepped: bool) -> bool:
        """Whether a step is a point of the curve: the optimizer stepped, or its loss is NaN/inf (the end)."""
        return stepped or not math.isfinite(loss)

    def skip(self) -> None:
        """The optimizer did not step at :attr:`lr`: no point; the same lr comes again, up to ``SKIPPED_IN_A_ROW``
        times in a row."""
        self.skipped += 1
        self._in_a_row += 1
        if self._in_a_row >= SKIPPED_IN_A_ROW:
            self.stop_reason = (
                f"{self._in_a_row} optimizer steps in a row did not step the optimizer at lr {self.lr:.3g} "
                f"(step {self.k}); a GradScaler skips steps whose gradients overflow"
            )

    def add(self, loss: float) -> None:
        """The loss of the step at :attr:`lr`: a point of the curve; then the rules that end or extend the sweep."""
        config, lr, k = self.config, self.lr, self.k
        self._in_a_row = 0
        self.lrs.append(lr)
        self.losses.append(loss)
        if not math.isfinite(loss):
            self.stop_reason = f"the loss became {loss} at lr {lr:.3g} (step {k})"
            return
        smoothed = self._smoothed.add(loss)
        self._best = min(self._best, smoothed)
        self._first = smoothed if k == 0 else self._first
        past = ", past max_lr" if self.extended else ""
        if smoothed > config.diverge * self._best and smoothed > self._first:
            why = f"the smoothed loss passed {config.diverge:g}x its best and its start"
            self.stop_reason = f"diverged at lr {lr:.3g} (step {k}{past}): {why}"
        elif self.extended and edge_complete(self.lrs, self.losses):
            self.stop_reason = f"the loss climbed back to its start at lr {lr:.3g} (step {k}, past max_lr)"
        elif self.k == config.num_steps and config.extra_steps and needs_edge(self.lrs, self.losses, config):
            self._steps, self.extended = self._steps + config.extra_steps, True
        elif self.k >= self._steps:
            self.stop_reason = f"reached max_lr after {config.num_steps} steps"
            if self.extended:
                self.stop_reason += (
                    f" before the loss turned back up, went on to lr {lr:.3g} ({self.k - config.num_steps} more "
                    f"steps, extend={config.extend:g})"
                )


def needs_edge(lrs: list[float], losses: list[float], config: RangeTestConfig) -> bool:
    """The ``edge`` rule reads nothing off this curve only because the loss has not turned back up yet."""
    return config.suggestion == "edge" and not unreadable(lrs, losses, config.smooth) and read_edge(lrs, losses) is None


def edge_complete(lrs: list[float], losses: list[float]) -> bool:
    """The loss has climbed back all of the way to its start: every level the ``edge`` rule reads is there."""
    reading = read_edge(lrs, losses)
    return reading is not None and reading.levels == len(EDGE_LEVELS)


# --- the second signal: short trials around the edge ----------------------------------------------------------
# Chosen on the range-test corpus (recipes/range_test_corpus, trials.py and analyse_trials.py), leave one task out:
TRIAL_LADDER = (-2, -1, 0, 1, 2)  # candidates: the edge suggestion times 2 ** j
TRIAL_SHARE = 0.03  # a trial's length, as a share of the fit's optimizer steps ...
TRIAL_MIN_STEPS = 30  # ... and at least this many
TRIAL_BIAS = 2**0.5  # a short run favours a bolder peak than the whole run wants: the pick is divided by this ...
# ... unless a callback that rolls a too bold peak back (``Guard``: ``catches_bold_peaks``) is in the fit: chosen
# on the corpus's earlier tasks, trained in the fit (recipes/range_test_corpus, auto-trials-guard)
GUARDED_TRIAL_BIAS = 1.0
# Where the ladder's lowest loss is within TRIAL_TIE of its median, its trials cannot tell the candidates apart (as
# on a deep plain net whose every trial ended near chance): two more below the ladder; the lower of those is taken
# where it beats the ladder's lowest by more than TRIAL_TIE of that median, else the ladder's choice stands.
TRIAL_TIE = 0.01
TRIAL_BELOW = (-6, -4)
# Where neither the five nor the two below told the candidates apart, two more above the ladder (the edge x 2^3, 2^4;
# a curve read too timid, as a recurrent net's whose trials stay on its plateau): off (()) unless measured better
# on seeds nothing was looked at (recipes/range_test_corpus, above.py).
TRIAL_ABOVE: tuple[int, ...] = ()
# A cliff, off (math.inf): from the most cautious candidate up, the first trial more than TRIAL_CLIFF above the lowest
# loss so far (or blown up) would end the reading, a lower loss past it taken for a short run's luck beyond the edge.
# At 1% it was made on two held-out misses and lost on seeds nothing was looked at (recipes/range_test_corpus,
# cliff.py: 3 better, 5 worse of the 10 seeds of 283 where it fired, mean -1.3 points): measured, not adopted.
TRIAL_CLIFF = math.inf
# Where the ladder's lowest trial ended no lower than the sweep's own lowest (smoothed) loss, its trials of many steps
# learnt no more than single steps of the sweep did: the edge was read past a false rise (as on a deep plain net whose
# curve stays at the chance level from its lowest up to a rise far above it). Two more trials, at the lr of the
# sweep's lowest times 2 ** j for j in TRIAL_AT_LOWEST, where that lr is below the ladder; the lower of them is taken
# where it beats the ladder's lowest by more than TRIAL_TIE of the ladder's median (of its lowest, where most blew
# up), else the ladder's choice stands. Made on two misses of the plain 8-layer CNN (seeds 29 and 30: +88, +85
# points, in-sample); on 36 seeds of every task nothing was looked at (recipes/range_test_corpus, lowest.py: 864
# range tests) it ran on 7 and changed 3 picks, +85.0, +85.0 and +5.3 points, by a rule written before each round.
# Its steps are at most 0 (the trials stay below the ladder).
TRIAL_AT_LOWEST: tuple[int, ...] = (-1, 0)
# Where neither the five nor the two below told the candidates apart and none of the seven learnt more than the
# sweep's own lowest (smoothed) loss, within TRIAL_TIE of it, the trials sat on a plateau that a short trial does not
# leave (as a recurrent net's at the chance level for its first hundred steps, whether its peak is too timid or too
# bold): longer trials, TRIAL_LONG_LENGTH times a trial's steps, at the ends of what was tried (the edge x 2 ** j for
# j in TRIAL_LONG, the most cautious first, the next only where that one did not leave the plateau); one is taken
# where it ends lower than the seven's lowest by more than TRIAL_TIE of their median (it left the plateau), else the
# choice stands. Made on a GRU's and a deep plain CNN's ties (in-sample); on 12 seeds of every task nothing was looked
# at (recipes/range_test_corpus, longer.py: 288 range tests) it ran on 8, all on those two, and changed 6 picks:
# +46.0, +48.3, +26.3, +75.2, 0.0 and -0.8 points, by a rule written before. (Measured with both trials run and the
# lower taken: where they ran, at most one of the two left the plateau, so the picks are the same.)
TRIAL_LONG: tuple[int, ...] = (-6, 2)
TRIAL_LONG_LENGTH = 4


def trial_length(config: RangeTestConfig, total: float) -> int | None:
    """Optimizer steps of one trial in a fit of ``total`` steps; ``None`` where the fit's length is unknown."""
    if config.trial_steps is not None:
        return config.trial_steps
    if not math.isfinite(total) or total <= 0:
        return None
    return max(TRIAL_MIN_STEPS, round(TRIAL_SHARE * total))


def trial_peaks(edge: float, ladder: tuple[float, ...] = TRIAL_LADDER) -> list[float]:
    """The peak lr of each trial: the edge suggestion times ``2 ** j`` for ``j`` in ``ladder``."""
    return [edge * 2.0**j for j in ladder]


def _lowest_and_median(losses: list[float]) -> tuple[float, float]:
    """The lowest of ``losses`` and their median, ``inf`` (a blow-up) counting as the highest."""
    ordered = sorted(x if math.isfinite(x) else math.inf for x in losses)
    middle = len(ordered) // 2
    return ordered[0], ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def cannot_tell(losses: list[float]) -> bool:
    """The trials' lowest loss is within ``TRIAL_TIE`` of their median (``inf``, a blow-up, counts as the highest):
    they do not tell the candidates apart. Not where most blew up (the median is ``inf``: the bold ones did tell),
    nor where all did (that has a rule of its own), nor where there are none."""
    if not losses:
        return False
    lowest, median = _lowest_and_median(losses)
    return math.isfinite(median) and median - lowest <= TRIAL_TIE * abs(median)


def trials_above(losses: list[float], ladder: tuple[float, ...]) -> tuple[int, ...]:
    """The steps to try above the ladder: ``TRIAL_ABOVE`` where the trials below it ran (the ladder could not tell)
    and told nothing either (:func:`choose_trial`'s ``told`` is False), else none."""
    if not TRIAL_ABOVE or not any(j < TRIAL_LADDER[0] for j in ladder):
        return ()
    peaks = [2.0**j for j in ladder]  # (the choice does not depend on the edge)
    return () if choose_trial(peaks, losses, 1, "", ladder=ladder).get("told") else TRIAL_ABOVE


def trials_long(record: dict[str, Any], lowest: float) -> tuple[int, ...]:
    """The steps of the ladder for the longer trials: ``TRIAL_LONG`` where the trials (``record``, as
    :func:`choose_trial` wrote it) told nothing, not even the two below (``told`` is False), and none of them ended
    lower than the sweep's ``lowest`` smoothed loss by more than ``TRIAL_TIE`` of it (a plateau); else none."""
    finite = [x for x in record.get("losses") or [] if x is not None and math.isfinite(x)]
    if not TRIAL_LONG or record.get("told") is not False or not finite or not math.isfinite(lowest):
        return ()
    return TRIAL_LONG if min(finite) >= lowest - TRIAL_TIE * abs(lowest) else ()


def long_length(steps: int) -> int:
    """Optimizer steps of a longer trial (:func:`trials_long`), where a trial takes ``steps``."""
    return TRIAL_LONG_LENGTH * steps


def left_plateau(record: dict[str, Any], loss: float) -> bool:
    """Whether a longer trial that ended at ``loss`` left the plateau that the trials of ``record``
    (:func:`choose_trial`'s) sat on: lower than their lowest by more than ``TRIAL_TIE`` of their median (``inf``, a
    blow-up, never)."""
    low, median = _lowest_and_median([math.inf if x is None else x for x in record["losses"]])
    return math.isfinite(loss) and math.isfinite(median) and low - loss > TRIAL_TIE * abs(median)


def choose_long(
    record: dict[str, Any], peaks: list[float], losses: list[float], steps: int, lowest: float, ladder: tuple[int, ...]
) -> dict[str, Any]:
    """The trials' ``record`` (:func:`choose_trial`'s) after the longer trials at ``peaks`` (the edge x ``2 ** j``
    for ``j`` in ``ladder``, the most cautious first; each runs only where the one before did not leave the plateau)
    of ``steps`` each ended at ``losses`` (``inf``: blew up): the lowest is taken, divided as the record's pick was,
    where it :func:`left_plateau`; else the record's pick stands. ``long`` holds them, and ``taken``."""
    if not len(peaks) == len(losses) == len(ladder) or not losses:
        raise ValueError(f"choose_long: {len(peaks)} peaks, {len(losses)} losses and a ladder of {len(ladder)}")
    best = lowest_trial(losses, list(range(len(losses))))
    taken = left_plateau(record, losses[best])
    finite = [x if math.isfinite(x) else None for x in losses]
    out = {**record, "long": {"lrs": peaks, "losses": finite, "steps": steps, "taken": taken}}
    where = ", then ".join(f"2^{j}" for j in ladder)
    note = f"; none learnt more than the sweep ({lowest:.4g}): longer trials of {steps} steps at x {where}, " + (
        f"x 2^{ladder[best]} ({losses[best]:.4g}) left the plateau: that peak instead"
        if taken
        else f"none lower than their lowest by {TRIAL_TIE:.0%} of their median: the choice stands"
    )
    out["reason"] = record["reason"] + note
    if taken:
        out["lr"] = peaks[best] / _bias(bool(record.get("guarded")))
    return out


def _bias(guarded: bool) -> float:
    """What a trial's pick is divided by: ``TRIAL_BIAS``, or ``GUARDED_TRIAL_BIAS`` where a callback in the fit rolls
    a too bold peak back."""
    return GUARDED_TRIAL_BIAS if guarded else TRIAL_BIAS


def trials_below(losses: list[float]) -> tuple[int, ...]:
    """The steps of the ladder to try below it: ``TRIAL_BELOW`` where the ladder's trials :func:`cannot_tell`, else
    none."""
    return TRIAL_BELOW if cannot_tell(losses) else ()


def sweep_lowest(lrs: list[float], losses: list[float], smooth: float) -> tuple[float, float]:
    """The sweep's lowest loss, smoothed as the sweep smooths it, and its lr; ``(nan, nan)`` where none is finite."""
    average, lowest, where = EMA(smooth), math.nan, math.nan
    for lr, loss in zip(lrs, losses):
        if not math.isfinite(loss):
            break
        value = average.add(loss)
        if not value >= lowest:  # (the first, and every lower one)
            lowest, where = value, lr
    return lowest, where


def trials_at_lowest(losses: list[float], edge: float, lowest: float, lowest_lr: float) -> tuple[float, ...]:
    """The steps (``edge x 2 ** step``) of the trials at the sweep's lowest: ``TRIAL_AT_LOWEST`` about ``lowest_lr``
    where the ladder's trials (``losses``) tell the candidates apart, their lowest is no lower than the sweep's
    ``lowest`` smoothed loss, and ``lowest_lr`` is below the ladder; else none."""
    finite = [x for x in losses if math.isfinite(x)]
    if not TRIAL_AT_LOWEST or not finite or cannot_tell(losses) or not min(finite) >= lowest:
        return ()
    if not 0 < lowest_lr < edge * 2.0 ** TRIAL_LADDER[0] * (1 - 1e-9):  # (strictly below: no step rounds onto -2)
        return ()
    return tuple(math.log2(lowest_lr / edge) + j for j in TRIAL_AT_LOWEST)


def lowest_trial(losses: list[float], indices: list[int]) -> int:
    """The index among ``indices`` of the lowest loss (NaN/inf, a blow-up, above any), ties to the more cautious."""
    return min(indices, key=lambda i: (losses[i] if math.isfinite(losses[i]) else math.inf, i))


def below_the_cliff(losses: list[float], indices: list[int]) -> tuple[int, int | None]:
    """From the most cautious of ``indices`` (lowest first) up: the index of the lowest loss before the first trial
    more than ``TRIAL_CLIFF`` above the lowest so far (a blow-up, ``inf``, is above any), and that trial's index
    (``None`` where there is none). Ties go to the more cautious trial. With ``TRIAL_CLIFF`` off (``inf``, the
    default) no trial is a cliff: the lowest of them all."""
    if math.isinf(TRIAL_CLIFF):  # (off: the lowest of them all)
        return lowest_trial(losses, indices), None
    value = [x if math.isfinite(x) else math.inf for x in losses]  # (NaN, as a blow-up, is above any)
    best, cliff = indices[0], None
    for i in indices[1:]:
        low, x = value[best], value[i]
        if x < low:
            best = i
        elif math.isfinite(low) and x - low > TRIAL_CLIFF * abs(low):  # (a blow-up is a cliff too)
            cliff = i
            break
    return best, cliff


def _step(j: float) -> str:
    """A step of the ladder as the reason writes it: ``-2``, or ``-7.53`` for one about the sweep's lowest."""
    return f"{j:g}" if float(j).is_integer() else f"{j:.2f}"


def choose_trial(
    peaks: list[float],
    losses: list[float],
    steps: int,
    evaluated: str,
    guarded: bool = False,
    ladder: tuple[float, ...] = TRIAL_LADDER,
    lowest: float | None = None,
) -> dict[str, Any]:
    """What the trials at ``peaks`` (the edge times ``2 ** j`` for ``j`` in ``ladder``, lowest first: with the trials
    below ``TRIAL_LADDER`` where they ran) chose from their ``losses`` (``inf`` for a trial that blew up): the peak
    of the lowest loss divided by ``TRIAL_BIAS`` (``GUARDED_TRIAL_BIAS`` where ``guarded``: a callback in the fit
    rolls a too bold peak back). The ladder's lowest is read :func:`below_the_cliff` (where ``TRIAL_CLIFF`` is on, a
    lower loss past a trial more than that above a more cautious one's is not taken; ``cliff``: that trial's step
    of the ladder, where it cut a lower loss off). A trial below ``TRIAL_LADDER`` only where it beats the ladder's
    pick by more than ``TRIAL_TIE`` of the ladder's median loss (``told``: whether one did, where they ran because
    the ladder could not tell; ``at_lowest``: where they ran at the sweep's lowest, whose smoothed loss ``lowest``
    the ladder did not beat, :func:`trials_at_lowest`). Where every trial blew up, a quarter of the lowest peak. The
    record ``extra["trials"]`` holds, with the lr and the reason."""
    if not len(peaks) == len(losses) == len(ladder):
        raise ValueError(f"choose_trial: {len(peaks)} peaks, {len(losses)} losses and a ladder of {len(ladder)}")
    out: dict[str, Any] = {"lrs": peaks, "losses": [x if math.isfinite(x) else None for x in losses]}
    out.update(steps=steps, evaluated=evaluated)
    if not any(math.isfinite(x) for x in losses):  # even a quarter of the edge blew up: far below it, not at it
        reason = f"all {len(losses)} trials of {steps} steps blew up, the lowest at {peaks[0]:.3g}: a quarter of that"
        return {**out, "lr": peaks[0] / 4, "reason": reason}

    main = [i for i, j in enumerate(ladder) if j in TRIAL_LADDER]
    under = [i for i, j in enumerate(ladder) if j < TRIAL_LADDER[0]]  # (the trials below, where they ran)
    over = [i for i, j in enumerate(ladder) if j > TRIAL_LADDER[-1]]  # (and above, where those told nothing)
    below = [ladder[i] for i in under]
    best, cliff = below_the_cliff(losses, main)
    note = ""
    if cliff is not None and losses[lowest_trial(losses, main)] < losses[best]:  # the cliff cut a lower loss off
        past = lowest_trial(losses, main)
        out["cliff"] = ladder[cliff]
        blown = "" if math.isfinite(losses[cliff]) else ", blown up"
        note = (
            f"a cliff at x 2^{ladder[cliff]} (more than {TRIAL_CLIFF:.0%} above a more cautious trial{blown}): the "
            f"lower {evaluated} past it (x 2^{ladder[past]}: {losses[past]:.4g}) taken for a short run's luck beyond "
            "the edge; below it, "
        )
    if under:
        lower = lowest_trial(losses, under)
        _, median = _lowest_and_median([losses[i] for i in main])
        # (by the ladder's median; where that is a blow-up, the trials at the sweep's lowest go by its lowest)
        by_lowest = lowest is not None and not math.isfinite(median)
        scale = losses[best] if by_lowest else median
        taken = math.isfinite(losses[lower]) and losses[best] - losses[lower] > TRIAL_TIE * abs(scale)
        if lowest is not None:  # (the ladder told, but learnt no more than the sweep: TRIAL_AT_LOWEST)
            of = "the ladder's lowest (most of it blew up)" if by_lowest else "the ladder's median"
            note += (
                f"their lowest {evaluated} no lower than the sweep's lowest ({lowest:.4g}), two more at its lr x "
                f"{', '.join(f'2^{j}' for j in TRIAL_AT_LOWEST)} (the edge x "
                f"{', '.join(f'2^{_step(j)}' for j in below)})"
                + ("; " if taken else f", no lower by {TRIAL_TIE:.0%} of {of}; ")
            )
            out["at_lowest"] = taken
        else:
            note += (
                f"their lowest {evaluated} within {TRIAL_TIE:.0%} of their median (they cannot tell the candidates "
                f"apart), two more at x {', '.join(f'2^{j}' for j in below)}"
                + ("; " if taken else f", no lower by {TRIAL_TIE:.0%} of that median; ")
            )
        best = lower if taken else best
        if lowest is None and over and not taken:
            upper = lowest_trial(losses, over)
            taken = math.isfinite(losses[upper]) and losses[best] - losses[upper] > TRIAL_TIE * abs(median)
            note += f"two more at x {', '.join(f'2^{ladder[i]}' for i in over)}" + (
                "; " if taken else f", no lower by {TRIAL_TIE:.0%} of that median either; "
            )
            best = upper if taken else best
        if lowest is None:
            out["told"] = taken  # (False: neither the ladder nor the trials below (and above) told them apart)
    bias = _bias(guarded)
    how = (
        "as it is (a Guard in the fit rolls a too bold peak back)"
        if bias == 1
        else f"divided by {bias:.3g} for the short horizon"
    )
    reason = (
        f"{len(main)} trials of {steps} steps (one-cycle) at the edge x 2^{TRIAL_LADDER[0]}.."
        f"{TRIAL_LADDER[-1]}: {note}the lowest {evaluated} ({losses[best]:.4g}) at x 2^{_step(ladder[best])}, {how}"
    )
    return {**out, "lr": peaks[best] / bias, "reason": reason, "guarded": guarded}
