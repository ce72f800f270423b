"""Torch glue: momentum on every optimizer family, group ratios, and the closed-form LRScheduler."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch.optim import lr_scheduler as L

from lightning_cyclic import ScheduleLR
from lightning_cyclic.optim import ParamGroupWriter, get_momentum, lr_ratios, momentum_key
from lightning_cyclic.shapes import CyclicalSchedule, OneCycleSchedule, WarmRestartsSchedule
from tests.helpers import assert_close, make_optimizer, torch_trajectory


def params():
    return [torch.nn.Parameter(torch.zeros(3))]


@pytest.mark.parametrize(
    "make, key",
    [
        (lambda: torch.optim.SGD(params(), lr=0.1, momentum=0.9), "momentum"),
        (lambda: torch.optim.SGD(params(), lr=0.1, momentum=0.9, nesterov=True), "momentum"),
        (lambda: torch.optim.RMSprop(params(), lr=0.1, momentum=0.5), "momentum"),
        (lambda: torch.optim.Adam(params(), lr=0.1, betas=(0.9, 0.98)), "betas"),
        (lambda: torch.optim.AdamW(params(), lr=0.1, betas=(0.9, 0.98)), "betas"),
        (lambda: torch.optim.NAdam(params(), lr=0.1, betas=(0.9, 0.98)), "betas"),
        (lambda: torch.optim.RAdam(params(), lr=0.1, betas=(0.9, 0.98)), "betas"),
        (lambda: torch.optim.Adamax(params(), lr=0.1, betas=(0.9, 0.98)), "betas"),
    ],
)
def test_momentum_is_found_written_and_used_by_the_optimizer(make, key):
    opt = make()
    group = opt.param_groups[0]
    assert momentum_key(group) == key
    ParamGroupWriter(opt).write(0.03, 0.8)
    assert group["lr"] == 0.03 and get_momentum(group) == 0.8
    if key == "betas":
        assert group["betas"] == (0.8, 0.98)  # beta2 kept
    opt.param_groups[0]["params"][0].grad = torch.ones(3)
    opt.step()  # the optimizer accepts what we wrote


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.optim.SGD(params(), lr=0.1),
        lambda: torch.optim.RMSprop(params(), lr=0.1),
        lambda: torch.optim.Adagrad(params(), lr=0.1),
        lambda: torch.optim.Adadelta(params(), lr=0.1),
    ],
)
def test_optimizer_without_momentum_gets_one_warning_and_keeps_its_algorithm(make):
    opt = make()
    writer = ParamGroupWriter(opt, owner="OneCycle")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for k in range(5):
            writer.write(0.01 * (k + 1), 0.9)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert type(opt).__name__ in message and "moms=None" in message
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    assert opt.param_groups[0].get("momentum", 0) == 0  # never switched momentum on


def test_lr_ratios_follow_the_largest_group():
    assert lr_ratios([0.01, 0.1, 0.05]) == pytest.approx([0.1, 1.0, 0.5])
    assert lr_ratios([0.0, 0.0]) == [1.0, 1.0]


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_schedule_lr_equals_torch_onecyclelr_in_a_plain_loop(kind):
    total = 60
    ref = torch_trajectory(lambda opt: L.OneCycleLR(opt, max_lr=0.4, total_steps=total), total, kind)
    ours = torch_trajectory(lambda opt: ScheduleLR(opt, OneCycleSchedule(max_lr=0.4, total_steps=total)), total, kind)
    assert_close(ours[0], ref[0])
    assert_close(ours[1], ref[1])


def test_schedule_lr_equals_torch_warm_restarts_and_cyclic():
    ref = torch_trajectory(lambda opt: L.CosineAnnealingWarmRestarts(opt, T_0=5, T_mult=2, eta_min=1e-3), 80)
    ours = torch_trajectory(
        lambda opt: ScheduleLR(opt, WarmRestartsSchedule(max_lr=0.1, cycle_len=5, cycle_mult=2, min_lr=1e-3)), 80
    )
    assert_close(ours[0], ref[0])
    ref = torch_trajectory(lambda opt: L.CyclicLR(opt, base_lr=0.01, max_lr=0.1, step_size_up=4), 40)
    ours = torch_trajectory(lambda opt: ScheduleLR(opt, CyclicalSchedule(base_lr=0.01, max_lr=0.1, step_size_up=4)), 40)
    assert_close(ours[0], ref[0])
    assert_close(ours[1], ref[1])


def test_schedule_lr_keeps_group_ratios_and_never_raises_past_the_end():
    opt = make_optimizer("sgd", lr=0.1, groups=2)  # groups at 0.1 and 0.01
    sched = ScheduleLR(opt, OneCycleSchedule(max_lr=1.0, total_steps=10))
    for _ in range(25):
        head, backbone = (g["lr"] for g in opt.param_groups)
        assert backbone == pytest.approx(0.1 * head)
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1.0 / 25 / 1e4)


def test_schedule_lr_state_dict_round_trip_resumes_exactly():
    schedule = OneCycleSchedule(max_lr=0.4, total_steps=50)
    opt = make_optimizer()
    sched = ScheduleLR(opt, schedule)
    for _ in range(17):
        opt.step()
        sched.step()
    state, opt_state = sched.state_dict(), opt.state_dict()
    assert "schedule" not in state and "_writer" not in state
    torch.save({"s": state}, "/dev/null")  # plain data only

    opt2 = make_optimizer()
    opt2.load_state_dict(opt_state)
    sched2 = ScheduleLR(opt2, schedule, last_epoch=16)
    sched2.load_state_dict(state)
    for _ in range(20):
        opt.step()
        sched.step()
        opt2.step()
        sched2.step()
        assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
        assert opt2.param_groups[0]["momentum"] == opt.param_groups[0]["momentum"]


def _run(opt, sched, steps, lrs=None):
    """``steps`` optimizer steps followed by ``sched.step()``; records (lr, momentum) before each step."""
    for _ in range(steps):
        group = opt.param_groups[0]
        if lrs is not None:
            lrs.append((group["lr"], group["momentum"]))
        opt.step()
        sched.step()


@pytest.mark.parametrize("order", ["optimizer_first", "scheduler_first", "scheduler_only"])
def test_schedule_lr_resume_puts_the_loaded_steps_lr_and_momentum_into_the_optimizer(order):
    schedule = OneCycleSchedule(max_lr=0.4, total_steps=50)
    opt = make_optimizer()
    sched = ScheduleLR(opt, schedule)
    _run(opt, sched, 25)
    state, opt_state = sched.state_dict(), opt.state_dict()
    expected_now = (opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"])
    expected_next: list = []
    _run(opt, sched, 10, expected_next)

    opt2 = make_optimizer()
    sched2 = ScheduleLR(opt2, schedule)
    assert opt2.param_groups[0]["lr"] != pytest.approx(expected_now[0])  # a fresh scheduler starts at lr(0)
    if order == "optimizer_first":
        opt2.load_state_dict(opt_state)
        sched2.load_state_dict(state)
    elif order == "scheduler_first":
        sched2.load_state_dict(state)
        opt2.load_state_dict(opt_state)  # the optimizer's param groups hold the same step's lr and momentum
    else:
        sched2.load_state_dict(state)
    assert (opt2.param_groups[0]["lr"], opt2.param_groups[0]["momentum"]) == pytest.approx(expected_now, rel=1e-12)
    resumed: list = []
    _run(opt2, sched2, 10, resumed)
    assert len(resumed) == len(expected_next)
    for got, want in zip(resumed, expected_next):  # (lr, momentum) pairs
        assert got == pytest.approx(want, rel=1e-12)


def test_schedule_lr_resume_keeps_group_ratios():
    schedule = OneCycleSchedule(max_lr=1.0, total_steps=30)
    opt = make_optimizer("adam", groups=2)
    sched = ScheduleLR(opt, schedule)
    for _ in range(12):
        opt.step()
        sched.step()
    opt2 = make_optimizer("adam", groups=2)
    ScheduleLR(opt2, schedule).load_state_dict(sched.state_dict())
    for group, ref in zip(opt2.param_groups, opt.param_groups):
        assert group["lr"] == pytest.approx(ref["lr"], rel=1e-12)
        assert group["betas"] == pytest.approx(ref["betas"], rel=1e-12)
    assert opt2.param_groups[1]["lr"] == pytest.approx(0.1 * opt2.param_groups[0]["lr"])


def test_schedule_lr_follows_the_optimizer_whatever_calls_its_step():
    """Stepped once per 'epoch' of 6 optimizer steps, as Lightning's default interval does: still per step."""
    total = 48
    ref = torch_trajectory(lambda opt: L.OneCycleLR(opt, max_lr=0.4, total_steps=total), total)
    opt = make_optimizer()
    sched = ScheduleLR(opt, OneCycleSchedule(max_lr=0.4, total_steps=total))
    assert sched.step_with_optimizer
    lrs, moms = [], []
    for k in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        moms.append(opt.param_groups[0]["momentum"])
        opt.step()
        if k % 6 == 5:
            sched.step()  # ignored: the optimizer's steps drive it
    assert_close(lrs, ref[0])
    assert_close(moms, ref[1])
    assert sched.last_epoch == total


