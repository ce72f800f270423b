"""Suggestion rules on curves with known answers, and on curves with no sound answer."""

from __future__ import annotations

import math

import pytest

from lightning_cyclic.suggest import (
    EDGE_DEPTH,
    EDGE_DIV,
    RULES,
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


def test_edge_takes_a_fixed_divisor_when_given():
    losses = curve()
    assert edge(LRS, losses, ema(losses, 0.9), edge_div=2.0).lr == pytest.approx(read_edge(LRS, losses).at / 2)


def test_edge_on_losses_that_are_not_all_positive_uses_the_deep_divisor():
    losses = [x - 1.0 for x in curve()]  # e.g. a loss with a negative offset: no log, no depth in nats
    s = suggest(LRS, losses, "edge")
    assert read_edge(LRS, losses).depth == math.inf
    assert s.lr == pytest.approx(read_edge(LRS, losses).at / EDGE_DIV[1])


def test_edge_is_insensitive_to_noise_where_the_minimum_is_not():
    import random

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
