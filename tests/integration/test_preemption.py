"""Preemption: SIGTERM stops every rank at the same batch, writes a checkpoint and exits 143."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from lightning_cyclic import Preemption
from lightning_cyclic.callbacks.preemption import Preempted
from tests.helpers import TinyModule, tiny_loader, tiny_trainer

SCRIPT = Path(__file__).with_name("preempt_run.py")


class SigtermAt(pl.Callback):
    """Sends this process SIGTERM during optimizer step ``step``."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_stops_the_fit_saves_the_state_and_exits_143(tmp_path):
    module, preemption = TinyModule(), Preemption()
    trainer = tiny_trainer(tmp_path, [SigtermAt(5), preemption], max_epochs=5)
    with pytest.raises(Preempted) as stopped:
        trainer.fit(module, tiny_loader())
    assert isinstance(stopped.value, SystemExit) and stopped.value.code == 143
    saved = tmp_path / "checkpoints" / "last.ckpt"
    assert preemption.saved == stopped.value.checkpoint == str(saved)
    state = torch.load(saved, weights_only=False)
    assert state["global_step"] == trainer.global_step == 6  # the step the signal came in finished
    # the handler is Lightning's (or the interpreter's) again after the fit
    assert signal.getsignal(signal.SIGTERM) != preemption._note
    # resume: the rest of the run, from the step it stopped at
    resumed = TinyModule()
    again = tiny_trainer(tmp_path, [Preemption()], max_epochs=5)
    again.fit(resumed, tiny_loader(), ckpt_path=str(saved))
    # (Lightning before 2.2 counts one step more on a resume from the middle of an epoch)
    assert again.global_step in (40, 41) and again.current_epoch == 5


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match=r"ckpt_path must be a path, None .* or False, got 3"):
        Preemption(ckpt_path=3)
    with pytest.raises(ValueError, match="exit_code must be in"):
        Preemption(exit_code=300)


def test_ddp_sigterm_to_rank_0_stops_every_rank_with_a_checkpoint_and_status_143(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(tmp_path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    ready = tmp_path / "ready"
    deadline = time.monotonic() + 240
    while not ready.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "rank 0 never reached step 30"
        time.sleep(0.05)
    os.kill(int(ready.read_text()), signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the ranks did not stop within 120 s of the SIGTERM")
    assert proc.returncode == 143, err[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["code"] for r in ranks] == [143, 143]
    assert ranks[0]["step"] == ranks[1]["step"] and 30 <= ranks[0]["step"] < 128  # together, in the first epoch
    state = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    assert state["global_step"] == ranks[0]["step"]
