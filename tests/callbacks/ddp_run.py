"""Run by tests/callbacks/test_ddp.py as a script: a 2-process CPU DDP fit with a schedule callback.

Each rank writes the (global_step, lr, momentum) it used at every optimizer step to ``OUT/rank{r}.json``;
with ``auto`` as the second argument the schedule is ``OneCycle(max_lr="auto")`` fed by an ``LRFinder``,
and the range test's curve and the weights at the start of training are written too.
"""

import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lightning_cyclic import LRFinder, OneCycle
from tests.helpers import TinyModule, tiny_loader

if __name__ == "__main__":
    out = Path(sys.argv[1])
    auto = len(sys.argv) > 2 and sys.argv[2] == "auto"
    pl.seed_everything(0)
    module = TinyModule()
    initial = [p.detach().clone() for p in module.parameters()]

    class AtTrainStart(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            self.unchanged = all(torch.equal(a, b.detach().cpu()) for a, b in zip(initial, pl_module.parameters()))

    probe = AtTrainStart()
    callbacks = [OneCycle(max_lr="auto"), LRFinder(num_steps=60, verbose=False), probe] if auto else [OneCycle(0.5)]
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
        callbacks=callbacks,
    )
    trainer.fit(module, tiny_loader(n=64, batch_size=8))
    record = {"estimated": trainer.estimated_stepping_batches, "seen": [s[:3] for s in module.seen]}
    if auto:
        record.update(
            max_lr=callbacks[0].resolved["max_lr"],
            curve=callbacks[1].result.losses,
            unchanged=probe.unchanged,
        )
    (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
