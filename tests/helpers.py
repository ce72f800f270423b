"""Shared test helpers: torch reference trajectories and a tiny real Lightning setup."""

from __future__ import annotations

import math
from collections.abc import Callable

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def make_optimizer(kind: str = "sgd", lr: float = 0.1, groups: int = 1) -> torch.optim.Optimizer:
    params = [{"params": [nn.Parameter(torch.zeros(2))], "lr": lr * (0.1**i)} for i in range(groups)]
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.99))
    raise ValueError(kind)


def momentum_of(group: dict) -> float:
    return group["betas"][0] if "betas" in group else group["momentum"]


def torch_trajectory(make_scheduler: Callable, steps: int, kind: str = "sgd") -> tuple[list[float], list[float]]:
    """lr and momentum of group 0 before each of ``steps`` optimizer steps under a torch scheduler."""
    opt = make_optimizer(kind)
    sched = make_scheduler(opt)
    lrs, moms = [], []
    for _ in range(steps):
        lrs.append(float(opt.param_groups[0]["lr"]))
        moms.append(float(momentum_of(opt.param_groups[0])))
        opt.step()
        sched.step()
    return lrs, moms


def assert_close(ours: list[float], ref: list[float], rel: float = 1e-6, abs_: float = 1e-12) -> None:
    assert len(ours) == len(ref)
    for k, (a, b) in enumerate(zip(ours, ref)):
        assert math.isclose(a, b, rel_tol=rel, abs_tol=abs_), f"step {k}: ours {a!r} vs torch {b!r}"


class TinyModule(pl.LightningModule):
    """A linear classifier on random data; records lr and momentum at every optimizer step."""

    def __init__(self, optimizer: str = "sgd", lr: float = 0.1, groups: int = 1, scheduler: Callable | None = None):
        super().__init__()
        self.layer = nn.Linear(4, 3)
        self.extra = nn.Linear(3, 3)
        self.optimizer_kind, self.lr, self.groups, self.scheduler = optimizer, lr, groups, scheduler
        self.seen: list[tuple[int, float, float | None, list[float]]] = []

    def forward(self, x):
        return self.extra(self.layer(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def on_before_optimizer_step(self, optimizer):
        # runs after the callbacks' hook of the same name: the values the step will use
        group = optimizer.param_groups[0]
        mom = group["betas"][0] if "betas" in group else group.get("momentum")
        self.seen.append((self.trainer.global_step, float(group["lr"]), mom, [g["lr"] for g in optimizer.param_groups]))

    def configure_optimizers(self):
        if self.groups == 2:
            params = [
                {"params": self.layer.parameters(), "lr": self.lr * 0.1},
                {"params": self.extra.parameters(), "lr": self.lr},
            ]
        else:
            params = self.parameters()
        kinds = {
            "sgd": lambda: torch.optim.SGD(params, lr=self.lr, momentum=0.9),
            "adam": lambda: torch.optim.Adam(params, lr=self.lr, betas=(0.9, 0.99)),
            "adagrad": lambda: torch.optim.Adagrad(params, lr=self.lr),
        }
        opt = kinds[self.optimizer_kind]()
        if self.scheduler is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": self.scheduler(self, opt), "interval": "step"}}


def tiny_loader(n: int = 64, batch_size: int = 8, seed: int = 0, learnable: bool = False) -> DataLoader:
    """Random inputs; labels random, or (``learnable``) a fixed linear function of the inputs."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    if learnable:
        y = (x @ torch.randn(4, 3, generator=torch.Generator().manual_seed(123))).argmax(1)
    else:
        y = torch.randint(0, 3, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def tiny_trainer(tmp_path, callbacks=(), namespace=None, **kwargs) -> pl.Trainer:
    """A quiet CPU Trainer; ``namespace=pytorch_lightning`` builds that package's Trainer instead."""
    defaults = dict(
        default_root_dir=tmp_path,
        accelerator="cpu",
        devices=1,
        max_epochs=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    defaults.update(kwargs)
    return (namespace or pl).Trainer(callbacks=list(callbacks), **defaults)


class RichModule(pl.LightningModule):
    """Batch norm, dropout, a torchmetrics metric, logging, two param groups, momentum and an lr scheduler:
    everything a range test could disturb. Records every training_step call."""

    def __init__(self, lr: float = 0.05, nan: bool = False, scheduler: bool = True):
        super().__init__()
        import torchmetrics

        self.body = nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2))
        self.head = nn.Linear(16, 3)
        self.acc = torchmetrics.Accuracy(task="multiclass", num_classes=3)
        self.lr, self.nan, self.use_scheduler = lr, nan, scheduler
        self.calls: list[tuple[list[float], float]] = []  # (group lrs, loss) per training_step

    def forward(self, x):
        return self.head(self.body(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        loss = nn.functional.cross_entropy(logits, y)
        if self.nan:
            loss = loss * float("nan")
        self.acc(logits, y)
        self.log("train_loss", loss)
        opt = self.trainer.optimizers[0]
        self.calls.append(([g["lr"] for g in opt.param_groups], float(loss)))
        return {"loss": loss}

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self(x), y))

    def configure_optimizers(self):
        opt = torch.optim.SGD(
            [{"params": self.body.parameters(), "lr": self.lr / 10}, {"params": self.head.parameters()}],
            lr=self.lr,
            momentum=0.9,
        )
        if not self.use_scheduler:
            return opt
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)}


