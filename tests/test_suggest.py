"""Suggestion rules on curves with known answers, and on curves with no sound answer."""

from __future__ import annotations

import json
import math
import random

import pytest

from lightning_cyclic.finder import RangeTestConfig, RangeTestResult, fallback
from lightning_cyclic.suggest import (
    CONFIDENCE_LEVELS,
    CONFIDENCE_SPREAD,
    EDGE_DEPTH,
    EDGE_DIV,
    RULES,
    Confidence,
    Suggestion,
    confidence,
    edge,
    edge_divisor,
    ema,
    read_edge,
    running_median,
    suggest,
)

LRS = [1e-6 * 10 ** (k / 20) for k in range(121)]  # 1e-6 .. 1, 20 points a decade


def curve(edge_lr: float = 0.1, floor: float = 0.3, start: float = 2.3) -> list[float]:
    """Flat, a sigmoid fall centred two decades below ``edge_lr``, then an explosion past ``edge_lr / 2``."""
    out = []
    for lr in LRS:
        x = math.log10(lr / (edge_lr / 100))
        loss = floor + (start - floor) / (1 + math.exp(3 * x))
        if lr > edge_lr / 2:
            loss += (lr / (edge_lr / 2) - 1) * 20 * start
        out.append(loss)
    return out


def test_ema_is_debiased():
    assert ema([2.0, 2.0, 2.0], 0.9) == pytest.approx([2.0, 2.0, 2.0])
    assert ema([1.0, 3.0], 0.0) == [1.0, 3.0]


def test_running_median_removes_a_single_spike_without_lag():
    assert running_median([1, 1, 9, 1, 1, 2, 3, 4, 5, 6]) == [1, 1, 1, 1, 2, 2, 3, 4, 4.5, 5]


def test_edge_finds_where_the_loss_turns_up_and_divides_it():
    losses = curve(edge_lr=0.1)  # flat at ~0.31 until lr=0.05, then up steeply
    s = suggest(LRS, losses, "edge")
    below, above = [lr for lr in LRS if lr > 0.05][:2]  # 0.0501 (loss +0.1%) and 0.0562 (loss x20)
    reading = read_edge(LRS, losses)
    assert below <= reading.at <= above  # inside the grid step where the loss turns up
    assert reading.depth == pytest.approx(math.log(2.3 / 0.31), abs=0.1)  # a deep fall: the larger divisor
    assert s.lr == pytest.approx(reading.at / EDGE_DIV[1])
    assert s.low < s.high == s.lr
    # good range from 10% of the way down: in log loss, 2.3 -> ~0.31, at x = ln(1/9)/3 decades from 1e-3 or so
    assert 1e-4 < s.low < 1e-3


def test_edge_divisor_grows_with_the_fall_before_the_edge():
    lo, hi = EDGE_DEPTH
    assert edge_divisor(0.0) == edge_divisor(lo) == EDGE_DIV[0]
    assert edge_divisor(hi) == edge_divisor(5.0) == pytest.approx(EDGE_DIV[1])
    middle = edge_divisor((lo + hi) / 2)
    assert middle == pytest.approx(math.sqrt(EDGE_DIV[0] * EDGE_DIV[1]))  # geometric in between
    assert edge_divisor(math.inf) == pytest.approx(EDGE_DIV[1])


def test_a_shallow_curve_is_divided_less_than_a_deep_one():
    shallow = curve(floor=2.1)  # the loss fell under 0.1 nats before it turned up
    deep, shallow_s = suggest(LRS, curve(), "edge"), suggest(LRS, shallow, "edge")
    assert read_edge(LRS, shallow).depth < EDGE_DEPTH[0]
    assert shallow_s.lr == pytest.approx(read_edge(LRS, shallow).at / EDGE_DIV[0])
    assert shallow_s.lr > deep.lr
    assert "divided by 1.5" in shallow_s.reason and "fall of" in shallow_s.reason


