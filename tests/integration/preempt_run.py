"""Run by tests/integration/test_preemption.py: Lightning's BoringModel, 2-process CPU DDP, ``Preemption()``.

Rank 0 writes ``OUT/ready`` (its pid) at optimizer step 30 of the first epoch; the test sends it SIGTERM. Each
rank writes ``OUT/rank{r}.json``: the ``SystemExit`` status ``fit`` raised and the step it stopped at.
"""

import json
import os
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel, RandomDataset
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lightning_cyclic import OneCycle, Preemption

if __name__ == "__main__":
    out = Path(sys.argv[1])

    class Slow(BoringModel):
        def train_dataloader(self):
            return DataLoader(RandomDataset(32, 1024), batch_size=4)  # 128 steps an epoch on each of 2 ranks

        def training_step(self, batch, batch_idx):
            time.sleep(0.02)  # time for the signal to arrive anywhere in the step
            if self.global_rank == 0 and self.global_step == 30 and not (out / "ready").exists():
                (out / "ready").write_text(str(os.getpid()))
            return super().training_step(batch, batch_idx)

    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=3,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=out,
        callbacks=[OneCycle(0.1), Preemption(), ModelCheckpoint(dirpath=out / "ckpt")],
    )
    record = {"code": 0}
    try:
        trainer.fit(Slow())
    except SystemExit as stopped:
        record["code"] = stopped.code
        raise
    finally:
        record["step"] = trainer.global_step
        (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
