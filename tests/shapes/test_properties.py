"""Properties every schedule keeps for any valid arguments and any step."""

from __future__ import annotations

import math

from hypothesis import example, given, settings
from hypothesis import strategies as st

from lightning_cyclic.shapes import CyclicalSchedule, OneCycleSchedule, WarmRestartsSchedule, WarmupDecaySchedule
from lightning_cyclic.shapes.warmup import DECAYS

lrs = st.floats(1e-5, 10.0)
steps = st.integers(0, 10_000)


@settings(max_examples=200, deadline=None)
@given(max_lr=lrs, total=st.integers(1, 5000), pct=st.floats(0.01, 0.99), three=st.booleans(), step=steps)
def test_onecycle_stays_in_range_and_holds_past_end(max_lr, total, pct, three, step):
    if three:
        pct = min(pct, 0.5)
    s = OneCycleSchedule(max_lr=max_lr, total_steps=total, pct_start=pct, three_phase=three)
    lr, mom = s(step)
    assert math.isfinite(lr) and 0 < lr <= max_lr * (1 + 1e-12)
    assert 0.85 - 1e-12 <= mom <= 0.95 + 1e-12
    if step >= total:
        assert s(step) == s(total - 1) == s(10 * total + 3)  # never raises, holds the final value


@settings(max_examples=200, deadline=None)
@given(
    base=st.floats(0, 1.0),
    span=st.floats(1e-4, 5.0),
    up=st.integers(1, 500),
    down=st.integers(1, 500),
    mode=st.sampled_from(["triangular", "triangular2", "exp_range"]),
    step=st.integers(0, 1_000_000),
)
def test_cyclical_stays_between_bounds(base, span, up, down, mode, step):
    # step goes far past 1,024 cycles, where 2**cycle overflows a float (triangular2 must not)
    s = CyclicalSchedule(base_lr=base, max_lr=base + span, step_size_up=up, step_size_down=down, mode=mode, gamma=0.999)
    lr, mom = s(step)
    assert base - 1e-12 <= lr <= base + span + 1e-12
    assert 0.8 - 1e-12 <= mom <= 0.9 + 1e-12
    if mode == "triangular":  # periodic
        assert math.isclose(s.lr(step), s.lr(step + up + down), rel_tol=1e-9, abs_tol=1e-12)


@settings(max_examples=200, deadline=None)
@given(
    max_lr=lrs,
    cycle_len=st.floats(0.5, 300),
    mult=st.floats(1.0, 3.0),
    decay=st.floats(0.1, 1.0),
    warmup=st.integers(0, 50),
    step=steps,
)
@example(max_lr=1.0, cycle_len=0.9, mult=1.0, decay=1.0, warmup=0, step=27)  # 30 x 0.9 rounds to 27.0 exactly
def test_warm_restarts_restart_at_cycle_ends(max_lr, cycle_len, mult, decay, warmup, step):
    s = WarmRestartsSchedule(
        max_lr=max_lr, cycle_len=cycle_len, cycle_mult=mult, cycle_decay=decay, warmup=warmup, moms=(0.95, 0.85)
    )
    lr, mom = s(step)
    assert 0 <= lr <= max_lr * (1 + 1e-12)
    assert 0.85 - 1e-12 <= mom <= 0.95 + 1e-12
    i, into, length = s.cycle_position(step)
    assert 0 <= into < length
    # the step where a cycle ends is where the next starts, at its (decayed) peak
    end = s.cycle_end(i)
    if end == int(end) and end < 10_000:
        assert math.isclose(s.lr(end), max_lr * decay ** (i + 1), rel_tol=1e-9)


@settings(max_examples=300, deadline=None)
@given(
    max_lr=lrs,
    decay=st.sampled_from(DECAYS),
    warmup=st.integers(0, 100),
    extra=st.integers(1, 2000),
    step=steps,
)
def test_warmup_decay_ramps_then_never_rises(max_lr, decay, warmup, extra, step):
    s = WarmupDecaySchedule(
        max_lr=max_lr, decay=decay, warmup=warmup, total_steps=warmup + extra, milestones=[10, 40], min_lr=max_lr / 100
    )
    lr = s.lr(step)
    assert 0 <= lr <= max_lr * (1 + 1e-12)
    if step < warmup:
        assert s.lr(step) <= s.lr(step + 1) + 1e-15
    else:
        assert s.lr(step + 1) <= lr * (1 + 1e-12)
        assert lr >= max_lr / 100 * (1 - 1e-12)