def test_without_warmup_the_edge_is_divided_by_at_least_the_deep_divisor():
    """A warm restart jumps to its peak in one step: a shallow curve's edge/1.5 is too bold there; a deep one is
    divided as it was."""
    shallow, deep = curve(floor=2.1), curve()
    assert suggest(LRS, shallow, "edge", warms_up=False).lr == pytest.approx(read_edge(LRS, shallow).at / EDGE_DIV[1])
    assert suggest(LRS, deep, "edge", warms_up=False).lr == pytest.approx(suggest(LRS, deep, "edge").lr)
    for rule in ("valley", "steepest", "minimum"):  # the other rules have no divisor to raise
        assert suggest(LRS, shallow, rule, warms_up=False) == suggest(LRS, shallow, rule)
    result = RangeTestResult(LRS, shallow, RangeTestConfig(), suggest(LRS, shallow))
    assert result.chosen_for(warms_up=True) == result.chosen
    assert result.chosen_for(warms_up=False).lr == pytest.approx(read_edge(LRS, shallow).at / EDGE_DIV[1])


def test_edge_takes_a_fixed_divisor_when_given():
    losses = curve()
    assert edge(LRS, losses, ema(losses, 0.9), edge_div=2.0).lr == pytest.approx(read_edge(LRS, losses).at / 2)


def test_edge_on_losses_that_are_not_all_positive_uses_the_deep_divisor():
    losses = [x - 1.0 for x in curve()]  # e.g. a loss with a negative offset: no log, no depth in nats
    s = suggest(LRS, losses, "edge")
    assert read_edge(LRS, losses).depth == math.inf
    assert s.lr == pytest.approx(read_edge(LRS, losses).at / EDGE_DIV[1])


def test_edge_is_insensitive_to_noise_where_the_minimum_is_not():
    rng = random.Random(0)
    edges, minima = [], []
    for _ in range(5):
        noisy = [x * (1 + 0.15 * rng.uniform(-1, 1)) for x in curve()]
        edges.append(suggest(LRS, noisy, "edge").lr)
        minima.append(suggest(LRS, noisy, "minimum").lr)
    assert max(edges) / min(edges) < 1.1


@pytest.mark.parametrize("rule", sorted(RULES))
def test_every_rule_suggests_inside_the_curve_with_a_range(rule):
    s = suggest(LRS, curve(), rule)
    assert s.rule == rule and s.lr is not None
    assert LRS[0] / 100 <= s.lr <= LRS[-1]
    assert s.low <= s.high


def test_steepest_is_the_steepest_point_in_log_lr():
    losses = [2.0 - math.tanh(math.log10(lr / 1e-3)) for lr in LRS]  # steepest exactly at 1e-3
    s = suggest(LRS, losses, "steepest", smooth=0.0)
    assert s.lr == pytest.approx(1e-3, rel=0.13)


def test_minimum_is_a_tenth_of_the_lowest_point():
    losses = [(math.log10(lr) + 2) ** 2 + 1 for lr in LRS]  # minimum at 1e-2
    s = suggest(LRS, losses, "minimum", smooth=0.0)
    assert s.lr == pytest.approx(1e-3)


@pytest.mark.parametrize("rule", sorted(RULES))
@pytest.mark.parametrize(
    "losses, reason",
    [
        ([math.nan] * 121, "every loss was NaN/inf"),
        ([2.0, 1.0, 0.5, math.inf] + [1.0] * 117, "only 3 finite points"),
        ([1.0 + k / 100 for k in range(121)], "the loss never fell below its starting value"),
    ],
)
def test_no_sound_suggestion_gives_none_and_the_reason(rule, losses, reason):
    s = suggest(LRS, losses, rule)
    assert s.lr is None and not s
    assert reason in s.reason


def test_edge_without_divergence_says_to_raise_max_lr():
    falling = [2.3 - 2 * k / 120 for k in range(121)]
    s = edge(LRS, falling, ema(falling, 0.9))
    assert s.lr is None and "raise max_lr" in s.reason and "never turned back up" in s.reason


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="rule must be one of 'edge', 'valley', 'steepest', 'minimum', got 'best'"):
        suggest(LRS, curve(), "best")
    with pytest.raises(ValueError, match=r"smooth must be in \[0, 1\), got 1"):
        suggest(LRS, curve(), "edge", smooth=1)
    with pytest.raises(ValueError, match="lrs and losses must have the same length, got 121 and 3"):
        suggest(LRS, [1.0, 2.0, 3.0])


# --- how far to trust a suggestion -------------------------------------------------------------------


