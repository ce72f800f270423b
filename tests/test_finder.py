"""The range test's decisions on curves written by hand: the lr of each step, when the sweep stops or goes on
past max_lr, and the short trials' length and choice. No torch is needed for any of them."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import pytest

from lightning_cyclic import finder_control
from lightning_cyclic.finder_control import (
    GUARDED_TRIAL_BIAS,
    SKIPPED_IN_A_ROW,
    TRIAL_BELOW,
    TRIAL_BIAS,
    TRIAL_CLIFF,
    TRIAL_LADDER,
    TRIAL_MIN_STEPS,
    SweepControl,
    below_the_cliff,
    cannot_tell,
    choose_long,
    choose_trial,
    left_plateau,
    long_length,
    sweep_lowest,
    trial_length,
    trial_peaks,
    trials_above,
    trials_at_lowest,
    trials_below,
    trials_long,
)
from lightning_cyclic.finder_result import RangeTestConfig, RangeTestResult
from lightning_cyclic.shapes import RangeTestSweep
from lightning_cyclic.suggest import EMA, ema, suggest
from tests.conftest import ROOT
from tests.shapes.test_torch_free import BLOCKED


def sweep_over(config: RangeTestConfig, curve: list[float]) -> SweepControl:
    """The control fed ``curve`` one loss a step until it stops (or the curve runs out)."""
    sweep = SweepControl(config)
    for loss in curve:
        if sweep.stop_reason:
            break
        sweep.add(loss)
    return sweep


def test_each_step_takes_the_sweeps_lr_and_the_sweep_ends_at_max_lr():
    config = RangeTestConfig(min_lr=1e-4, max_lr=1.0, num_steps=20, suggestion="valley")
    sweep = sweep_over(config, [2.0 - 0.01 * k for k in range(50)])
    assert sweep.lrs == [RangeTestSweep(min_lr=1e-4, max_lr=1.0, num_steps=20).lr(k) for k in range(20)]
    assert sweep.lrs[-1] == pytest.approx(1.0) and not sweep.extended and sweep.skipped == 0
    assert sweep.stop_reason == "reached max_lr after 20 steps"  # valley reads a falling curve: nothing to extend


def test_config_lr_is_the_sweep_shapes_lr_and_goes_on_past_its_end():
    config = RangeTestConfig(min_lr=1e-3, max_lr=10.0, num_steps=5)
    shape = config.sweep
    assert [config.lr(k) for k in range(5)] == [shape.lr(k) for k in range(5)]  # one formula: equal, not close
    assert shape.lr(9) == shape.lr(4) == 10.0  # the schedule holds max_lr ...
    assert config.lr(8) == shape.extended_lr(8) == pytest.approx(1e5)  # ... the range test goes on, a decade a step
    assert config.lr(-1) == shape.lr(-1) == 1e-3


def test_a_nan_loss_is_the_last_point():
    sweep = sweep_over(RangeTestConfig(num_steps=30), [2.0, 1.9, math.nan, 1.0])
    assert len(sweep.lrs) == 3 and math.isnan(sweep.losses[-1])
    assert sweep.stop_reason == f"the loss became nan at lr {sweep.lrs[-1]:.3g} (step 2)"


def test_the_sweep_stops_where_the_smoothed_loss_passes_diverge_times_its_best_and_its_start():
    curve = [2.0 - 0.05 * k for k in range(20)] + [1.0 * 1.5**k for k in range(30)]
    config = RangeTestConfig(num_steps=100, smooth=0.8, diverge=3.0)
    smoothed = ema(curve, 0.8)
    first = next(i for i, x in enumerate(smoothed) if x > 3.0 * min(smoothed[: i + 1]) and x > smoothed[0])
    sweep = sweep_over(config, curve)
    assert len(sweep.lrs) == first + 1 and sweep.losses == curve[: first + 1]
    assert sweep.stop_reason.startswith(f"diverged at lr {sweep.lrs[-1]:.3g} (step {first}): the smoothed loss")
    assert "passed 3x its best and its start" in sweep.stop_reason


def test_a_curve_the_edge_rule_cannot_read_yet_goes_on_past_max_lr_until_it_climbs_back():
    config = RangeTestConfig(num_steps=40, diverge=1e9)
    assert config.extra_steps == 9  # 100x max_lr is 9.75 steps on at 39 steps per 8 decades
    climbs = sweep_over(config, [2.0 - k / 40 for k in range(40)] + [3.0] * 20)
    assert climbs.extended and len(climbs.lrs) == 42 and climbs.lrs[40:] == [config.lr(40), config.lr(41)]
    assert climbs.stop_reason == f"the loss climbed back to its start at lr {climbs.lrs[-1]:.3g} (step 41, past max_lr)"
    falls = sweep_over(config, [2.0 - k / 60 for k in range(60)])
    assert falls.extended and len(falls.lrs) == 49
    assert falls.stop_reason == (
        f"reached max_lr after 40 steps before the loss turned back up, went on to lr {falls.lrs[-1]:.3g} "
        "(9 more steps, extend=100)"
    )
    for stays in (dict(extend=1), dict(suggestion="steepest")):  # no extension asked for, or a rule that reads it
        sweep = sweep_over(RangeTestConfig(num_steps=40, diverge=1e9, **stays), [2.0 - k / 60 for k in range(60)])
        assert not sweep.extended and len(sweep.lrs) == 40


def test_a_skipped_step_is_no_point_and_the_same_lr_comes_again_up_to_a_limit():
    sweep = SweepControl(RangeTestConfig(num_steps=50))
    sweep.add(2.0)
    lr = sweep.lr
    assert not sweep.counts(2.0, stepped=False) and sweep.counts(math.inf, stepped=False) and sweep.counts(2.0, True)
    for _ in range(SKIPPED_IN_A_ROW - 1):
        sweep.skip()
    sweep.add(1.9)  # a step that counts starts the count again
    assert sweep.lrs == [sweep.lrs[0], lr] and sweep.skipped == SKIPPED_IN_A_ROW - 1 and not sweep.stop_reason
    for _ in range(SKIPPED_IN_A_ROW):
        sweep.skip()
    assert sweep.skipped == 2 * SKIPPED_IN_A_ROW - 1 and len(sweep.lrs) == 2
    assert sweep.stop_reason == (
        f"{SKIPPED_IN_A_ROW} optimizer steps in a row did not step the optimizer at lr {sweep.lr:.3g} (step 2); "
        "a GradScaler skips steps whose gradients overflow"
    )


def test_the_running_average_is_the_curves_average():
    losses = [2.0, 1.5, 3.0, 0.5, 0.25]
    average = EMA(0.9)
    assert [average.add(x) for x in losses] == ema(losses, 0.9)
    assert ema(losses, 0.0) == losses and ema([4.0], 0.9) == [pytest.approx(4.0)]  # debiased from the first value


def test_the_trials_length_and_their_choice():
    assert trial_length(RangeTestConfig(trial_steps=7), 10_000) == 7
    assert trial_length(RangeTestConfig(), math.inf) is None and trial_length(RangeTestConfig(), -1) is None
    assert trial_length(RangeTestConfig(), 100) == TRIAL_MIN_STEPS and trial_length(RangeTestConfig(), 10_000) == 300
    peaks = trial_peaks(0.1)
    assert peaks == pytest.approx([0.025, 0.05, 0.1, 0.2, 0.4])
    chosen = choose_trial(peaks, [1.0, 0.5, 0.7, 0.5, math.inf], 30, "validation loss")  # a tie: the lower peak
    assert chosen["lr"] == pytest.approx(0.05 / TRIAL_BIAS) and chosen["losses"] == [1.0, 0.5, 0.7, 0.5, None]
    assert chosen["steps"] == 30 and chosen["evaluated"] == "validation loss"
    assert "the lowest validation loss (0.5) at x 2^-1" in chosen["reason"]
    blown = choose_trial(peaks, [math.inf] * 5, 30, "validation loss")
    assert blown["lr"] == pytest.approx(0.025 / 4) and "all 5 trials of 30 steps blew up" in blown["reason"]
    # with a Guard in the fit (it rolls a too bold peak back) the pick is taken as it is
    guarded = choose_trial(peaks, [1.0, 0.5, 0.7, 0.5, math.inf], 30, "validation loss", guarded=True)
    assert guarded["lr"] == pytest.approx(0.05 * GUARDED_TRIAL_BIAS) == pytest.approx(0.05) and guarded["guarded"]
    assert "as it is (a Guard in the fit" in guarded["reason"] and not chosen["guarded"]


def test_a_cliff_off_by_default_and_what_it_does_where_on(monkeypatch):
    # a recurrent net's trials (seed 8 of the corpus's GRU): the edge x 1 learnt, x 2 did not (more than 1% above
    # it), x 4 got through to the lowest loss of all. Off (the default: measured on new seeds and not adopted), the
    # lowest of the five is taken, as everywhere else
    peaks = trial_peaks(0.0213)
    lucky = [2.305, 2.304, 2.141, 2.309, 2.064]
    shipped = choose_trial(peaks, lucky, 30, "validation loss", guarded=True)
    assert TRIAL_CLIFF == math.inf and shipped["lr"] == pytest.approx(peaks[4]) and "cliff" not in shipped
    assert below_the_cliff([1.0, 0.0, 0.0, math.inf], [0, 1, 2, 3]) == (1, None)  # (a loss of 0: no 0 x inf)
    assert below_the_cliff([math.nan, 1.0, 0.5], [0, 1, 2]) == (2, None)  # (NaN: a blow-up, above any)
    # on at 1% (the corpus arm auto-trials-guard-cliff): the lower loss past the cliff is taken for a short run's luck
    monkeypatch.setattr(finder_control, "TRIAL_CLIFF", 0.01)
    chosen = choose_trial(peaks, lucky, 30, "validation loss", guarded=True)
    assert chosen["lr"] == pytest.approx(0.0213) and chosen["cliff"] == 1
    assert chosen["reason"] == (
        "5 trials of 30 steps (one-cycle) at the edge x 2^-2..2: a cliff at x 2^1 (more than 1% above a more "
        "cautious trial): the lower validation loss past it (x 2^2: 2.064) taken for a short run's luck beyond the "
        "edge; below it, the lowest validation loss (2.141) at x 2^0, as it is (a Guard in the fit rolls a too bold "
        "peak back)"
    )
    # no cliff before the lowest: the lowest is taken and nothing is said (a cliff after it cuts nothing off)
    plateau = [2.305, 2.304, 2.306, 2.274, 2.308]  # (a plateau's noise, within 1%, is no cliff)
    assert below_the_cliff(plateau, list(range(5))) == (3, 4)
    assert "cliff" not in choose_trial(peaks, plateau, 30, "val", True)
    assert choose_trial(peaks, plateau, 30, "val", True)["lr"] == pytest.approx(peaks[3])
    assert below_the_cliff([1.0, 1.005, 0.9], [0, 1, 2]) == (2, None)  # 0.5% above: no cliff
    # a blow-up is a cliff; a negative loss's 1% is of its size; ties go to the more cautious trial
    blown = choose_trial(peaks, [1.0, 0.8, math.inf, 0.5, math.inf], 30, "val", True)
    assert blown["lr"] == pytest.approx(peaks[1]) and blown["cliff"] == 0 and ", blown up)" in blown["reason"]
    assert below_the_cliff([-1.0, -0.98, -1.5], [0, 1, 2]) == (0, 1)
    assert below_the_cliff([math.inf, 1.0, 1.0, 2.0], [0, 1, 2, 3]) == (1, 3)  # (the first blew up: no cliff yet)
    assert below_the_cliff([1.0, math.nan, 0.5], [0, 1, 2]) == (0, 1)  # (a NaN after a loss: a cliff)
    # the trials below (where the five tie) must beat the pick below the cliff: the five's lowest 2.28 is within 1%
    # of their median 2.30, a cliff at x 2^-1 cuts it off, and the lower trial below (2.27) beats the pick (2.30)
    # by more than 1% of the median (it would not beat 2.28)
    ladder = (*TRIAL_BELOW, *TRIAL_LADDER)
    tie = choose_trial(trial_peaks(0.64, ladder), [2.27, 2.31, 2.30, 2.33, 2.28, 2.30, 2.30], 30, "val", True, ladder)
    assert tie["lr"] == pytest.approx(0.01) and tie["told"] and tie["cliff"] == -1


def test_two_more_above_where_nothing_told_off_by_default_and_what_they_do_where_on(monkeypatch):
    # a recurrent net whose curve read too timid (the corpus's GRU at seed 22): the five and the two below all on its
    # plateau. Off (the default), nothing more runs; on, two more above the ladder, taken where one learns
    flat = [2.307, 2.306, 2.304, 2.304, 2.305, 2.307, 2.311]
    ladder = (*TRIAL_BELOW, *TRIAL_LADDER)
    assert finder_control.TRIAL_ABOVE == () and trials_above(flat, ladder) == ()
    monkeypatch.setattr(finder_control, "TRIAL_ABOVE", (3, 4))
    assert trials_above(flat, ladder) == (3, 4)
    assert trials_above(flat[2:], TRIAL_LADDER) == ()  # (the ladder told, or the two below did not run)
    assert trials_above([1.9, *flat[1:]], ladder) == ()  # a trial below told: nothing more
    wider = (*ladder, 3, 4)
    peaks = trial_peaks(0.0069, wider)
    escaped = choose_trial(peaks, [*flat, 2.05, 2.25], 30, "validation loss", True, wider)
    assert escaped["lr"] == pytest.approx(0.0069 * 8) and escaped["told"] is True and len(escaped["losses"]) == 9
    assert "two more at x 2^3, 2^4; the lowest validation loss (2.05) at x 2^3" in escaped["reason"]
    assert escaped["reason"].startswith("5 trials of 30 steps")
    stuck = choose_trial(peaks, [*flat, 2.30, math.inf], 30, "validation loss", True, wider)
    assert stuck["told"] is False and "no lower by 1% of that median either" in stuck["reason"]
    assert stuck["lr"] == pytest.approx(choose_trial(peaks[:7], flat, 30, "validation loss", True, ladder)["lr"])


def test_the_sweeps_lowest_is_its_smoothed_minimum_up_to_its_first_blow_up():
    lrs, curve = [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0], [2.5, 2.4, 2.0, 1.9, 3.0, math.nan]
    smoothed = ema(curve[:5], 0.6)
    at = min(range(5), key=smoothed.__getitem__)
    assert sweep_lowest(lrs, curve, 0.6) == (pytest.approx(smoothed[at]), lrs[at])
    assert sweep_lowest(lrs, [2.0, 1.0, math.inf, 0.1], 0.0) == (1.0, 1e-3)  # (nothing after a blow-up counts)
    assert all(math.isnan(x) for x in sweep_lowest(lrs, [math.nan, 1.0], 0.0))
    assert all(math.isnan(x) for x in sweep_lowest([], [], 0.6))


def test_two_more_at_the_sweeps_lowest_where_the_ladder_learnt_no_more_than_the_sweep(monkeypatch):
    # a deep plain CNN with AdamW (the corpus's held-out task at seed 29): the curve read 1.54, every trial of the
    # ladder ended at the chance level, the most cautious lowest and no lower than the sweep's own lowest (2.303 at
    # lr 0.0085): two more at that lr x 2^-1, 2^0 (on by default, measured on new seeds)
    edge, five, lowest = 1.5428, [2.337, 2.361, 2.345, 2.593, 2.798], (2.3032, 0.0085)
    assert finder_control.TRIAL_AT_LOWEST == (-1, 0)
    at = trials_at_lowest(five, edge, *lowest)
    assert trial_peaks(edge, at) == pytest.approx([0.00425, 0.0085])
    # not where the ladder learnt more than the sweep, the sweep's lowest is within the ladder, the trials tie, all
    # blew up, or the sweep's lowest is not known
    assert trials_at_lowest([2.30, *five[1:]], edge, *lowest) == ()
    assert trials_at_lowest(five, edge, 2.3032, edge / 4) == () and trials_at_lowest(five, edge, 2.3032, 0.0) == ()
    assert trials_at_lowest([2.31, 2.31, 2.32, 2.31, 2.33], edge, *lowest) == ()  # (a tie: the two below run)
    assert trials_at_lowest([math.inf] * 5, edge, *lowest) == ()
    assert trials_at_lowest(five, edge, math.nan, math.nan) == ()
    ladder = (*at, *TRIAL_LADDER)
    peaks = trial_peaks(edge, ladder)
    learnt = choose_trial(peaks, [2.009, 2.171, *five], 30, "validation loss", True, ladder, lowest[0])
    assert learnt["lr"] == pytest.approx(0.00425) and learnt["at_lowest"] is True and "told" not in learnt
    assert learnt["reason"] == (
        "5 trials of 30 steps (one-cycle) at the edge x 2^-2..2: their lowest validation loss no lower than the "
        "sweep's lowest (2.303), two more at its lr x 2^-1, 2^0 (the edge x 2^-8.50, 2^-7.50); the lowest validation "
        "loss (2.009) at x 2^-8.50, as it is (a Guard in the fit rolls a too bold peak back)"
    )
    # lower by less than 1% of the ladder's median (2.361): the ladder's choice stands
    stands = choose_trial(peaks, [2.32, 2.33, *five], 30, "validation loss", True, ladder, lowest[0])
    assert stands["lr"] == pytest.approx(edge / 4) and stands["at_lowest"] is False
    said = "2^-7.50), no lower by 1% of the ladder's median; the lowest validation loss (2.337) at x 2^-2"
    assert said in stands["reason"]
    # most of the ladder blew up (a deep plain CNN with SGD): its median is a blow-up, so 1% of its lowest
    blown = [2.327, 2.33, math.inf, math.inf, math.inf]
    kept = choose_trial(peaks, [2.314, 2.325, *blown], 30, "val", True, ladder, 2.31)
    assert kept["at_lowest"] is False and "no lower by 1% of the ladder's lowest (most of it blew up)" in kept["reason"]
    # (the trials below the ladder, where it could not tell, still go by its median alone: never taken by an inf one)
    below = (*TRIAL_BELOW, *TRIAL_LADDER)
    assert choose_trial(trial_peaks(edge, below), [0.5, 1.0, math.inf, 1.0, math.nan, 2.31, math.inf], 30, "val",
                        True, below)["told"] is False  # fmt: skip
    assert choose_trial(peaks, [2.2, 2.325, *blown], 30, "val", True, ladder, 2.31)["lr"] == pytest.approx(peaks[0])
    monkeypatch.setattr(finder_control, "TRIAL_AT_LOWEST", ())  # off: nothing more runs
    assert trials_at_lowest(five, edge, *lowest) == ()


def test_two_longer_trials_where_the_seven_sat_on_the_sweeps_plateau(monkeypatch):
    # the GRU on MNIST-1D at seed 22: the five and the two below all ended at the chance level, no lower than the
    # sweep's own smoothed lowest (2.3041); 120 steps at the edge x 2^2 left it (1.29), at x 2^-6 not (2.31)
    edge, seven, lowest = 0.0069, [2.307, 2.306, 2.304, 2.304, 2.305, 2.307, 2.311], 2.3041
    ladder = (*TRIAL_BELOW, *TRIAL_LADDER)
    tied = choose_trial(trial_peaks(edge, ladder), seven, 30, "validation loss", True, ladder)
    assert tied["told"] is False and finder_control.TRIAL_LONG == (-6, 2)  # (on by default, measured on new seeds)
    assert trials_long(tied, lowest) == (-6, 2) and long_length(30) == 4 * 30
    # not where a trial told, where one learnt more than the sweep by more than 1% of it, nor where the sweep's
    # lowest is unknown or every trial blew up
    told = choose_trial(trial_peaks(edge), [*seven[2:6], 2.0], 30, "validation loss", True)
    assert trials_long(told, lowest) == () and trials_long({**tied, "told": True}, lowest) == ()
    assert trials_long(tied, 2.35) == () and trials_long(tied, 2.32) == (-6, 2)  # (2.304 >= 2.32 - 0.0232)
    assert trials_long(tied, math.nan) == () and trials_long({**tied, "losses": [None] * 7}, lowest) == ()
    peaks = trial_peaks(edge, (-6, 2))
    left = choose_long(tied, peaks, [2.3056, 1.2921], 120, lowest, (-6, 2))
    assert left["lr"] == pytest.approx(edge * 4) and left["long"] == {
        "lrs": peaks, "losses": [2.3056, 1.2921], "steps": 120, "taken": True}  # fmt: skip
    assert left["losses"] == tied["losses"] and left["told"] is False  # (the seven as they were)
    assert left["reason"] == tied["reason"] + (
        "; none learnt more than the sweep (2.304): longer trials of 120 steps at x 2^-6, then 2^2, x 2^2 (1.292) "
        "left the plateau: that peak instead"
    )
    # the package runs the bold end only where the cautious one did not leave (left_plateau: lower than the seven's
    # lowest, 2.304, by more than 1% of their median, 2.305)
    assert not left_plateau(tied, 2.3056) and left_plateau(tied, 1.2921) and left_plateau(tied, 2.2800)
    assert not left_plateau(tied, 2.2830) and not left_plateau(tied, math.inf) and not left_plateau(tied, math.nan)
    one = choose_long(tied, peaks[:1], [2.2711], 120, lowest, (-6,))
    assert one["lr"] == pytest.approx(edge / 64) and one["long"]["lrs"] == peaks[:1]
    said = "longer trials of 120 steps at x 2^-6, x 2^-6 (2.271) left the plateau: that peak instead"
    assert one["reason"].endswith(said)
    # the 12-layer plain CNN with SGD at seed 30: the cautious end left it, the bold one stayed at chance
    cnn = choose_long(tied, peaks, [2.2711, 2.3093], 120, lowest, (-6, 2))
    assert cnn["lr"] == pytest.approx(edge / 64) and cnn["long"]["taken"] is True
    # neither lower than the seven's lowest by 1% of their median (2.305 x 1%): the pick stands; a blow-up never wins
    for ends in ([2.29, 2.31], [math.inf, 2.30], [math.nan, math.inf]):
        stands = choose_long(tied, peaks, ends, 120, lowest, (-6, 2))
        assert stands["lr"] == tied["lr"] and stands["long"]["taken"] is False
        assert stands["reason"].endswith("none lower than their lowest by 1% of their median: the choice stands")
    assert choose_long(tied, peaks, [math.inf, 1.0], 120, lowest, (-6, 2))["long"]["losses"] == [None, 1.0]
    # without a Guard the pick is divided for the short horizon, as the seven's is
    unguarded = choose_trial(trial_peaks(edge, ladder), seven, 30, "validation loss", False, ladder)
    assert choose_long(unguarded, peaks, [2.3, 1.3], 120, lowest, (-6, 2))["lr"] == pytest.approx(4 * edge / TRIAL_BIAS)
    with pytest.raises(ValueError, match="choose_long: 2 peaks, 1 losses and a ladder of 2"):
        choose_long(tied, peaks, [1.0], 120, lowest, (-6, 2))
    with pytest.raises(ValueError, match="choose_long: 0 peaks, 0 losses and a ladder of 0"):
        choose_long(tied, [], [], 120, lowest, ())
    monkeypatch.setattr(finder_control, "TRIAL_LONG", ())  # off: nothing more runs
    assert trials_long(tied, lowest) == ()


def test_trials_that_cannot_tell_the_candidates_apart_get_two_more_below_the_ladder():
    # the lowest within 1% of the median: a deep plain net still at chance after every trial
    at_chance = [2.3135, 2.3147, 2.3142, 2.3159, 2.3619]
    assert cannot_tell(at_chance) and trials_below(at_chance) == TRIAL_BELOW == (-6, -4)
    # one clearly lower (the bold end learned, as a recurrent net's does), most blew up, or all did: they tell
    assert not cannot_tell([2.304, 2.304, 2.306, 2.274, 2.308]) and trials_below([2.3, 2.3, 2.3, 2.2, 2.3]) == ()
    assert not cannot_tell([1.0, 1.0, math.inf, math.inf, math.inf]) and not cannot_tell([math.inf] * 5)
    assert cannot_tell([1.0, 1.0, 1.0, math.inf, math.inf])  # (a blow-up counts as the highest loss)
    assert cannot_tell([-2.0, -1.99, -1.985, -1.5, 0.0]) and not cannot_tell([-2.0, -1.9, -1.9, -1.5, 0.0])
    ladder = (*TRIAL_BELOW, *TRIAL_LADDER)
    peaks = trial_peaks(0.64, ladder)
    assert peaks == pytest.approx([0.01, 0.04, 0.16, 0.32, 0.64, 1.28, 2.56])
    learned_below = choose_trial(peaks, [1.99, 2.28, *at_chance], 30, "validation loss", True, ladder)
    assert learned_below["lr"] == pytest.approx(0.01) and len(learned_below["losses"]) == 7
    assert learned_below["reason"] == (
        "5 trials of 30 steps (one-cycle) at the edge x 2^-2..2: their lowest validation loss within 1% of their "
        "median (they cannot tell the candidates apart), two more at x 2^-6, 2^-4; the lowest validation loss "
        "(1.99) at x 2^-6, as it is (a Guard in the fit rolls a too bold peak back)"
    )
    # below no better (a recurrent net learns nothing there either): the ladder's choice stands
    flat = [2.3050, 2.3044, 2.3034, 2.3035, 2.3043, 2.3028, 2.2981]
    stands = choose_trial(peaks, flat, 30, "validation loss", True, ladder)
    assert stands["lr"] == pytest.approx(2.56) and "2^-4, no lower by 1% of that median; the lowest" in stands["reason"]
    assert stands["told"] is False and learned_below["told"] is True  # (LRFinder warns where nothing told)
    assert "told" not in choose_trial(peaks[2:], at_chance, 30, "validation loss")  # (no trials below: none ran)
    # lower, but by less than 1% of the ladder's median (2.3034): within the noise, the ladder's choice stands too
    assert choose_trial(peaks, [2.29, *flat[1:]], 30, "val", True, ladder)["lr"] == pytest.approx(2.56)
    assert choose_trial(peaks, [2.2981, *flat[1:]], 30, "val", True, ladder)["lr"] == pytest.approx(2.56)  # a tie
    assert choose_trial(peaks, [2.27, *flat[1:]], 30, "val", True, ladder)["lr"] == pytest.approx(0.01)
    assert not cannot_tell([])
    with pytest.raises(ValueError, match="choose_trial: 7 peaks, 5 losses and a ladder of 7"):
        choose_trial(peaks, flat[2:], 30, "val", True, ladder)


def test_warmup_the_old_name_of_warms_up_still_works_and_says_so():
    lrs = [10 ** (-4 + k / 10) for k in range(40)]
    losses = [2.0 - 0.01 * k if k < 30 else 2.0 + (k - 30) for k in range(40)]
    result = RangeTestResult(lrs, losses, RangeTestConfig(), suggest(lrs, losses))
    with pytest.warns(DeprecationWarning, match=r"suggest\(warmup=...\) is deprecated: the argument is now warms_up"):
        old = suggest(lrs, losses, warmup=False)
    assert old == suggest(lrs, losses, warms_up=False) != suggest(lrs, losses)
    with pytest.warns(DeprecationWarning, match=r"RangeTestResult.chosen_for\(warmup=...\)"):
        assert result.chosen_for(warmup=False) == result.chosen_for(warms_up=False)
    with pytest.raises(TypeError, match=r"got both warmup=False and warms_up=True; warmup is the old name"):
        suggest(lrs, losses, warmup=False, warms_up=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result.suggest(warms_up=False)


def test_the_names_importable_from_the_finder_module():
    from lightning_cyclic import finder
    from lightning_cyclic.finder import _NotMergeable, merge_batches  # noqa: F401

    for name in finder.__all__:
        assert getattr(finder, name) is not None, name
    assert finder.RangeTestResult is RangeTestResult and finder.SweepControl is SweepControl


USE_THE_CONTROL = """
from lightning_cyclic.finder_control import SweepControl
from lightning_cyclic.finder_result import RangeTestConfig, RangeTestResult
from lightning_cyclic.suggest import suggest

sweep = SweepControl(RangeTestConfig(num_steps=30))
while not sweep.stop_reason:
    sweep.add(2.0 - 0.02 * sweep.k if sweep.k < 20 else 1.6 + sweep.k)
result = RangeTestResult(sweep.lrs, sweep.losses, sweep.config, suggest(sweep.lrs, sweep.losses))
assert RangeTestResult.from_dict(result.to_dict()).suggestion == result.suggestion and result.suggestion
print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "lightning", "numpy")))
"""


def test_the_decisions_and_the_result_need_no_torch_lightning_or_numpy():
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED + USE_THE_CONTROL], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "[]"
