"""The one-cycle vs constant-lr recipe runs end to end in its small form."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lightning_cyclic.data.fashion_mnist import FILES, FashionMNISTDataModule
from tests.test_recipes import run_recipe

FASHION = Path(FashionMNISTDataModule.default_root)


def test_onecycle_vs_constant_quick_run(tmp_path):
    if not all((FASHION / name).is_file() or (FASHION / f"{name}.gz").is_file() for name in FILES):
        pytest.skip(f"Fashion-MNIST not installed in {FASHION} (apt-get install dataset-fashion-mnist)")
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
