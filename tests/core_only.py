"""Every callback in a tiny fit, with the package as installed (``tests/test_install.py`` runs this in venvs).

Run as ``python -I core_only.py OUT_DIR`` from a folder outside the clone. Prints one JSON line: what each fit
did, which optional packages are installed and which are imported, and the one-line errors of the extras.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

# the extras' packages: none is needed by the callbacks
OPTIONAL = ("hydra", "omegaconf", "sklearn", "scipy", "rich", "matplotlib", "mnist1d", "optuna", "tensorboard")


def loaded() -> list[str]:
    return sorted({name.split(".")[0] for name in sys.modules} & set(OPTIONAL))


def main(out: Path) -> dict:
    before_lightning = loaded()
    import lightning.pytorch as pl
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    by_lightning = loaded()  # what Lightning itself imports where a package is installed (rich, omegaconf)
    import lightning_cyclic
    from lightning_cyclic import (
        BestSnapshot,
        Cyclical,
        InitialLossCheck,
        LRFinder,
        OneCycle,
        ScheduleLR,
        SnapshotEnsemble,
        WarmRestarts,
        WarmupDecay,
        lr_find,
    )
    from lightning_cyclic.shapes import OneCycleSchedule

    report: dict = {
        "package": lightning_cyclic.__file__,
        "installed": sorted(name for name in OPTIONAL if importlib.util.find_spec(name) is not None),
        "loaded_before_lightning": before_lightning,
        "loaded_by_lightning": by_lightning,
        "loaded_by_callbacks": sorted(set(loaded()) - set(by_lightning)),
    }

    class Tiny(pl.LightningModule):
        def __init__(self, scheduled: bool = False) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
            self.scheduled = scheduled

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = nn.functional.cross_entropy(self(x), y)
            self.log("train/loss", loss)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            logits = self(x)
            self.log("val/loss", nn.functional.cross_entropy(logits, y))
            self.log("val/acc", (logits.argmax(1) == y).float().mean())

        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)
            if not self.scheduled:
                return opt
            total = int(self.trainer.estimated_stepping_batches)
            sched = ScheduleLR(opt, OneCycleSchedule(max_lr=0.2, total_steps=total))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    torch.manual_seed(0)
    x = torch.randn(512, 8)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    train = DataLoader(TensorDataset(x[:384], y[:384]), batch_size=32, shuffle=True)
    val = DataLoader(TensorDataset(x[384:], y[384:]), batch_size=64)

    def fit(*callbacks: pl.Callback, scheduled: bool = False, epochs: int = 3) -> tuple[pl.Trainer, Tiny]:
        model = Tiny(scheduled)
        trainer = pl.Trainer(
            max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks),
        )  # fmt: skip
        trainer.fit(model, train, val)
        return trainer, model

    def lrs_seen(cb: pl.Callback, **kwargs) -> list[float]:
        seen: list[float] = []

        class Record(pl.Callback):
            def on_train_batch_start(self, trainer: pl.Trainer, *args) -> None:
                seen.append(trainer.optimizers[0].param_groups[0]["lr"])

        fit(cb, Record(), **kwargs)
        return seen

    fits: dict = {}
    schedules = {
        "OneCycle": OneCycle(max_lr=0.2),
        "Cyclical": Cyclical(base_lr=0.01, max_lr=0.2, step_size_up=5),
        "WarmRestarts": WarmRestarts(max_lr=0.2, cycle_len=1),
        "WarmupDecay": WarmupDecay(max_lr=0.2, warmup=5, decay="cosine"),
    }
    for name, cb in schedules.items():
        seen = lrs_seen(cb)
        fits[name] = {"steps": len(seen), "max_lr": max(seen), "min_lr": min(seen)}
    finder = LRFinder(num_steps=30, save_dir=out / "finder", verbose=False)
    auto = OneCycle(max_lr="auto")
    fit(finder, auto)
    fits["LRFinder"] = {
        "suggested": finder.result.chosen.lr if finder.result.chosen else None,
        "used": auto.resolved,
        "files": sorted(p.name for p in (out / "finder").iterdir()),
    }
    best = BestSnapshot(monitor="val/acc", mode="max")
    fit(OneCycle(max_lr=0.2), best)
    fits["BestSnapshot"] = {"best_score": best.best_score, "restored": best.restored}
    ensemble = SnapshotEnsemble(every_n_epochs=1)
    fit(WarmRestarts(max_lr=0.2, cycle_len=1), ensemble)
    fits["SnapshotEnsemble"] = {"members": len(ensemble.snapshots), "metrics": ensemble.metrics}
    check = InitialLossCheck(num_classes=3)
    fit(check, epochs=1)
    fits["InitialLossCheck"] = {"initial_loss": check.initial_loss, "expected": check.expected}
    trainer, _ = fit(scheduled=True)
    fits["ScheduleLR"] = {"last_lr": trainer.optimizers[0].param_groups[0]["lr"]}
    result = lr_find(pl.Trainer(accelerator="cpu", logger=False), Tiny(), train_dataloaders=train, num_steps=20)
    fits["lr_find"] = {"points": len(result.lrs)}
    report["fits"] = fits
    report["loaded_after_fits"] = sorted(set(loaded()) - set(by_lightning))

    errors = {}
    for module in ("lightning_cyclic.run", "lightning_cyclic.sweeps", "lightning_cyclic.plot:plot_schedule"):
        name, _, attr = module.partition(":")
        try:
            target = importlib.import_module(name)
            if attr:
                getattr(target, attr)(OneCycle(max_lr=0.1), total_steps=10, path=out / "s.png")
        except ImportError as err:
            errors[module] = f"{type(err).__name__}: {err}"
        else:
            errors[module] = None
    report["errors"] = errors
    return report


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
