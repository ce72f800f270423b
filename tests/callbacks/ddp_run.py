"""Run by tests/callbacks/test_ddp.py as a script: a 2-process CPU DDP fit with a schedule callback.

Each rank writes the (global_step, lr, momentum) it used at every optimizer step to ``OUT/rank{r}.json``;
with ``auto`` as the second argument the schedule is ``OneCycle(max_lr="auto")`` fed by an ``LRFinder``,
and the range test's curve and the weights at the start of training are written too; with ``best``, each rank
logs its own (unsynced, different) score and ``BestSnapshot`` decides when to stop and what to restore; with
``plateau``, the same scores drive ``PlateauDecay(restore_best=True)``; with ``guard``, rank 1's loss turns NaN at
its 3rd batch and a ``Guard`` rolls both ranks back.
"""

import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lightning_cyclic import BestSnapshot, Guard, LRFinder, OneCycle, PlateauDecay
from lightning_cyclic.callbacks.best import cpu_state
from tests.helpers import TinyModule, tiny_loader

if __name__ == "__main__":
    out = Path(sys.argv[1])
    auto = len(sys.argv) > 2 and sys.argv[2] in ("auto", "auto_tie")
    if auto and sys.argv[2] == "auto_tie":  # every ladder counts as one that cannot tell: the branch below runs
        from lightning_cyclic import finder_control

        finder_control.TRIAL_TIE = 1.0
    pl.seed_everything(0)
    module = TinyModule()
    initial = [p.detach().clone() for p in module.parameters()]

    class AtTrainStart(pl.Callback):
        def on_train_start(self, trainer, pl_module):
            self.unchanged = all(torch.equal(a, b.detach().cpu()) for a, b in zip(initial, pl_module.parameters()))

    probe = AtTrainStart()
    callbacks = [OneCycle(max_lr="auto"), LRFinder(num_steps=60, verbose=False), probe] if auto else [OneCycle(0.5)]
    plateau_mode = len(sys.argv) > 2 and sys.argv[2] == "plateau"
    best_mode = len(sys.argv) > 2 and sys.argv[2] in ("best", "plateau")
    if best_mode:
        scores = {0: [3, 2, 1, 4, 4, 4], 1: [1, 5, 6, 0, 0, 0]}  # the ranks disagree; rank 0 decides

        class Scored(TinyModule):
            def validation_step(self, batch, batch_idx):
                self.log("score", float(scores[self.global_rank][self.current_epoch]))

        class Weights(pl.Callback):
            by_epoch = {}

            def on_validation_end(self, trainer, pl_module):
                if not trainer.sanity_checking:
                    self.by_epoch[trainer.current_epoch] = cpu_state(pl_module)

        module, weights = Scored(), Weights()
        callbacks = [BestSnapshot("score", "min", patience=2, verbose=False), weights]
        if plateau_mode:
            callbacks[0] = PlateauDecay("score", "min", factor=0.5, patience=0, restore_best=True, verbose=False)
    guard_mode = len(sys.argv) > 2 and sys.argv[2] == "guard"
    nan_mode = len(sys.argv) > 2 and sys.argv[2] in ("nan_rank1", "guard")
    if nan_mode:  # rank 1's training loss turns NaN at its 3rd batch; rank 0's stays finite

        class NanOnRank1(TinyModule):
            def training_step(self, batch, batch_idx):
                loss = super().training_step(batch, batch_idx)
                return loss * float("nan") if self.global_rank == 1 and batch_idx == 2 else loss

        module = NanOnRank1()
        callbacks = [OneCycle(0.5), Guard(every=1)] if guard_mode else [BestSnapshot("val_loss", "min", verbose=False)]
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=6 if best_mode else 3,
        num_sanity_val_steps=0,
        accumulate_grad_batches=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=out,
        callbacks=callbacks,
    )
    if nan_mode:
        module.validation_step = lambda batch, batch_idx: module.log(
            "val_loss", torch.nn.functional.cross_entropy(module(batch[0]), batch[1]), sync_dist=True
        )
    with_val = best_mode or nan_mode
    trainer.fit(module, tiny_loader(n=64, batch_size=8), tiny_loader(n=16, seed=1) if with_val else None)
    # the module's own on_before_optimizer_step also sees the range test's steps (as in fit): keep the fit's
    record = {
        "estimated": trainer.estimated_stepping_batches,
        "seen": [s[:3] for s in module.seen[len(module.seen) - trainer.global_step :]],
    }
    if guard_mode:
        guard = callbacks[1]
        record.update(
            events=guard.events,
            lr_scale=guard.lr_scale,
            final=[float(v.double().sum()) for v in cpu_state(module).values()],
        )
    elif nan_mode:
        record["stop_reason"] = callbacks[0].stop_reason
    if best_mode:
        best = callbacks[0]
        final = cpu_state(module)
        record.update(
            best_epoch=best.best_epoch,
            stopped_epoch=best.stopped_epoch,
            cuts=[c[0] for c in getattr(best, "cuts", [])],
            restored_best=all(torch.equal(final[k], weights.by_epoch[best.best_epoch][k]) for k in final),
            final=[float(v.double().sum()) for v in final.values()],
        )
    if auto:
        record.update(
            max_lr=callbacks[0].resolved["max_lr"],
            curve=callbacks[1].result.losses,
            trials=callbacks[1].result.extra.get("trials"),
            unchanged=probe.unchanged,
        )
    (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
    # leave no gloo threads for the interpreter's exit to abort on ("terminate called without an active exception")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
