"""Our closed forms equal torch's stateful schedulers step by step, lr and momentum, to 1e-6 relative."""

from __future__ import annotations

import pytest
from torch.optim import lr_scheduler as L

from lightning_cyclic.shapes import CyclicalSchedule, OneCycleSchedule, WarmRestartsSchedule, WarmupDecaySchedule
from tests.helpers import assert_close, torch_trajectory


def ours(schedule, steps):
    return [schedule.lr(k) for k in range(steps)], [schedule.momentum(k) for k in range(steps)]


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize(
    "total, kwargs",
    [
        (100, dict(max_lr=0.5)),
        (100, dict(max_lr=0.5, pct_start=0.25, anneal="linear")),
        (37, dict(max_lr=1.2, pct_start=0.1368, div_factor=10.0, final_div_factor=100.0)),
        (90, dict(max_lr=0.3, three_phase=True)),
        (91, dict(max_lr=0.3, three_phase=True, anneal="linear", pct_start=0.45)),
        (7, dict(max_lr=0.1, pct_start=0.5)),
        (250, dict(max_lr=3e-3, moms=(0.9, 0.8))),
    ],
)
def test_onecycle_equals_torch(total, kwargs, kind):
    moms = kwargs.pop("moms", (0.95, 0.85))
    ref = torch_trajectory(
        lambda opt: L.OneCycleLR(
            opt,
            total_steps=total,
            anneal_strategy=kwargs.get("anneal", "cos"),
            max_momentum=moms[0],
            base_momentum=moms[1],
            **{k: v for k, v in kwargs.items() if k != "anneal"},
        ),
        total,
        kind,
    )
    lrs, ms = ours(OneCycleSchedule(total_steps=total, moms=moms, **kwargs), total)
    assert_close(lrs, ref[0])
    assert_close(ms, ref[1])


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(base_lr=0.01, max_lr=0.1, step_size_up=10),
        dict(base_lr=0.01, max_lr=0.1, step_size_up=7, step_size_down=3, mode="triangular2"),
        dict(base_lr=0.001, max_lr=0.1, step_size_up=5, step_size_down=12, mode="exp_range", gamma=0.97),
        dict(base_lr=0.0, max_lr=1.0, step_size_up=4, scale_fn=lambda c: 1 / c, scale_mode="cycle"),
        dict(base_lr=0.1, max_lr=1.0, step_size_up=4, scale_fn=lambda i: 0.99**i, scale_mode="iterations"),
    ],
)
def test_cyclical_equals_torch(kwargs, kind):
    steps = 120
    ref = torch_trajectory(lambda opt: L.CyclicLR(opt, base_momentum=0.8, max_momentum=0.9, **kwargs), steps, kind)
    lrs, ms = ours(CyclicalSchedule(moms=(0.9, 0.8), **kwargs), steps)
    assert_close(lrs, ref[0])
    assert_close(ms, ref[1])


@pytest.mark.parametrize("cycle_len, cycle_mult, min_lr", [(10, 1, 0.0), (5, 2, 1e-3), (3, 3, 0.0), (8, 1, 0.05)])
def test_warm_restarts_equals_torch(cycle_len, cycle_mult, min_lr):
    steps = 200
    ref_lrs, _ = torch_trajectory(
        lambda opt: L.CosineAnnealingWarmRestarts(opt, T_0=cycle_len, T_mult=cycle_mult, eta_min=min_lr), steps
    )
    sched = WarmRestartsSchedule(max_lr=0.1, cycle_len=cycle_len, cycle_mult=cycle_mult, min_lr=min_lr)
    assert_close([sched.lr(k) for k in range(steps)], ref_lrs)


def test_warm_restarts_in_epochs_equals_torch_fractional_epoch_stepping():
    """torch's documented per-batch use: ``scheduler.step(epoch + i / iters)``."""
    iters, epochs = 7, 30
    from tests.helpers import make_optimizer

    opt = make_optimizer()
    sched = L.CosineAnnealingWarmRestarts(opt, T_0=2, T_mult=2, eta_min=1e-4)
    ref = []
    for epoch in range(epochs):
        for i in range(iters):
            sched.step(epoch + i / iters)
            ref.append(opt.param_groups[0]["lr"])
    ours_ = WarmRestartsSchedule(max_lr=0.1, cycle_len=2 * iters, cycle_mult=2, min_lr=1e-4)
    assert_close([ours_.lr(k) for k in range(iters * epochs)], ref, rel=1e-6, abs_=1e-9)


@pytest.mark.parametrize(
    "decay, kwargs, make",
    [
        ("cosine", dict(min_lr=1e-3), lambda o, n: L.CosineAnnealingLR(o, T_max=n, eta_min=1e-3)),
        ("linear", dict(min_lr=0.01), lambda o, n: L.LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=n)),
        ("poly", dict(power=2.0), lambda o, n: L.PolynomialLR(o, total_iters=n, power=2.0)),
        ("step", dict(step_size=7, gamma=0.5), lambda o, n: L.StepLR(o, step_size=7, gamma=0.5)),
        ("multistep", dict(milestones=[5, 20, 33], gamma=0.3), lambda o, n: L.MultiStepLR(o, [5, 20, 33], 0.3)),
        ("exponential", dict(gamma=0.95), lambda o, n: L.ExponentialLR(o, gamma=0.95)),
        ("constant", {}, lambda o, n: L.ConstantLR(o, factor=1.0)),
    ],
)
def test_decays_equal_torch(decay, kwargs, make):
    steps = 50
    ref_lrs, _ = torch_trajectory(lambda opt: make(opt, steps), steps)
    sched = WarmupDecaySchedule(max_lr=0.1, decay=decay, total_steps=steps, **kwargs)
    assert_close([sched.lr(k) for k in range(steps)], ref_lrs)


def test_warmup_then_cosine_equals_torch_sequential():
    steps, warmup = 60, 10
    ref_lrs, _ = torch_trajectory(
        lambda opt: L.SequentialLR(
            opt,
            [
                L.LinearLR(opt, start_factor=1e-9, end_factor=1.0, total_iters=warmup),
                L.CosineAnnealingLR(opt, T_max=steps - warmup),
            ],
            milestones=[warmup],
        ),
        steps,
    )
    sched = WarmupDecaySchedule(max_lr=0.1, decay="cosine", warmup=warmup, warmup_lr_init=1e-10, total_steps=steps)
    assert_close([sched.lr(k) for k in range(steps)], ref_lrs, rel=1e-6, abs_=1e-9)
