"""Schedule callbacks on a real (tiny) Trainer."""

from __future__ import annotations

import csv
import math
import warnings

import pytest
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.optim import lr_scheduler as L

from lightning_cyclic import Cyclical, LRFinder, OneCycle, ScheduleLR, WarmRestarts, WarmupDecay
from lightning_cyclic.shapes import OneCycleSchedule
from tests.helpers import TinyModule, tiny_loader, tiny_trainer


def fit(tmp_path, callbacks=(), module=None, ckpt_path=None, n=64, **trainer_kwargs):
    module = module or TinyModule()
    trainer = tiny_trainer(tmp_path, callbacks, **trainer_kwargs)
    trainer.fit(module, tiny_loader(n), ckpt_path=ckpt_path)
    return trainer, module


def by_step(module):
    """global_step -> (lr, momentum, group lrs), one entry per optimizer step."""
    return {step: (lr, mom, groups) for step, lr, mom, groups in module.seen}


@pytest.mark.parametrize(
    "trainer_kwargs",
    [
        dict(max_epochs=3),
        dict(max_epochs=3, accumulate_grad_batches=3),  # 8 batches -> 3 steps/epoch, the last one partial
        dict(max_epochs=4, limit_train_batches=5, accumulate_grad_batches=2),
        dict(max_epochs=50, max_steps=11),
    ],
)
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_onecycle_equals_torch_onecyclelr_in_the_same_trainer(tmp_path, trainer_kwargs, optimizer):
    """The callback gives the trajectory of OneCycleLR(total_steps=estimated_stepping_batches), per optimizer step."""

    def torch_scheduler(module, opt):
        return L.OneCycleLR(opt, max_lr=0.5, total_steps=module.trainer.estimated_stepping_batches)

    _, ref = fit(tmp_path / "ref", module=TinyModule(optimizer, scheduler=torch_scheduler), **trainer_kwargs)
    trainer, got = fit(tmp_path / "ours", [OneCycle(max_lr=0.5)], module=TinyModule(optimizer), **trainer_kwargs)

    steps = [s for s, *_ in got.seen]
    assert steps == list(range(trainer.estimated_stepping_batches))  # one entry per optimizer step, none skipped
    assert [s for s, *_ in ref.seen] == steps
    for (k, lr, mom, _), (_, ref_lr, ref_mom, _) in zip(got.seen, ref.seen):
        assert math.isclose(lr, ref_lr, rel_tol=1e-6), f"step {k}: {lr} vs {ref_lr}"
        assert math.isclose(mom, ref_mom, rel_tol=1e-6), f"step {k}: momentum {mom} vs {ref_mom}"


def test_past_the_planned_end_holds_the_final_value_where_torch_raises(tmp_path):
    with pytest.raises(ValueError, match="Tried to step"):
        fit(tmp_path / "torch", module=TinyModule(scheduler=lambda m, o: L.OneCycleLR(o, max_lr=0.5, total_steps=5)))
    _, module = fit(tmp_path / "ours", [OneCycle(max_lr=0.5, total_steps=5)])
    lrs = [lr for _, lr, _, _ in module.seen]
    assert len(lrs) == 24
    final = OneCycleSchedule(max_lr=0.5, total_steps=5).lr(4)
    assert lrs[4:] == [pytest.approx(final, rel=1e-12)] * 20


@pytest.mark.parametrize(
    "make_callback",
    [
        lambda: OneCycle(max_lr=0.3),
        lambda: Cyclical(base_lr=0.01, max_lr=0.3, step_size_up=1, step_size_down=2, interval="epoch"),
        lambda: WarmRestarts(max_lr=0.3, cycle_len=1, cycle_mult=2, interval="epoch", moms=(0.95, 0.85)),
        lambda: WarmupDecay(max_lr=0.3, warmup=1, decay="cosine", interval="epoch", min_lr=1e-3),
    ],
    ids=["onecycle", "cyclical", "warm_restarts", "warmup_decay"],
)
def test_resume_from_a_mid_cycle_checkpoint_follows_the_same_trajectory(tmp_path, make_callback):
    """Resume from the end-of-epoch-2 checkpoint of a 5-epoch run: the same lr and momentum at every step."""
    kwargs = dict(max_epochs=5, accumulate_grad_batches=3, enable_checkpointing=True)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1, filename="{epoch}")
    _, full = fit(tmp_path / "full", [make_callback(), ckpt], **kwargs)
    path = tmp_path / "ckpt" / "epoch=1.ckpt"  # 3 optimizer steps per epoch: mid-cycle at step 6

    _, resumed = fit(tmp_path / "resumed", [make_callback()], ckpt_path=str(path), **kwargs)
    assert [s for s, *_ in resumed.seen] == list(range(6, 15))
    assert resumed.seen == full.seen[6:]  # same steps, lrs, momentums and group lrs, exactly


