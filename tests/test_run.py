"""The application: train(cfg) in-process, and train.py as users run it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lightning_cyclic.run import train
from tests.conftest import ROOT, options


@pytest.mark.parametrize("schedule", options("schedule"))
def test_every_schedule_trains_and_reports_accuracy(make_cfg, schedule):
    cfg = make_cfg(f"schedule={schedule}", "trainer.max_epochs=2", "trainer.enable_progress_bar=false")
    metrics, objects = train(cfg)
    assert objects["trainer"].global_step == 46  # 1,437 training digits / 64 per batch = 23 steps per epoch
    assert metrics["val/acc"] > 0.5  # learns: chance is 0.1
    assert objects["schedule"].schedule is not None


def test_optimizer_option_adam_with_onecycle(make_cfg):
    metrics, objects = train(make_cfg("optimizer=adam", "schedule.max_lr=0.003", "trainer.max_epochs=2"))
    assert metrics["val/acc"] > 0.5
    betas = objects["trainer"].optimizers[0].param_groups[0]["betas"]
    assert betas[1] == 0.999 and 0.85 <= betas[0] <= 0.95


def run_cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, "train.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_cli_runs_and_prints_validation_accuracy(tmp_path):
    done = run_cli("schedule=onecycle", "trainer.max_epochs=1", f"hydra.run.dir={tmp_path}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "val/acc = " in done.stdout
    assert (tmp_path / "csv" / "version_0" / "metrics.csv").exists()


def test_cli_unknown_schedule_lists_the_valid_ones():
    done = run_cli("schedule=oncycle")
    assert done.returncode != 0
    assert "Could not find 'schedule/oncycle'" in done.stderr
    for name in options("schedule"):
        assert name in done.stderr


def test_cli_bad_value_names_the_argument_before_training(tmp_path):
    done = run_cli("schedule.pct_start=1.5", f"hydra.run.dir={tmp_path}")
    assert done.returncode != 0
    assert "pct_start must be in (0, 1), got 1.5" in done.stderr
    assert "Epoch 0" not in done.stdout + done.stderr


def test_schedule_max_lr_auto_finds_logs_and_saves_the_lr(make_cfg, tmp_path):
    import csv
    import json

    metrics, objects = train(make_cfg("schedule.max_lr=auto", "trainer.max_epochs=2"))
    found = objects["schedule"].resolved["max_lr"]
    saved = json.loads((tmp_path / "lr_find.json").read_text())
    assert saved["suggestion"]["lr"] == found and saved["config"]["evaluate"] == "val"
    assert (tmp_path / "lr_find.png").exists()
    rows = list(csv.DictReader(open(tmp_path / "csv" / "version_0" / "metrics.csv")))
    assert [float(r["OneCycle/max_lr"]) for r in rows if r.get("OneCycle/max_lr")] == [pytest.approx(found)]
    assert metrics["val/acc"] > 0.5


def test_cyclical_auto_from_the_command_line(make_cfg):
    _, objects = train(
        make_cfg("schedule=cyclical", "schedule.base_lr=auto", "schedule.max_lr=auto", "trainer.max_epochs=1")
    )
    resolved = objects["schedule"].resolved
    assert 0 < resolved["base_lr"] < resolved["max_lr"]


def test_best_weights_are_restored_and_measured(make_cfg):
    metrics, objects = train(make_cfg("trainer.max_epochs=4", "schedule=constant", "schedule.max_lr=0.3"))
    best = objects["best"]
    assert best.restored and best.monitor == "val/acc"
    assert metrics["val/acc"] == pytest.approx(best.best_score)  # validated again after the restore


def test_snapshot_ensemble_option_with_warm_restarts(make_cfg, tmp_path):
    cfg = make_cfg(
        "schedule=warm_restarts", "schedule.cycle_mult=1", "callbacks=snapshot_ensemble", "trainer.max_epochs=6"
    )
    metrics, objects = train(cfg)
    assert [s["epoch"] for s in objects["ensemble"].snapshots] == [1, 3, 5]
    assert 0.5 < metrics["ensemble/val_acc"] <= 1
    assert (tmp_path / "ensemble.pt").exists()