def u_curve(floor: float = 0.3, start: float = 2.3) -> list[float]:
    """Smooth and U-shaped in log lr: a sigmoid fall centred at 3e-4, then a climb of exp(4) per decade."""
    out = []
    for lr in LRS:
        x = math.log10(lr)
        out.append(floor + (start - floor) / (1 + math.exp(3 * (x + 3.5))) + math.exp(4 * (x + 1)))
    return out


def noisy(losses: list[float], sigma: float, seed: int = 0) -> list[float]:
    """Each loss times exp(N(0, sigma)): multiplicative noise."""
    rng = random.Random(seed)
    return [x * math.exp(rng.gauss(0, sigma)) for x in losses]


def test_a_clean_u_shaped_curve_gives_high_confidence():
    s = suggest(LRS, u_curve())
    c = s.confidence
    assert c.level == "high" and c.score >= CONFIDENCE_LEVELS[1]
    assert c.noise == pytest.approx(0.0, abs=1e-3)  # a smooth curve: nothing scatters about its running median
    assert c.depth == pytest.approx(read_edge(LRS, u_curve()).depth)  # the fall read_edge reads, in nats
    crossings = read_edge(LRS, u_curve()).crossings
    assert len(crossings) == 3 and c.spread == pytest.approx(math.log10(max(crossings) / min(crossings)))
    assert c.spread < CONFIDENCE_SPREAD[1]
    assert s.lr == pytest.approx(edge(LRS, u_curve(), ema(u_curve(), 0.9)).lr)  # the reading itself is untouched


@pytest.mark.parametrize("seed", range(5))
def test_the_same_curve_with_strong_multiplicative_noise_gives_low_confidence_and_a_warning(seed):
    losses = noisy(u_curve(), sigma=0.6, seed=seed)
    s = suggest(LRS, losses)
    assert s.lr is not None and s.confidence.level == "low", s.confidence
    assert s.confidence.noise > suggest(LRS, noisy(u_curve(), sigma=0.1, seed=seed)).confidence.noise
    result = RangeTestResult(LRS, losses, RangeTestConfig(evaluate="train"), s, extra={"val_data": True})
    text = result.warning()
    assert text.startswith("LRFinder: low confidence in the suggested lr=") and "noise" in text
    assert "more num_steps (now 100)" in text and "evaluate='val'" in text and "a larger batch size" in text
    # without validation data evaluate='val' is no remedy; reading the validation loss already, neither
    for config, extra in [
        (RangeTestConfig(evaluate="train"), {}),
        (RangeTestConfig(evaluate="val"), {"val_data": True}),
    ]:
        text = RangeTestResult(LRS, losses, config, s, extra=extra).warning()
        assert "more num_steps" in text and "evaluate='val'" not in text


def test_a_shallow_curve_gives_low_confidence_from_its_depth():
    losses = u_curve(floor=2.2)  # the loss falls ln(2.3 / 2.2) = 0.044 nats before it climbs
    s = suggest(LRS, losses)
    assert s.lr is not None and s.confidence.depth < 0.05
    assert s.confidence.level == "low" and s.confidence.weakest == "depth"
    assert "fall 0.04 nats" in s.confidence.describe()


def test_a_clean_curve_gets_no_warning():
    s = suggest(LRS, u_curve())
    assert RangeTestResult(LRS, u_curve(), RangeTestConfig(), s).warning() == ""


def test_confidence_where_losses_are_not_all_positive_has_no_depth():
    losses = [x - 1.0 for x in u_curve()]
    c = suggest(LRS, losses).confidence
    assert c.depth is None and "nats" not in c.describe() and c.level == "high"


def test_one_level_reached_cannot_be_checked_for_agreement():
    losses = [x for lr, x in zip(LRS, u_curve()) if lr < 0.08]  # stops between the first and second crossing
    c = confidence(LRS[: len(losses)], losses)
    assert read_edge(LRS[: len(losses)], losses).levels == 1
    assert c.spread is None and c.level == "medium" and c.weakest == "spread"


def test_other_rules_are_scored_without_the_edge_agreement():
    c = suggest(LRS, u_curve(), "valley").confidence
    assert c.spread is None and c.level == "high"


