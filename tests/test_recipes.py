"""Recipes run end to end in a small form, so they cannot rot."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from lightning_cyclic.data import FashionMNISTDataModule
from tests.conftest import ROOT


def run_recipe(path: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``recipes/<path>`` as a user would; fail with its stderr if it fails."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / path), *args], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_lr_range_test_benchmark_quick_run(tmp_path):
    done = run_recipe(
        "lr_range_test/benchmark.py", "--quick", "--datasets", "digits", "--jobs", "1", "--out", str(tmp_path)
    )
    for name in ("ours (edge)", "fastai valley", "Lightning Tuner", "best constant lr of the grid"):
        assert f"| digits | {name}" in done.stdout
    runs = json.loads((tmp_path / "results.json").read_text())
    assert len(runs) == 2 and all(r["finders"]["ours (edge)"]["lr"] for r in runs)
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_schedule_preview_writes_its_picture(tmp_path):
    sys.path.insert(0, str(ROOT / "recipes" / "schedule_preview"))
    try:
        import preview
    finally:
        sys.path.pop(0)
    path = preview.main(tmp_path / "schedules.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_sgdr_snapshot_ensemble_quick_run(tmp_path):
    done = run_recipe("sgdr_snapshot_ensemble/run.py", "--quick", "--jobs", "1", "--out", str(tmp_path))
    assert "| digits | 2 |" in done.stdout
    (run,) = json.loads((tmp_path / "results.json").read_text())
    assert len(run["sgdr"]["snapshot_steps"]) == 2 and 0 < run["sgdr"]["ensemble"] <= 1
    assert (tmp_path / "sgdr_snapshots.png").stat().st_size > 10_000


def test_overhead_benchmark_quick_run():
    done = run_recipe("benchmark/overhead.py", "--repeats", "1", "--epochs", "1")
    lines = [line.split(" | ") for line in done.stdout.splitlines() if line.startswith("| ")]
    rows = {cells[0][2:]: cells[1:] for cells in lines}
    for variant in ("OneCycle callback", "OneCycle callback, flat", "OneCycle callback, logging every step"):
        # fit s, vs none; (a) the profiler's and (b) the wall clock's us/step and share of the fit; (b) with state_key
        cells = next(cells for name, cells in rows.items() if name.startswith(variant))
        assert len(cells) == 7 and all(float(c.split()[0]) > 0 for c in cells[2:]), (variant, cells)
    assert all(float(c.split()[0]) > 0 for c in rows["torch OneCycleLR"][2:6])
    assert "on_before_optimizer_step" in rows and "on_train_batch_end" in rows  # (b) by hook


def test_cyclical_quick_run(tmp_path):
    done = run_recipe("cyclical/run.py", "--quick", "--jobs", "1", "--out", str(tmp_path))
    for mode in ("triangular", "triangular2", "exp_range", "fixed lr"):
        assert f"| digits | {mode}" in done.stdout
    (run,) = json.loads((tmp_path / "results.json").read_text())
    assert all(0 < c["base_lr"] < c["max_lr"] for c in run["cyclical"].values())


def test_regression_quick_run(tmp_path):
    done = run_recipe("regression/run.py", "--quick", "--jobs", "1", "--out", str(tmp_path))
    assert "| SGD, OneCycle(max_lr='auto') |" in done.stdout
    (run,) = json.loads((tmp_path / "results.json").read_text())
    assert run["onecycle"]["lr"] > 0 and len(run["onecycle"]["curve"]) == 2
    assert (tmp_path / "rmse.png").stat().st_size > 10_000


def test_strategy_benchmark_quick_run(tmp_path):
    done = run_recipe(
        "benchmark/benchmark.py",
        "--quick",
        "--datasets",
        "digits",
        "--seeds",
        "2",
        "--jobs",
        "1",
        "--out",
        str(tmp_path),
    )
    for strategy in ("A: Adam 1e-3", "B: SGD, best grid lr", "C: Lightning Tuner", "D: fastai valley", "ours:"):
        assert f"| digits | {strategy}" in done.stdout
    assert "| digits | met" in done.stdout or "| digits | **missed**" in done.stdout  # the targets table
    summary = json.loads((tmp_path / "results.json").read_text())["summary"]["digits"]["strategies"]
    ours = summary["ours: OneCycle(max_lr='auto')"]
    assert len(ours["lrs"]) == 2 and all(lr > 0 for lr in ours["lrs"]) and len(ours["best"]) == 2
    assert summary["A: Adam 1e-3"]["epochs_to_A"] == [1, 1]  # A reaches its own best
    assert (tmp_path / "accuracy.png").stat().st_size > 10_000


def test_onecycle_vs_constant_quick_run(tmp_path):
    if FashionMNISTDataModule().missing_files():
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    done = run_recipe("onecycle_vs_constant/run.py", "--quick", "--jobs", "1", "--out", str(tmp_path))
    for label in (
        "constant lr 0.03 (tuned)",
        "(a) one-cycle, max_lr 0.08",
        "(b) half the epochs, max_lr 0.8",
        "(c) as (a), momentum 0.9",
        "(d) as (a) in half the epochs",
    ):
        assert f"| {label} | " in done.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    assert [row["config"] for row in results["summary"]] == ["constant", "a", "b", "c", "d"]
    epochs = {run["config"]: len(run["val_acc"]) for run in results["runs"]}
    assert epochs == {"constant": 2, "a": 2, "b": 1, "c": 2, "d": 1}
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_optimizers_quick_run(tmp_path):
    done = run_recipe("optimizers/run.py", "--quick", "--jobs", "1", "--out", str(tmp_path))
    for name in ("SGD", "Adam"):
        assert f"| digits | {name} |" in done.stdout
    (run,) = json.loads((tmp_path / "results.json").read_text())
    assert set(run["constant"]) == set(run["onecycle"]) == {"SGD", "Adam"}
    assert all(r["lr"] > 0 and len(r["curve"]) == 1 for r in run["onecycle"].values())
    assert (tmp_path / "optimizers.png").stat().st_size > 10_000


def test_sweep_quick_run(tmp_path):
    done = run_recipe("sweep/run.py", "--quick", "--out", str(tmp_path))
    for name, label in (("grid", "grid 2x1"), ("random-s0", "random (seed 0)"), ("tpe-s0", "TPE (seed 0)")):
        board = list(csv.DictReader(open(tmp_path / "multirun" / name / "leaderboard.csv")))
        assert len(board) == 2 and float(board[0]["val/acc"]) >= float(board[1]["val/acc"])
        assert f"| {label} | 2 | " in done.stdout
    runs = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert [len(r["trials"]) for r in runs] == [2, 2, 2]
    assert all(r["best_so_far"][1] == r["leaderboard"][0]["val_acc"] for r in runs)
    assert (tmp_path / "sweep.png").stat().st_size > 10_000


@pytest.mark.slow  # (CI time: pruning is checked in tests/test_optuna_sweeper.py; `make test-all` runs it)
def test_sweep_pruning_quick_run_writes_as_it_goes_and_resumes(tmp_path):
    done = run_recipe("sweep/pruning.py", "--quick", "--out", str(tmp_path))
    assert "| digits | TPE, no pruning | " in done.stdout and "| digits | TPE + median, warmup auto | " in done.stdout
    records = [json.loads(line) for line in (tmp_path / "pruning.jsonl").read_text().splitlines()]
    assert [(r["variant"], len(r["trials"])) for r in records] == [("none", 2), ("auto", 4)]
    for r in records:  # each trial: its state from the study, its epochs from its run folder
        assert all(t["state"] in ("COMPLETE", "PRUNED") and t["epochs"] == len(t["curve"]) == 1 for t in r["trials"])
    assert records[0]["trials"][0]["params"] == records[1]["trials"][0]["params"]  # one sampler seed
    assert (tmp_path / "pruning.png").stat().st_size > 10_000 and "| target |" in (tmp_path / "pruning.md").read_text()
    again = run_recipe("sweep/pruning.py", "--quick", "--out", str(tmp_path))  # every search done: none runs again
    assert "seed 0:" not in again.stdout and len((tmp_path / "pruning.jsonl").read_text().splitlines()) == 2


def test_optimizer_defaults_study_quick_run_chooses_and_checks_every_schedule(tmp_path):
    done = run_recipe("optimizers/defaults.py", "--quick", "--jobs", "1", "--out", str(tmp_path))
    runs = json.loads((tmp_path / "defaults.json").read_text())["runs"]
    schedules = {r["schedule"] for r in runs}
    assert schedules == {"onecycle", "constant", "cyclical", "warm_restarts", "warmup_decay"}
    assert all(0 <= r["acc"] <= 1 for r in runs) and "**chosen**" in done.stdout


def test_the_optimizer_configs_ship_the_lrs_their_study_chose():
    sys.path.insert(0, str(ROOT / "recipes" / "optimizers"))
    try:
        import defaults
    finally:
        sys.path.pop(0)
    saved = json.loads((ROOT / "recipes" / "optimizers" / "defaults.json").read_text())
    assert not saved["meta"]["quick"]
    assert defaults.choose(saved["runs"]) == defaults.shipped_lrs()  # change a config's lr: rerun the study
    held_out = [r for r in saved["runs"] if r["data"] != defaults.CHOSEN_ON]
    assert held_out and {r["optimizer"] for r in held_out} == set(defaults.GRID)


def test_wsd_study_quick_run_compares_and_extends(tmp_path):
    done = run_recipe("wsd/run.py", "--quick", "--jobs", "1", "--out", str(tmp_path))
    saved = json.loads((tmp_path / "results.json").read_text())["runs"]
    budget = next(r for r in saved if r["part"] == "budget")
    assert set(budget["runs"]) == {"wsd", "cosine", "onecycle"}
    extension = next(r for r in saved if r["part"] == "extension")
    e, s = extension["epochs"], extension["stable_end"]
    assert len(extension["extended"]) == 2 * e - (s + 1) and len(extension["scratch"]) == 2 * e  # epochs it trained
    assert "| digits | 2 |" in done.stdout and (tmp_path / "wsd.png").stat().st_size > 10_000


def test_guard_study_quick_run_brings_back_a_bold_peak_and_times_its_hooks(tmp_path):
    done = run_recipe("guard/run.py", "--quick", "--out", str(tmp_path))
    saved = json.loads((tmp_path / "results.json").read_text())
    bold = {(j["mult"], j["guard"]): j for j in saved["bold"]}
    assert set(bold) == {(1, False), (1, True), (10, False), (10, True)}
    assert bold[(1, True)]["rollbacks"] == 0  # no false alarm at the oracle's lr
    assert saved["overhead"]["repeats"] == 2 and 0 < saved["overhead"]["hooks_share"] < 0.5
    assert (
        saved["picture"]["guard"]["events"]
        and saved["picture"]["guard"]["accuracy"] > saved["picture"]["plain"]["accuracy"]
    )
    assert "| 10x oracle, all | 1 |" in done.stdout and (tmp_path / "guard.png").stat().st_size > 20_000
    # a second run reads the finished jobs from its journal instead of training them again
    again = run_recipe("guard/run.py", "--quick", "--out", str(tmp_path))
    assert "guard=" not in again.stdout
