"""Under DDP (2 CPU processes, gloo) every rank follows the same planned trajectory."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lightning_cyclic.shapes import OneCycleSchedule

SCRIPT = Path(__file__).with_name("ddp_run.py")


def run_ddp(tmp_path, *args):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path), *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]


def test_ddp_ranks_follow_the_same_trajectory(tmp_path):
    ranks = run_ddp(tmp_path)
    # 64 samples / 2 ranks / batch 8 = 4 batches per rank per epoch, accumulation 2 -> 2 steps, x 3 epochs
    assert ranks[0]["estimated"] == ranks[1]["estimated"] == 6
    assert ranks[0]["seen"] == ranks[1]["seen"]
    schedule = OneCycleSchedule(max_lr=0.5, total_steps=6)
    assert [s for s, _, _ in ranks[0]["seen"]] == list(range(6))
    for step, lr, mom in ranks[0]["seen"]:
        assert lr == pytest.approx(schedule.lr(step), rel=1e-12)
        assert mom == pytest.approx(schedule.momentum(step), rel=1e-12)


def test_ddp_range_test_gives_every_rank_one_curve_and_one_lr(tmp_path):
    """The finder all-reduces gradients and losses: one curve, one suggestion, the same schedule on both ranks."""
    ranks = run_ddp(tmp_path, "auto")
    assert ranks[0]["curve"] == ranks[1]["curve"] and len(ranks[0]["curve"]) >= 10
    assert ranks[0]["max_lr"] == ranks[1]["max_lr"] > 0
    # the short trials ran on both ranks through the same all-reduces: the same losses, the same choice
    assert ranks[0]["trials"] == ranks[1]["trials"] and ranks[0]["trials"]["lr"] == ranks[0]["max_lr"]
    assert len(ranks[0]["trials"]["losses"]) == 5
    assert ranks[0]["unchanged"] and ranks[1]["unchanged"]  # weights restored on both ranks
    schedule = OneCycleSchedule(max_lr=ranks[0]["max_lr"], total_steps=6)
    assert ranks[0]["seen"] == ranks[1]["seen"]
    assert [lr for _, lr, _ in ranks[0]["seen"]] == [pytest.approx(schedule.lr(k), rel=1e-12) for k in range(6)]


def test_ddp_trials_that_cannot_tell_run_two_more_below_on_every_rank(tmp_path):
    """With every ladder counted as one that cannot tell (``TRIAL_TIE`` 1.0 in the ranks), each rank decides from the
    all-reduced losses to run two more trials below the ladder (a rank that decided otherwise would leave the other
    waiting in an all-reduce: the run would hang, not finish); both record the same seven and take the same peak.
    At that tie none of the seven learnt more than the sweep by 100% either: each rank runs the longer trials, and
    decides from the same losses whether the bold end's runs too (here, with 100% to beat, neither leaves)."""
    ranks = run_ddp(tmp_path, "auto_tie")
    trials = ranks[0]["trials"]
    assert trials == ranks[1]["trials"] and len(trials["losses"]) == 7 and len(set(trials["losses"])) == 7
    assert "two more at x 2^-6, 2^-4" in trials["reason"] and ranks[0]["max_lr"] == ranks[1]["max_lr"] == trials["lr"]
    long = trials["long"]
    assert len(long["lrs"]) == 2 and long["taken"] is False and long["steps"] == 4 * trials["steps"]


def test_ddp_best_snapshot_decides_once_and_every_rank_restores_the_same_weights(tmp_path):
    ranks = run_ddp(tmp_path, "best")
    for rank in ranks:  # rank 0's scores (3, 2, 1, 4, 4) decide: best at epoch 2, patience 2 runs out at epoch 4
        assert (rank["best_epoch"], rank["stopped_epoch"]) == (2, 4)
        assert rank["restored_best"]
    assert ranks[0]["final"] == ranks[1]["final"]


def test_ddp_nan_on_one_rank_stops_every_rank_and_names_that_rank(tmp_path):
    ranks = run_ddp(tmp_path, "nan_rank1")
    for rank in ranks:  # both ranks stop, and both report rank 1's NaN, not rank 0's finite loss
        assert "the training loss is nan on rank 1" in rank["stop_reason"], rank["stop_reason"]


def test_ddp_plateau_decay_cuts_at_the_same_evaluation_on_every_rank(tmp_path):
    ranks = run_ddp(tmp_path, "plateau")
    # rank 0's scores (3, 2, 1, 4, 4, 4) decide: no improvement after epochs 3, 4 and 5 (patience 0)
    for rank in ranks:
        assert rank["cuts"] == [3, 4, 5] and rank["restored_best"]
    assert ranks[0]["seen"] == ranks[1]["seen"]  # the same lr at every step on both ranks
    lrs = [lr for _, lr, _ in ranks[0]["seen"]]
    assert lrs[0] == pytest.approx(0.1) and lrs[-1] == pytest.approx(0.1 * 0.5**2)  # the cut after epoch 5 is last
    assert ranks[0]["final"] == ranks[1]["final"]


def test_ddp_guard_rolls_every_rank_back_at_the_same_step(tmp_path):
    # rank 1's loss turns NaN at the 3rd batch of each epoch (optimizer steps 1, 3, 5: accumulation 2); the
    # decision reads the mean loss over ranks, so both ranks skip those steps, roll back to the same snapshot
    # and scale the lr alike
    ranks = run_ddp(tmp_path, "guard")
    assert ranks[0]["events"] == ranks[1]["events"]
    assert [e["step"] for e in ranks[0]["events"]] == [1, 3, 5] and "nan" in ranks[0]["events"][0]["reason"]
    assert ranks[0]["lr_scale"] == ranks[1]["lr_scale"] == 0.125
    assert ranks[0]["final"] == ranks[1]["final"] and all(math.isfinite(v) for v in ranks[0]["final"])
    # the steps after a blow-up were given the scaled schedule's lr, on both ranks: half after step 1, a quarter
    # after step 3 (each a restart from step 0, warmed up again over the steps rolled back: 1, then 3)
    for rank in ranks:
        lrs = [lr for _, lr, _ in rank["seen"]]
        schedule = OneCycleSchedule(max_lr=0.5, total_steps=6)
        assert lrs[2] == pytest.approx(0.5 * schedule(2)[0]) and lrs[4] == pytest.approx(0.25 / 3 * schedule(4)[0])
