"""Under DDP (2 CPU processes, gloo) every rank follows the same planned trajectory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lightning_cyclic.shapes import OneCycleSchedule

SCRIPT = Path(__file__).with_name("ddp_run.py")


def test_ddp_ranks_follow_the_same_trajectory(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    # 64 samples / 2 ranks / batch 8 = 4 batches per rank per epoch, accumulation 2 -> 2 steps, x 3 epochs
    assert ranks[0]["estimated"] == ranks[1]["estimated"] == 6
    assert ranks[0]["seen"] == ranks[1]["seen"]
    schedule = OneCycleSchedule(max_lr=0.5, total_steps=6)
    assert [s for s, _, _ in ranks[0]["seen"]] == list(range(6))
    for step, lr, mom in ranks[0]["seen"]:
        assert lr == pytest.approx(schedule.lr(step), rel=1e-12)
        assert mom == pytest.approx(schedule.momentum(step), rel=1e-12)
