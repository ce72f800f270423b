"""Shared pieces of the recipes: the datasets and models they train, a quiet Trainer, accuracy per epoch."""

from __future__ import annotations

import logging
import statistics
import time
import warnings
from functools import cache, partial

DATASETS = {
    # name: (data module, kwargs, model, model kwargs, epochs)
    "digits": ("DigitsDataModule", {"batch_size": 64}, "MLP", {"hidden": [128, 128], "dropout": 0.1}, 10),
    "mnist1d": ("MNIST1DDataModule", {"batch_size": 128}, "CNN1D", {}, 10),
    "fashion": ("FashionMNISTDataModule", {"batch_size": 128, "limit_train": 12000}, "MLP", {"hidden": [256]}, 6),
}
GRID = [0.01, 0.03, 0.1, 0.3]  # constant lrs of the tuned baseline
QUICK_GRID = [0.03, 0.3]


@cache
def machine() -> str:
    """The CPU a record's numbers came from: its model name and the vector unit torch's kernels use. A deep net
    without normalisation carries their last digits far, so a journal made on one CPU does not reproduce bit for
    bit on another; records carry this to say which."""
    import platform

    import torch

    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            name = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), name)
    except OSError:
        pass
    return f"{name}, {torch.backends.cpu.get_cpu_capability()}"


def fashion_available() -> bool:
    """Whether the four Fashion-MNIST files are in their default folder; says so when they are not."""
    from lightning_cyclic.data import FashionMNISTDataModule

    dm = FashionMNISTDataModule()
    missing = dm.missing_files()
    if missing:
        print(f"Fashion-MNIST skipped: {', '.join(missing)} not found in {dm.root}; {dm.how_to_get}")
    return not missing


def quiet() -> None:
    """Silence warnings and Lightning's info lines (imported first: importing it resets its loggers)."""
    import lightning.pytorch  # noqa: F401

    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


def build(dataset: str, quick: bool):
    import torch

    from lightning_cyclic import data, models

    dm_name, dm_kwargs, net_name, net_kwargs, epochs = DATASETS[dataset]
    dm_kwargs = dict(dm_kwargs)
    if quick and dataset == "fashion":
        dm_kwargs["limit_train"] = 2000
    datamodule = getattr(data, dm_name)(**dm_kwargs)

    def model(lr: float = 0.1, momentum: float = 0.9, optimizer=None, cls=models.Classifier):
        """SGD (weight decay 5e-4) at ``lr``, or ``optimizer`` (a partial taking the parameters)."""
        net = partial(getattr(models, net_name), **net_kwargs)
        opt = optimizer or partial(torch.optim.SGD, lr=lr, momentum=momentum, weight_decay=5e-4)
        return cls(net, opt, datamodule.input_shape, datamodule.num_classes)

    return datamodule, model, (1 if quick else epochs)


def trainer(root: str, callbacks=(), **kwargs):
    import lightning.pytorch as pl

    args = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=root,
    )
    args.update(kwargs)
    return pl.Trainer(callbacks=list(callbacks), **args)


def accuracies():
    """A callback that records the validation accuracy (``.values``) and loss (``.losses``) after every
    epoch, and when (``.times``, ``time.perf_counter()``)."""
    import lightning.pytorch as pl

    class Accuracies(pl.Callback):
        def __init__(self):
            self.values, self.losses, self.times = [], [], []

        def on_validation_epoch_end(self, trainer, pl_module):
            if not trainer.sanity_checking:
                self.values.append(float(trainer.callback_metrics["val/acc"]))
                self.losses.append(float(trainer.callback_metrics["val/loss"]))
                self.times.append(time.perf_counter())

    return Accuracies()


def train(dataset, seed, quick, root, lr, schedule):
    import lightning.pytorch as pl

    from lightning_cyclic import OneCycle

    datamodule, model, epochs = build(dataset, quick)
    pl.seed_everything(seed, verbose=False)
    acc = accuracies()
    callbacks = [acc] + ([OneCycle(max_lr=lr, log=False)] if schedule == "onecycle" else [])
    module = model(lr=lr)
    start = time.perf_counter()
    trainer(root, callbacks, max_epochs=epochs).fit(module, datamodule=datamodule)
    return {"best": max(acc.values), "final": acc.values[-1], "seconds": time.perf_counter() - start}


def fastai_valley(root, module, datamodule) -> dict:
    """fastai's ``lr_find`` read fastai's way: the training loss of each step on a 1e-7..10, 100-step
    sweep, smoothed with beta=0.98, first 10% and last 5 points skipped, rule ``valley``."""
    from lightning_cyclic import lr_find
    from lightning_cyclic.suggest import ema, valley

    found = lr_find(trainer(root), module, datamodule=datamodule, verbose=False, evaluate="train", smooth=0.98)
    lrs, losses = found.lrs[10:-5], ema(found.losses, 0.98)[10:-5]
    lr = valley(lrs, losses, losses).lr if len(lrs) > 2 else None
    return {"lr": lr, "steps": len(found.lrs), "seconds": found.seconds}


def lightning_suggestion(fit_trainer, module, datamodule) -> dict:
    """``Tuner(fit_trainer).lr_find`` with its defaults and its ``suggestion()``."""
    from lightning.pytorch.tuner import Tuner

    start = time.perf_counter()
    found = Tuner(fit_trainer).lr_find(module, datamodule=datamodule, update_attr=False)
    return {"lr": found.suggestion(), "steps": len(found.results["lr"]), "seconds": time.perf_counter() - start}


def arguments(doc: str, out, seeds: int, quick: str, datasets: str | None = None):
    """The options every study shares: ``[--datasets] --seeds --jobs --quick --out``."""
    import argparse
    import os
    from pathlib import Path

    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    if datasets is not None:
        parser.add_argument("--datasets", default=datasets)
    parser.add_argument("--seeds", type=int, default=seeds)
    parser.add_argument("--jobs", type=int, default=max(1, min(os.cpu_count() or 1, 16)))
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--out", type=Path, default=Path(out))
    return parser


def mean_std(values, digits: int = 1) -> str:
    """``"mean ± std"`` of fractions, in percent; ``None`` values are left out."""
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.{digits}f} ± {100 * sd:.{digits}f}"


def run_all(one_seed, tasks: list, jobs: int) -> list:
    """``one_seed`` over ``tasks``: in ``jobs`` spawned processes when there is more than one of each."""
    if jobs > 1 and len(tasks) > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(min(jobs, len(tasks))) as pool:
            return pool.map(one_seed, tasks, chunksize=1)
    return [one_seed(t) for t in tasks]