class Crash(Callback):
    def __init__(self, at_step: int):
        self.at_step = at_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at_step:
            raise RuntimeError("simulated crash")


def test_resume_after_a_crash_mid_epoch_continues_the_trajectory(tmp_path):
    """A run killed mid-epoch, resumed from its last step checkpoint: the lr stays a function of the step."""
    _, full = fit(tmp_path / "full", [OneCycle(max_lr=0.4)], max_epochs=3)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_train_steps=5, filename="{step}")
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(tmp_path / "first", [OneCycle(max_lr=0.4), ckpt, Crash(at_step=7)], max_epochs=3, enable_checkpointing=True)
    _, resumed = fit(
        tmp_path / "resumed", [OneCycle(max_lr=0.4)], max_epochs=3, ckpt_path=str(tmp_path / "ckpt" / "step=5.ckpt")
    )
    expected = by_step(full)
    # Lightning >= 2.5 ends at step 23 as planned; older versions replay the rest of the interrupted epoch
    # and take a few steps more, where the schedule holds its final value instead of raising
    assert resumed.seen and resumed.seen[0][0] == 5 and resumed.seen[-1][0] >= 23
    for step, lr, mom, _ in resumed.seen:
        assert (lr, mom) == (expected[min(step, 23)][0], expected[min(step, 23)][1]), f"step {step}"


def test_resume_with_a_longer_run_follows_the_new_plan_and_says_so(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1, filename="{epoch}")
    fit(tmp_path / "a", [OneCycle(max_lr=0.4), ckpt], max_epochs=2, enable_checkpointing=True)
    with pytest.warns(UserWarning, match="the checkpoint was planned as .*'total_steps': 16.*'total_steps': 32"):
        _, resumed = fit(
            tmp_path / "b", [OneCycle(max_lr=0.4)], max_epochs=4, ckpt_path=str(tmp_path / "ckpt/epoch=1.ckpt")
        )
    schedule = OneCycleSchedule(max_lr=0.4, total_steps=32)
    assert all(lr == pytest.approx(schedule.lr(s)) for s, lr, *_ in resumed.seen)


def test_param_group_ratios_are_kept(tmp_path):
    """Discriminative lrs: a group built at 0.1x the other stays at 0.1x; the schedule's lr goes to the largest."""
    _, module = fit(tmp_path, [OneCycle(max_lr=0.5)], module=TinyModule(groups=2))
    schedule = OneCycleSchedule(max_lr=0.5, total_steps=24)
    for step, _, _, (backbone, head) in module.seen:
        assert head == pytest.approx(schedule.lr(step), rel=1e-12)
        assert backbone == pytest.approx(0.1 * head, rel=1e-12)


def test_adam_cycles_beta1_and_keeps_beta2(tmp_path):
    trainer, module = fit(tmp_path, [OneCycle(max_lr=0.01, moms=(0.95, 0.85))], module=TinyModule("adam"))
    moms = [m for _, _, m, _ in module.seen]
    assert min(moms) == pytest.approx(0.85, abs=2e-3) and max(moms) == pytest.approx(0.95)
    assert all(g["betas"][1] == 0.99 for g in trainer.optimizers[0].param_groups)


