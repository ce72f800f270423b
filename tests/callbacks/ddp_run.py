"""Run by tests/callbacks/test_ddp.py as a script: a 2-process CPU DDP fit with a schedule callback.

Each rank writes the (global_step, lr, momentum) it used at every optimizer step to ``OUT/rank{r}.json``.
"""

import json
import sys
from pathlib import Path

import lightning.pytorch as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lightning_cyclic import OneCycle
from tests.helpers import TinyModule, tiny_loader

if __name__ == "__main__":
    out = Path(sys.argv[1])
    pl.seed_everything(0)
    module = TinyModule()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=3,
        accumulate_grad_batches=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=out,
        callbacks=[OneCycle(max_lr=0.5)],
    )
    trainer.fit(module, tiny_loader(n=64, batch_size=8))
    record = {"estimated": trainer.estimated_stepping_batches, "seen": [s[:3] for s in module.seen]}
    (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