def test_schedule_lr_without_the_hook_is_a_plain_torch_scheduler():
    opt = make_optimizer()
    sched = ScheduleLR(opt, OneCycleSchedule(max_lr=0.4, total_steps=10), step_with_optimizer=False)
    assert not sched.step_with_optimizer
    start = opt.param_groups[0]["lr"]
    for _ in range(3):
        opt.step()
    assert opt.param_groups[0]["lr"] == start and sched.last_epoch == 0  # optimizer steps alone do not move it
    sched.step()
    assert sched.last_epoch == 1 and opt.param_groups[0]["lr"] > start


@pytest.mark.parametrize("step_with_optimizer", [True, False])
@pytest.mark.parametrize("cycle_mult", [1, 2])
def test_schedule_lr_at_fractional_epochs_equals_torch_warm_restarts(cycle_mult, step_with_optimizer):
    """torch's documented use of CosineAnnealingWarmRestarts, ``scheduler.step(epoch + i / iters)`` after each
    batch: ScheduleLR given the same positions gives the same lr, at every fraction of every epoch."""
    iters, epochs = 7, 25
    ref_opt, opt = make_optimizer(lr=0.5), make_optimizer(lr=0.5)
    ref = L.CosineAnnealingWarmRestarts(ref_opt, T_0=3, T_mult=cycle_mult, eta_min=0.01)
    schedule = WarmRestartsSchedule(max_lr=0.5, cycle_len=3, cycle_mult=cycle_mult, min_lr=0.01)
    sched = ScheduleLR(opt, schedule, step_with_optimizer=step_with_optimizer)
    theirs, ours = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation of step(epoch) for its other schedulers
        for epoch in range(epochs):
            for i in range(iters):
                for o in (ref_opt, opt):
                    o.step()
                ref.step(epoch + i / iters)
                sched.step(epoch + i / iters)
                theirs.append(ref_opt.param_groups[0]["lr"])
                ours.append(opt.param_groups[0]["lr"])
    assert theirs[1] == pytest.approx(0.5 - 0.49 * (1 - math.cos(math.pi * (1 / 7) / 3)) / 2)  # not at the peak
    assert_close(ours, theirs, rel=1e-9, abs_=1e-12)
    assert not sched.step_with_optimizer  # the loop gives the positions: optimizer steps no longer move it
    opt.step()
    assert sched.last_epoch == pytest.approx(epochs - 1 + (iters - 1) / iters)