def test_optimizer_without_momentum_warns_once_and_still_schedules_lr(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, module = fit(tmp_path, [OneCycle(max_lr=0.5)], module=TinyModule("adagrad"))
    ours = [w for w in caught if "has no momentum to cycle" in str(w.message)]
    assert len(ours) == 1 and "Adagrad" in str(ours[0].message) and "moms=None" in str(ours[0].message)
    lrs = [lr for _, lr, _, _ in module.seen]
    assert max(lrs) == pytest.approx(0.5, rel=0.05) and lrs[-1] < 1e-4


def test_moms_none_leaves_momentum_alone(tmp_path):
    _, module = fit(tmp_path, [OneCycle(max_lr=0.5, moms=None)])
    assert {m for _, _, m, _ in module.seen} == {0.9}


def test_epoch_lengths_are_converted_with_steps_per_epoch(tmp_path):
    """cycle_len=1 epoch with accumulation 3 over 8 batches: 3 optimizer steps per epoch, a restart at each."""
    _, module = fit(tmp_path, [WarmRestarts(max_lr=0.3, cycle_len=1, interval="epoch")], accumulate_grad_batches=3)
    lrs = [lr for _, lr, _, _ in module.seen]
    assert lrs[0::3] == [pytest.approx(0.3)] * 3
    assert lrs[1] == pytest.approx(0.3 * (1 + math.cos(math.pi / 3)) / 2)


def test_logs_lr_and_momentum_beside_learning_rate_monitor(tmp_path):
    logger = CSVLogger(tmp_path, name="", version="")
    fit(
        tmp_path,
        [OneCycle(max_lr=0.5), LearningRateMonitor(logging_interval="step", log_momentum=True)],
        logger=logger,
        log_every_n_steps=1,
    )
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    ours = [(int(r["step"]), float(r["lr"]), float(r["momentum"])) for r in rows if r.get("lr")]
    monitor = {int(r["step"]): float(r["lr-SGD"]) for r in rows if r.get("lr-SGD")}
    assert len(ours) == 24
    schedule = OneCycleSchedule(max_lr=0.5, total_steps=24)
    for step, lr, mom in ours:
        assert lr == pytest.approx(schedule.lr(step), rel=1e-6)
        assert mom == pytest.approx(schedule.momentum(step), rel=1e-6)
    assert monitor and all(monitor[s] == pytest.approx(schedule.lr(s), rel=1e-6) for s in monitor)


def test_unbounded_run_gets_a_clear_error_for_schedules_that_need_a_length(tmp_path):
    with pytest.raises(ValueError, match=r"OneCycle needs the run's length.*max_epochs=-1, max_steps=-1"):
        fit(tmp_path, [OneCycle(max_lr=0.5)], max_epochs=-1, max_steps=-1)


def test_open_ended_schedule_runs_without_a_length(tmp_path):
    _, module = fit(tmp_path, [Cyclical(base_lr=0.01, max_lr=0.1, step_size_up=2)], max_epochs=-1, max_steps=6)
    assert [round(lr, 6) for _, lr, _, _ in module.seen] == [0.01, 0.055, 0.1, 0.055, 0.01, 0.055]


def test_warns_when_configure_optimizers_also_returns_a_scheduler(tmp_path):
    module = TinyModule(scheduler=lambda m, o: L.StepLR(o, 100))
    with pytest.warns(UserWarning, match="also returned an lr scheduler"):
        fit(tmp_path, [OneCycle(max_lr=0.5)], module=module)


def test_schedule_lr_in_configure_optimizers_resumes_exactly(tmp_path):
    """The closed-form LRScheduler, used the plain Lightning way, also resumes on the same trajectory."""

    def scheduler(module, opt):
        return ScheduleLR(opt, OneCycleSchedule(max_lr=0.5, total_steps=module.trainer.estimated_stepping_batches))

    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1, filename="{epoch}")
    _, full = fit(
        tmp_path / "full", [ckpt], module=TinyModule(scheduler=scheduler), max_epochs=4, enable_checkpointing=True
    )
    _, resumed = fit(
        tmp_path / "b",
        module=TinyModule(scheduler=scheduler),
        max_epochs=4,
        ckpt_path=str(tmp_path / "ckpt/epoch=1.ckpt"),
    )
    assert resumed.seen == full.seen[16:]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: OneCycle(max_lr=0.1, pct_start=1.5), r"pct_start must be in \(0, 1\), got 1.5"),
        (lambda: Cyclical(base_lr=0.1, max_lr=0.2, interval="batch"), "interval must be one of 'step', 'epoch', got"),
        (lambda: WarmRestarts(max_lr=0.1, cycle_len=0), "cycle_len must be > 0, got 0"),
        (lambda: WarmupDecay(max_lr=0.1, decay="sine"), "decay must be one of"),
        (lambda: OneCycle(max_lr=0.1, total_steps=2.5), "total_steps must be an integer, got 2.5"),
    ],
)
def test_callbacks_validate_at_construction(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_state_key_tells_two_schedules_apart():
    assert OneCycle(max_lr=0.1).state_key != OneCycle(max_lr=0.2).state_key


def test_tensor_lr_is_written_in_place():
    p = [torch.nn.Parameter(torch.zeros(2))]
    opt = torch.optim.Adam(p, lr=torch.tensor(0.01), betas=(0.9, 0.99))
    lr_tensor = opt.param_groups[0]["lr"]
    from lightning_cyclic.optim import ParamGroupWriter

    ParamGroupWriter(opt).write(0.05, 0.8)
    assert opt.param_groups[0]["lr"] is lr_tensor and float(lr_tensor) == pytest.approx(0.05)
    assert opt.param_groups[0]["betas"] == (0.8, 0.99)


@pytest.mark.parametrize("decay", ["cosine", "linear", "poly"])
def test_a_warmup_as_long_as_the_run_is_cut_to_a_tenth_of_it_with_one_warning(tmp_path, decay):
    # 64 samples / 8 = 8 steps per epoch, 2 epochs = 16 steps; warmup of 2 epochs = the whole run
    schedule = WarmupDecay(max_lr=0.2, decay=decay, warmup=2, interval="epoch")
    with pytest.warns(UserWarning, match=r"warmup=2 \(epochs\) is 16 optimizer steps.*warming up for 1.6 steps") as got:
        _, module = fit(tmp_path, [schedule], max_epochs=2)
    assert len([w for w in got if "warmup=" in str(w.message)]) == 1
    assert schedule.schedule.warmup == pytest.approx(1.6)
    lrs = [lr for _, lr, _, _ in module.seen]
    assert max(lrs) == pytest.approx(lrs[2]) and lrs[2] < 0.2  # peaks right after the short warmup, then decays
    assert lrs[-1] < lrs[2] / 4


def test_a_warmup_shorter_than_the_run_and_open_ended_decays_are_left_as_given(tmp_path):
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*warming up for")
        fit(tmp_path / "a", [s := WarmupDecay(max_lr=0.2, warmup=15, decay="cosine")], max_epochs=2)
        assert s.schedule.warmup == 15
        fit(tmp_path / "b", [s := WarmupDecay(max_lr=0.2, warmup=40, decay="inverse_sqrt")], max_epochs=2)
        assert s.schedule.warmup == 40  # nothing to decay towards: a long warmup is the user's choice


def test_a_schedule_describes_itself_for_a_runs_summary(tmp_path):
    given = OneCycle(max_lr=0.1)
    tiny_trainer(tmp_path, [given], max_epochs=1).fit(TinyModule(), tiny_loader())
    assert given.describe(given_trainer := tiny_trainer(tmp_path)) == "OneCycle, max_lr=0.1"
    found = OneCycle(max_lr="auto")
    trainer = tiny_trainer(tmp_path, [found], max_epochs=2)
    trainer.fit(TinyModule(), tiny_loader(n=256, learnable=True))
    line = found.describe(trainer)
    assert line == f"OneCycle, max_lr={found.resolved['max_lr']:.4g} (found by the LR range test and its short trials)"
    curve_alone = OneCycle(max_lr="auto", finder=LRFinder(trials=False, verbose=False))
    trainer = tiny_trainer(tmp_path, [curve_alone], max_epochs=2)
    trainer.fit(TinyModule(), tiny_loader(n=256, learnable=True))
    assert curve_alone.describe(trainer).endswith("(found by the LR range test)")
    assert Cyclical(base_lr=0.01, max_lr=0.1).describe(given_trainer) == "Cyclical, base_lr=0.01, max_lr=0.1"
