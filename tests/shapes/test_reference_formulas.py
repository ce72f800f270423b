"""Schedules against the formulas of libraries that publish them as plain functions (timm), written out here as
the oracles; torch's schedulers are the oracles of test_torch_equivalence.py."""

from __future__ import annotations

import math

import pytest

from lightning_cyclic.shapes import WarmRestartsSchedule


def timm_cosine(t, t_initial, lr_max, lr_min, cycle_mul, cycle_decay, cycle_limit, k):
    """timm's ``CosineLRScheduler`` lr at ``t`` (no warmup), from its published formula, written out as the oracle."""
    if cycle_mul != 1:
        i = math.floor(math.log(1 - t / t_initial * (1 - cycle_mul), cycle_mul))
        t_i = cycle_mul**i * t_initial
        t_curr = t - (1 - cycle_mul**i) / (1 - cycle_mul) * t_initial
    else:
        i = t // t_initial
        t_i = t_initial
        t_curr = t - t_initial * i
    if i >= cycle_limit:
        return lr_min
    peak = lr_max * cycle_decay**i
    return lr_min + 0.5 * (peak - lr_min) * (1 + math.cos(math.pi * t_curr**k / t_i**k))


@pytest.mark.parametrize(
    "cycle_len, mult, decay, limit, k",
    [
        (10, 1.0, 1.0, 5, 1.0),
        (10, 2.0, 0.7, 3, 1.0),
        (12, 0.5, 0.8, 4, 1.0),  # shrinking cycles
        (10, 1.0, 0.9, 4, 2.0),  # k_decay
        (9, 0.7, 1.0, 3, 0.5),
    ],
)
def test_warm_restarts_equals_timms_cosine_scheduler_with_its_extras(cycle_len, mult, decay, limit, k):
    ours = WarmRestartsSchedule(
        max_lr=0.1, cycle_len=cycle_len, cycle_mult=mult, min_lr=1e-3, cycle_decay=decay, cycle_limit=limit, k_decay=k
    )
    end = ours.cycle_end(limit - 1)
    for t in [s * 0.5 for s in range(int(2 * end) + 10)]:
        want = timm_cosine(t, cycle_len, 0.1, 1e-3, mult, decay, limit, k) if t < end else 1e-3
        assert ours.lr(t) == pytest.approx(want, rel=1e-9, abs=1e-12), t


def test_each_restart_rises_to_its_peak_over_restart_warmup():
    s = WarmRestartsSchedule(max_lr=0.1, cycle_len=10, min_lr=0.0, restart_warmup=4, cycle_decay=0.5)
    assert s.lr(0) == pytest.approx(0.1)  # the first cycle starts at its peak (the warmup before it is `warmup`)
    assert [s.lr(10 + k) for k in range(5)] == pytest.approx([0.0, 0.0125, 0.025, 0.0375, 0.05])  # ramp to 0.05
    assert s.lr(14 + 3) == pytest.approx(0.025 * (1 + math.cos(math.pi * 3 / 6)))  # cosine over the other 6
    assert s.cycle_end(1) == 20 and s.lr(20) == pytest.approx(0.0)
    short = WarmRestartsSchedule(max_lr=0.1, cycle_len=4, restart_warmup=10)  # at most half of a cycle
    assert short.lr(4 + 2) == pytest.approx(0.1)
