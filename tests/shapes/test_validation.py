"""Bad arguments fail at construction, naming the argument, the value and what is allowed."""

from __future__ import annotations

import re

import pytest

from lightning_cyclic.shapes import CyclicalSchedule, OneCycleSchedule, WarmRestartsSchedule, WarmupDecaySchedule


@pytest.mark.parametrize(
    "cls, kwargs, message",
    [
        (OneCycleSchedule, dict(max_lr=0.1, pct_start=1.5), "pct_start must be in (0, 1), got 1.5"),
        (OneCycleSchedule, dict(max_lr=0.1, pct_start=0.7, three_phase=True), "pct_start must be in (0, 0.5], got 0.7"),
        (OneCycleSchedule, dict(max_lr=-1), "max_lr must be > 0, got -1"),
        (OneCycleSchedule, dict(max_lr="big"), "max_lr must be a number > 0, got 'big'"),
        (OneCycleSchedule, dict(max_lr=float("nan")), "max_lr must be a number > 0, got nan"),
        (OneCycleSchedule, dict(max_lr=0.1, anneal="sine"), "anneal must be one of 'cosine', 'linear', got 'sine'"),
        (OneCycleSchedule, dict(max_lr=0.1, div_factor=0), "div_factor must be > 0, got 0"),
        (OneCycleSchedule, dict(max_lr=0.1, moms=(0.95, 1.2)), "moms must be a pair (high, low) with each value"),
        (OneCycleSchedule, dict(max_lr=0.1, moms=0.9), "moms must be a pair (high, low)"),
        (OneCycleSchedule, dict(max_lr=0.1, total_steps=0), "total_steps must be > 0, got 0"),
        (
            CyclicalSchedule,
            dict(base_lr=0.1, max_lr=0.01),
            "max_lr must be >= base_lr, got max_lr=0.01 and base_lr=0.1",
        ),
        (CyclicalSchedule, dict(base_lr=0.0, max_lr=0.1, mode="tri"), "mode must be one of 'triangular'"),
        (CyclicalSchedule, dict(base_lr=0.0, max_lr=0.1, step_size_up=0), "step_size_up must be > 0, got 0"),
        (CyclicalSchedule, dict(base_lr=0.0, max_lr=0.1, gamma=1.5), "gamma must be in (0, 1], got 1.5"),
        (CyclicalSchedule, dict(base_lr=0.0, max_lr=0.1, scale_fn=3), "scale_fn must be a callable"),
        (WarmRestartsSchedule, dict(max_lr=0.1, cycle_len=10, cycle_mult=0), "cycle_mult must be > 0, got 0"),
        (WarmRestartsSchedule, dict(max_lr=0.1, cycle_len=10, cycle_mult=0.5), "cycle_mult=0.5 < 1 shrinks the cycles"),
        (WarmRestartsSchedule, dict(max_lr=0.1, cycle_len=10, k_decay=0), "k_decay must be > 0, got 0"),
        (WarmRestartsSchedule, dict(max_lr=0.1, cycle_len=-3), "cycle_len must be > 0, got -3"),
        (WarmRestartsSchedule, dict(max_lr=0.1, cycle_len=10, min_lr=0.2), "min_lr must be < max_lr"),
        (WarmRestartsSchedule, dict(max_lr=0.1, cycle_len=10, cycle_limit=1.5), "cycle_limit must be an integer"),
        (WarmRestartsSchedule, dict(max_lr=0.1, cycle_len=10, cycle_decay=0), "cycle_decay must be in (0, 1], got 0"),
        (WarmupDecaySchedule, dict(max_lr=0.1, decay="sine"), "decay must be one of 'constant', 'step'"),
        (WarmupDecaySchedule, dict(max_lr=0.1, decay="multistep"), "milestones must be a non-empty list"),
        (WarmupDecaySchedule, dict(max_lr=0.1, milestones=[30, 10]), "milestones must be increasing, got [30, 10]"),
        (WarmupDecaySchedule, dict(max_lr=0.1, warmup=-1), "warmup must be >= 0, got -1"),
        (WarmupDecaySchedule, dict(max_lr=0.1, warmup=100, total_steps=50), "warmup must be shorter than the run"),
    ],
)
def test_bad_argument_message(cls, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        cls(**kwargs)


def test_schedule_needing_a_length_says_so_when_evaluated_without_one():
    s = OneCycleSchedule(max_lr=0.1)
    with pytest.raises(ValueError, match=r"OneCycleSchedule needs the run's length: total_steps"):
        s.lr(0)


def test_open_ended_schedules_need_no_length():
    assert WarmupDecaySchedule(max_lr=0.1, decay="exponential", gamma=0.5).lr(2) == pytest.approx(0.025)
    assert WarmRestartsSchedule(max_lr=0.1, cycle_len=4).lr(4) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("cls", "name", "kwargs"),
    [(OneCycleSchedule, "anneal", {}), (WarmupDecaySchedule, "decay", {"total_steps": 10})],
)
def test_cosine_is_one_word_and_the_short_spelling_still_works(cls, name, kwargs):
    # "cosine" is the word everywhere; torch's "cos" (OneCycleLR's anneal_strategy) is taken and stored as it
    short = cls(max_lr=0.1, **{name: "cos"}, **kwargs)
    assert getattr(short, name) == "cosine"
    assert short == cls(max_lr=0.1, **{name: "cosine"}, **kwargs)
