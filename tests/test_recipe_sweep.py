"""The grid / random / TPE sweep recipe in its small form: every search leaves its leaderboard."""

from __future__ import annotations

import csv
import json

from tests.test_recipes import run_recipe


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