def test_schedule_lr_detach_removes_the_hook():
    opt = make_optimizer()
    sched = ScheduleLR(opt, OneCycleSchedule(max_lr=0.4, total_steps=10))
    opt.step()
    assert sched.last_epoch == 1
    sched.detach()
    assert not sched.step_with_optimizer
    opt.step()
    assert sched.last_epoch == 1  # no longer follows the optimizer
    sched.step()
    assert sched.last_epoch == 2  # and step() advances it, as torch's schedulers do
    sched.detach()  # a second detach is harmless


def test_schedule_lr_state_is_plain_data_without_the_hook(tmp_path):
    opt = make_optimizer()
    sched = ScheduleLR(opt, OneCycleSchedule(max_lr=0.4, total_steps=20))
    for _ in range(7):
        opt.step()
    state = sched.state_dict()
    assert not {"_hook", "_writer", "schedule"} & set(state)
    torch.save(state, tmp_path / "s.pt")
    loaded = torch.load(tmp_path / "s.pt", weights_only=True)
    plain = ScheduleLR(make_optimizer(), OneCycleSchedule(max_lr=0.4, total_steps=20), step_with_optimizer=False)
    plain.load_state_dict(loaded)
    assert plain.last_epoch == 7 and not plain.step_with_optimizer  # the state carries no mode


def test_schedule_lr_rejects_what_is_not_a_schedule():
    with pytest.raises(TypeError, match=r"schedule must be a lightning_cyclic\.shapes\.Schedule, got function"):
        ScheduleLR(make_optimizer(), lambda k: 0.1)
    with pytest.raises(ValueError, match="step_with_optimizer must be True or False, got 'yes'"):
        ScheduleLR(make_optimizer(), OneCycleSchedule(max_lr=0.1, total_steps=5), step_with_optimizer="yes")


@pytest.mark.parametrize(
    "batch, base, rule, factor",
    [(256, 64, "linear", 4.0), (256, 64, "sqrt", 2.0), (32, 64, "linear", 0.5), (64, 64, "sqrt", 1.0)],
)
def test_lr_scale_factor(batch, base, rule, factor):
    from lightning_cyclic.optim import lr_scale_factor

    assert lr_scale_factor(batch, base, rule) == pytest.approx(factor)


def test_lr_scale_factor_names_bad_arguments():
    from lightning_cyclic.optim import lr_scale_factor

    with pytest.raises(ValueError, match="rule must be one of 'linear', 'sqrt', got 'cubic'"):
        lr_scale_factor(64, 64, "cubic")
    with pytest.raises(ValueError, match="base_batch_size must be >= 1, got 0"):
        lr_scale_factor(64, 0, "linear")


def test_schedule_lr_warns_when_resumed_with_another_run_length():
    from lightning_cyclic.shapes import OneCycleSchedule

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    sched = ScheduleLR(opt, OneCycleSchedule(max_lr=0.1, total_steps=100))
    for _ in range(10):
        opt.step()
    state = sched.state_dict()
    assert state["planned_total_steps"] == 100
    same = ScheduleLR(torch.optim.SGD(opt.param_groups[0]["params"], lr=0.1, momentum=0.9), sched.schedule)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same.load_state_dict(state)  # the same plan: silent
    longer = ScheduleLR(
        torch.optim.SGD(opt.param_groups[0]["params"], lr=0.1, momentum=0.9),
        OneCycleSchedule(max_lr=0.1, total_steps=200),
    )
    with pytest.warns(UserWarning, match=r"planned for total_steps=100, this schedule for total_steps=200"):
        longer.load_state_dict(state)
    assert longer.last_epoch == 10
