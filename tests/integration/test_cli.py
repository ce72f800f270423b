"""``LightningCLI`` of both namespaces (``lightning.pytorch`` and ``pytorch_lightning``), run in-process on
Lightning's own demo model: our callbacks by ``--trainer.callbacks+=``, ``ScheduleLR`` by ``--lr_scheduler``
with a schedule by ``class_path``, and the same from a YAML ``--config``. torch's OneCycleLR is the oracle."""

from __future__ import annotations

import importlib
import math
from functools import cache
from itertools import pairwise

import pytest

pytest.importorskip("jsonargparse")

import torch
from torch.optim import lr_scheduler as S

from lightning_cyclic import BestSnapshot, LRFinder, OneCycle, ScheduleLR
from lightning_cyclic.shapes import (
    CyclicalSchedule,
    OneCycleSchedule,
    Schedule,
    WarmRestartsSchedule,
    WarmupDecaySchedule,
)

EPOCHS, BATCHES = 3, 6  # BoringDataModule: batch size 1, so 6 optimizer steps per epoch
TOTAL = EPOCHS * BATCHES


@cache
def namespace(name: str):
    """``(pl, cli module, demo module)`` of one namespace; skips when it is not installed."""
    pl = pytest.importorskip(name)
    return pl, importlib.import_module(f"{name}.cli"), importlib.import_module(f"{name}.demos.boring_classes")


@cache
def cli_model(name: str) -> type:
    """BoringModel with its own ``configure_optimizers`` (SGD + StepLR) taken away, so that ``--optimizer`` and
    ``--lr_scheduler`` build them; records the lr and momentum every optimizer step uses."""
    pl, _, demo = namespace(name)

    class CLIBoring(demo.BoringModel):
        configure_optimizers = pl.LightningModule.configure_optimizers

        def __init__(self) -> None:
            super().__init__()
            self.seen: list[tuple[float, float]] = []

        def training_step(self, batch, batch_idx):
            out = super().training_step(batch, batch_idx)
            self.log("train_loss", out["loss"])
            return out

        def on_before_optimizer_step(self, optimizer):
            # runs after every callback's hook of the same name: the values this step uses
            group = optimizer.param_groups[0]
            self.seen.append((float(group["lr"]), float(group["momentum"])))

    return CLIBoring


NAMESPACES = ["lightning.pytorch", "pytorch_lightning"]


def base_args(tmp_path) -> list[str]:
    return [
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.logger=false",
        "--trainer.enable_checkpointing=false",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        f"--trainer.max_epochs={EPOCHS}",
        f"--trainer.limit_train_batches={BATCHES}",
        "--trainer.limit_val_batches=2",
        "--trainer.num_sanity_val_steps=0",
        "--seed_everything=0",
    ]


SGD = ["--optimizer=torch.optim.SGD", "--optimizer.lr=0.1", "--optimizer.momentum=0.9"]


def run_cli(name: str, args: list[str], run: bool = True):
    _, cli, demo = namespace(name)
    return cli.LightningCLI(cli_model(name), demo.BoringDataModule, args=(["fit"] if run else []) + args, run=run)