class LrRecorder(pl.Callback):
    """Writes ``{out}/lrs_rank{r}.json``: the lr and momentum of group 0 at every optimizer step, per rank.

    For command-line tests: ``+callbacks.lrs._target_=tests.helpers.LrRecorder +callbacks.lrs.out=DIR``.
    """

    def __init__(self, out: str):
        self.out, self.seen = out, []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        group = optimizer.param_groups[0]
        self.seen.append([trainer.global_step, float(group["lr"]), group.get("momentum")])

    def on_train_end(self, trainer, pl_module):
        import json
        from pathlib import Path

        Path(self.out).mkdir(parents=True, exist_ok=True)
        (Path(self.out) / f"lrs_rank{trainer.global_rank}.json").write_text(json.dumps(self.seen))


def assert_one_sgd_step_reduces_the_loss(net: torch.nn.Module, lr: float) -> None:
    """One SGD step on a fixed batch of 32 random inputs (10 classes) lowers that batch's cross-entropy."""
    x = torch.randn(32, *net[1].unflattened_size)
    y = torch.arange(32) % 10
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    loss = torch.nn.functional.cross_entropy(net(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    with torch.no_grad():
        assert float(torch.nn.functional.cross_entropy(net(x), y)) < float(loss)


class PoisonAt(pl.Callback):
    """Fills the first parameter with NaN before optimizer step ``step``: a fault at a known place.

    For command-line tests: ``+callbacks.poison._target_=tests.helpers.PoisonAt +callbacks.poison.step=30``;
    ``+callbacks.poison.rank=1`` poisons that DDP rank only.
    """

    def __init__(self, step: int, rank: int | None = None):
        self.step, self.rank = step, rank

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step and self.rank in (None, trainer.global_rank):
            with torch.no_grad():
                next(pl_module.parameters()).fill_(float("nan"))


class _Unpicklable:
    def __reduce__(self):
        raise OSError("No space left on device (a fault injected by FailSaveAt)")


class FailSaveAt(pl.Callback):
    """Makes every checkpoint save from epoch ``epoch`` on fail half-way through writing the file.

    ``+callbacks.crash._target_=tests.helpers.FailSaveAt +callbacks.crash.epoch=3``: the pickler raises on an
    object placed last in the checkpoint, after the weights were written: a crash inside the save.
    """

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        if trainer.current_epoch >= self.epoch:
            checkpoint["zz_fault"] = _Unpicklable()


class WritesAMarker:
    """Pickles to "call open(marker, 'w')": what a crafted file would do to run code when it is loaded."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def assert_legible(fig) -> None:
    """Every axes with data says what its axes are (its own labels, or a neighbour's in the same column or row
    of a grid); every labelled line is in a legend; an unlabelled line looks like a labelled one (an error bar's
    caps, an inset's copy), so the legend names it too."""
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]
    for sub in getattr(fig, "subfigs", []):
        legends += list(sub.legends)
    shown = {t.get_text() for legend in legends for t in legend.get_texts()}
    assert shown, "no legend"
    lines = [line for ax in fig.axes for line in ax.get_lines()]
    labelled = {line.get_label(): line for line in lines if not line.get_label().startswith("_")}
    assert set(labelled) <= shown, set(labelled) - shown
    looks = {(line.get_color(), line.get_linestyle()) for line in labelled.values()}
    for line in lines:
        if line.get_label().startswith("_") and line.get_gid() != "separator":  # a rule between rows is no data
            assert (line.get_color(), line.get_linestyle()) in looks or line.get_linestyle() == "None", line
    main = [ax for ax in fig.axes if ax.get_lines() or ax.collections or ax.patches]
    assert any(ax.get_xlabel() for ax in main) and any(ax.get_ylabel() for ax in main)
    for ax in main:
        assert ax.get_xlabel() or ax.get_title() or ax.get_ylabel(), ax