def test_confidence_and_the_result_survive_to_dict_from_dict_and_old_dicts_still_load():
    s = suggest(LRS, noisy(u_curve(), 0.3))
    assert isinstance(s.confidence, Confidence) and Suggestion.from_dict(s.to_dict()) == s
    result = RangeTestResult(LRS, u_curve(), RangeTestConfig(extend=10), s, extra={"extended_to": 1.0})
    again = RangeTestResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result and again.outcome == "extended" and again.config.extend == 10
    # a dict saved before confidence, outcome, fallback and extend existed
    old = result.to_dict()
    del old["outcome"], old["fallback"], old["suggestion"]["confidence"], old["config"]["extend"]
    old["extra"] = {}
    loaded = RangeTestResult.from_dict(old)
    assert loaded.suggestion.confidence is None and loaded.suggestion.lr == s.lr
    assert loaded.outcome == "found" and loaded.fallback is None and loaded.config.extend == 100.0
    old["suggestion"] = {"rule": "edge", "lr": None, "reason": "every loss was NaN/inf"}
    loaded = RangeTestResult.from_dict(old)
    assert loaded.outcome == "none" and loaded.chosen.lr is None and loaded.warning() == ""


# --- the fallback, where the rule reads nothing --------------------------------------------------------


def test_fallback_is_valley_on_a_curve_that_fell_but_never_turned_up():
    falling = [2.3 - 2 * k / 120 for k in range(121)]
    assert suggest(LRS, falling).lr is None
    s = fallback(LRS, falling, 0.9, optimizer_lr=0.1)
    assert s.rule == "valley" and s.lr == suggest(LRS, falling, "valley").lr and "fastai's valley" in s.reason


def test_fallback_on_a_short_curve_is_a_tenth_of_its_lowest_point_else_the_optimizers_lr():
    short = [2.0, 1.5, 1.0, 0.8, math.nan]  # four finite points, falling
    s = fallback(LRS[:5], short, 0.0, optimizer_lr=0.1)
    assert s.rule == "minimum" and s.lr == pytest.approx(LRS[3] / 10)
    nan = fallback(LRS[:1], [math.nan], 0.9, optimizer_lr=0.1)
    assert nan.rule == "optimizer" and nan.lr == 0.1 and nan.high == 0.1 and nan.low == pytest.approx(0.025)
    assert fallback(LRS[:1], [math.nan], 0.9, optimizer_lr=0.0) is None


def test_a_fallback_result_warns_what_happened_and_what_it_takes():
    falling = [2.3 - 2 * k / 120 for k in range(121)]
    s, fb = suggest(LRS, falling), fallback(LRS, falling, 0.9, 0.1)
    result = RangeTestResult(LRS, falling, RangeTestConfig(max_lr=1.0), s, extra={"extended_to": 1.0}, fallback=fb)
    assert result.outcome == "fallback" and result.chosen == fb
    text = result.warning()
    assert "found no sound suggestion: the loss never turned back up" in text
    assert "went on past max_lr=1 up to lr 1" in text and f"fallback lr={fb.lr:.3g}" in text and "valley" in text
    assert "give them a number" in text and "\n" not in text


def test_the_sweep_goes_on_past_max_lr_with_the_same_spacing():
    config = RangeTestConfig(min_lr=1e-7, max_lr=10.0, num_steps=100)
    ratio = config.lr(1) / config.lr(0)
    assert config.lr(99) == pytest.approx(10.0)
    assert [config.lr(k + 1) / config.lr(k) for k in range(98, 130)] == pytest.approx([ratio] * 32)
    assert config.extra_steps == 24  # two more decades at 99 steps per 8 decades: lr 10 -> 870 (not 1000)
    assert config.lr(99 + config.extra_steps) <= 1000 < config.lr(100 + config.extra_steps)
    linear = RangeTestConfig(min_lr=0.1, max_lr=1.0, num_steps=10, mode="linear", extend=5.0)
    assert linear.lr(10) == pytest.approx(1.1)  # steps of 0.1 on
    assert linear.extra_steps == 10  # 40 steps to reach 5, but never more than num_steps more
    assert RangeTestConfig(min_lr=0.1, max_lr=1.0, num_steps=10, mode="linear", extend=1.5).extra_steps == 5
    assert RangeTestConfig(extend=1).extra_steps == 0
    with pytest.raises(ValueError, match=r"extend must be >= 1, got 0.5"):
        RangeTestConfig(extend=0.5)