def onecycle_reference(max_lr: float, total: int) -> list[tuple[float, float]]:
    """(lr, momentum) of torch's OneCycleLR before each of ``total`` optimizer steps."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=max_lr, momentum=0.9)
    sched = S.OneCycleLR(opt, max_lr=max_lr, total_steps=total)
    seen = []
    for _ in range(total):
        seen.append((opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"]))
        opt.step()
        sched.step()
    return seen


def assert_same(ours: list[tuple[float, float]], ref: list[tuple[float, float]]) -> None:
    assert len(ours) == len(ref)
    for k, ((lr, mom), (ref_lr, ref_mom)) in enumerate(zip(ours, ref)):
        assert math.isclose(lr, ref_lr, rel_tol=1e-6, abs_tol=1e-12), f"step {k}: lr {lr!r} vs torch {ref_lr!r}"
        assert math.isclose(mom, ref_mom, rel_tol=1e-6), f"step {k}: momentum {mom!r} vs torch {ref_mom!r}"


# --- the callback path -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMESPACES)
def test_one_cycle_callback_from_the_command_line_equals_torch(name, tmp_path):
    pl = namespace(name)[0]
    cli = run_cli(
        name,
        [
            *base_args(tmp_path),
            *SGD,
            "--trainer.callbacks+=lightning_cyclic.OneCycle",
            "--trainer.callbacks.max_lr=0.1",
        ],
    )
    (callback,) = [c for c in cli.trainer.callbacks if isinstance(c, OneCycle)]
    assert isinstance(callback, pl.Callback)
    assert cli.trainer.estimated_stepping_batches == TOTAL
    assert_same(cli.model.seen, onecycle_reference(0.1, TOTAL))


@pytest.mark.parametrize("name", NAMESPACES)
def test_lr_finder_and_best_snapshot_from_the_command_line(name, tmp_path):
    args = [
        *base_args(tmp_path),
        *SGD,
        "--trainer.callbacks+=lightning_cyclic.LRFinder",
        "--trainer.callbacks.num_steps=8",
        "--trainer.callbacks.max_lr=0.01",
        "--trainer.callbacks.verbose=false",
        f"--trainer.callbacks.save_dir={tmp_path / 'finder'}",
        "--trainer.callbacks+=lightning_cyclic.BestSnapshot",
        "--trainer.callbacks.monitor=train_loss",
        "--trainer.callbacks.verbose=false",
    ]
    cli = run_cli(name, args)
    finder = next(c for c in cli.trainer.callbacks if isinstance(c, LRFinder))
    best = next(c for c in cli.trainer.callbacks if isinstance(c, BestSnapshot))
    assert finder.config.num_steps == 8 and finder.config.max_lr == 0.01  # our values reached the callback
    assert finder.result is not None and finder.result.optimizer_steps == 8  # and the range test ran with them
    assert finder.result.lrs[-1] == pytest.approx(0.01)
    assert best.monitor == "train_loss" and best.best_epoch is not None and best.restored
    # the range test steps through the module's own hooks, then fit runs in full at the optimizer's own lr
    lrs = [lr for lr, _ in cli.model.seen]
    assert lrs[:8] == pytest.approx(finder.result.lrs)
    assert lrs[8:] == pytest.approx([0.1] * TOTAL)


@pytest.mark.parametrize("name", NAMESPACES)
def test_auto_with_its_trials_from_the_command_line_trains_at_their_pick(name, tmp_path):
    # OneCycle(max_lr="auto") and LRFinder at its defaults (the range test, then the short trials) by
    # --trainer.callbacks+=: the trials' pick reaches the schedule, and the fit's steps are torch's OneCycleLR at it
    args = [
        *base_args(tmp_path),
        *SGD,
        "--trainer.callbacks+=lightning_cyclic.OneCycle",
        "--trainer.callbacks.max_lr=auto",
        "--trainer.callbacks+=lightning_cyclic.LRFinder",
        "--trainer.callbacks.num_steps=40",
        "--trainer.callbacks.verbose=false",
    ]
    cli = run_cli(name, args)
    schedule = next(c for c in cli.trainer.callbacks if isinstance(c, OneCycle))
    finder = next(c for c in cli.trainer.callbacks if isinstance(c, LRFinder))
    result = finder.result
    trials = result.extra["trials"]
    assert schedule.params["max_lr"] == "auto" and len(trials["lrs"]) == 5 and trials["steps"] == 30
    assert schedule.resolved["max_lr"] == pytest.approx(trials["lr"]) == pytest.approx(result.chosen.lr)
    # the range test's steps and the trials' ran through the module's hooks first, then the fit at the pick
    before = len(result.lrs) + trials["steps"] * len(trials["lrs"])
    assert len(cli.model.seen) == before + TOTAL
    assert_same(cli.model.seen[before:], onecycle_reference(trials["lr"], TOTAL))


@pytest.mark.parametrize("name", NAMESPACES)
def test_guard_and_preemption_from_the_command_line(name, tmp_path):
    from lightning_cyclic import Guard, Preemption

    args = [
        *base_args(tmp_path),
        *SGD,
        "--trainer.callbacks+=lightning_cyclic.Guard",
        "--trainer.callbacks.factor=0.25",
        "--trainer.callbacks.every=5",
        "--trainer.callbacks.collapse=false",
        "--trainer.callbacks.rewarm=false",
        "--trainer.callbacks+=lightning_cyclic.Preemption",
        "--trainer.callbacks.exit_code=130",
    ]
    cli = run_cli(name, args)
    guard = next(c for c in cli.trainer.callbacks if isinstance(c, Guard))
    preemption = next(c for c in cli.trainer.callbacks if isinstance(c, Preemption))
    ours = (guard.factor, guard.every, guard.collapse, guard.rewarm, preemption.exit_code)
    assert ours == (0.25, 5, False, False, 130)  # our values reached them
    assert not preemption.received and len(guard.history) > 0  # and they ran in the fit
    # BoringModel (batch 1, SGD 0.1, momentum 0.9) blows up: its loss jumps by orders of magnitude; the Guard rolls
    # it back, and the steps after are given a quarter of the lr (at once: rewarm=false)
    first = guard.events[0]["step"]
    assert "jumped" in guard.events[0]["reason"] and guard.events[0]["lr_scale"] == 0.25
    lrs = [lr for lr, _ in cli.model.seen]
    assert lrs[: first + 1] == pytest.approx([0.1] * (first + 1))
    assert lrs[first + 1] == pytest.approx(0.025)
    assert all(bool(torch.isfinite(p).all()) for p in cli.model.parameters())


# --- the --lr_scheduler path -----------------------------------------------------------------------------------

SCHEDULE_LR = [
    "--lr_scheduler=lightning_cyclic.ScheduleLR",
    "--lr_scheduler.schedule=lightning_cyclic.shapes.OneCycleSchedule",
    "--lr_scheduler.schedule.max_lr=0.1",
    f"--lr_scheduler.schedule.total_steps={TOTAL}",
]


@pytest.mark.parametrize("name", NAMESPACES)
def test_schedule_lr_from_the_command_line_moves_every_optimizer_step(name, tmp_path):
    cli = run_cli(name, [*base_args(tmp_path), *SGD, *SCHEDULE_LR])
    (config,) = cli.trainer.lr_scheduler_configs
    assert isinstance(config.scheduler, ScheduleLR) and config.scheduler.step_with_optimizer
    assert config.interval == "epoch"  # what LightningCLI's configure_optimizers gives it
    assert config.scheduler.schedule == OneCycleSchedule(max_lr=0.1, total_steps=TOTAL)
    lrs = [lr for lr, _ in cli.model.seen]
    assert all(a != b for a, b in pairwise(lrs))  # a new lr at every optimizer step, not every epoch
    assert_same(cli.model.seen, onecycle_reference(0.1, TOTAL))


def test_schedule_lr_without_the_hook_follows_lightnings_interval(tmp_path):
    """``step_with_optimizer=false`` is the plain torch contract: under LightningCLI, one step per epoch."""
    cli = run_cli(
        "lightning.pytorch", [*base_args(tmp_path), *SGD, *SCHEDULE_LR, "--lr_scheduler.step_with_optimizer=false"]
    )
    lrs = [lr for lr, _ in cli.model.seen]
    per_epoch = [lrs[e * BATCHES : (e + 1) * BATCHES] for e in range(EPOCHS)]
    assert all(len(set(epoch)) == 1 for epoch in per_epoch)
    ref = onecycle_reference(0.1, TOTAL)
    assert [epoch[0] for epoch in per_epoch] == pytest.approx([ref[e][0] for e in range(EPOCHS)], rel=1e-6)


@pytest.mark.parametrize("name", NAMESPACES)
def test_schedule_lr_from_a_yaml_config(name, tmp_path):
    config = tmp_path / "schedule.yaml"
    config.write_text(
        f"""\
optimizer:
  class_path: torch.optim.SGD
  init_args:
    lr: 0.1
    momentum: 0.9
lr_scheduler:
  class_path: lightning_cyclic.ScheduleLR
  init_args:
    schedule:
      class_path: lightning_cyclic.shapes.OneCycleSchedule
      init_args:
        max_lr: 0.2
        total_steps: {TOTAL}
        pct_start: 0.25
        moms: [0.9, 0.8]
"""
    )
    cli = run_cli(name, [*base_args(tmp_path), f"--config={config}"], run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    sched = S.OneCycleLR(opt, max_lr=0.2, total_steps=TOTAL, pct_start=0.25, base_momentum=0.8, max_momentum=0.9)
    ref = []
    for _ in range(TOTAL):
        ref.append((opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"]))
        opt.step()
        sched.step()
    assert_same(cli.model.seen, ref)
    saved = (tmp_path / "config.yaml").read_text()  # what LightningCLI saves for the run: the nested form again
    assert "class_path: lightning_cyclic.shapes.OneCycleSchedule" in saved and "step_with_optimizer: true" in saved


# --- what jsonargparse makes of a Schedule-typed argument ------------------------------------------------------


def instantiate(parser, cfg):
    """``parser.instantiate`` (jsonargparse >= 4.49), or its older name ``instantiate_classes``."""
    method = getattr(parser, "instantiate", None) or parser.instantiate_classes
    return method(cfg)


@pytest.mark.parametrize(
    "cls, init_args",
    [
        (OneCycleSchedule, {"max_lr": 0.1, "total_steps": 40, "three_phase": True}),
        (CyclicalSchedule, {"base_lr": 0.01, "max_lr": 0.1, "step_size_up": 4, "mode": "triangular2"}),
        (WarmRestartsSchedule, {"max_lr": 0.1, "cycle_len": 5, "cycle_mult": 2}),
        (WarmupDecaySchedule, {"max_lr": 0.1, "warmup": 3, "decay": "linear", "total_steps": 30}),
    ],
)
def test_a_schedule_argument_takes_every_schedule_by_class_path(cls, init_args):
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--schedule", type=Schedule)
    flags = [f"--schedule={cls.__module__}.{cls.__name__}"]
    flags += [f"--schedule.{key}={value}" for key, value in init_args.items()]
    schedule = instantiate(parser, parser.parse_args(flags)).schedule
    assert type(schedule) is cls
    assert schedule == cls(**init_args)
    assert schedule(3) == cls(**init_args)(3)


def test_a_schedule_argument_names_a_bad_value():
    """The schedule's own check runs: the error names the argument, the value and what is allowed."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--schedule", type=Schedule)
    cfg = parser.parse_args(["--schedule=OneCycleSchedule", "--schedule.max_lr=0.1", "--schedule.pct_start=1.5"])
    with pytest.raises(ValueError, match=r"pct_start must be in \(0, 1\), got 1.5"):
        instantiate(parser, cfg)
