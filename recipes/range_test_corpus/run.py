"""Range-test benchmark on a corpus of tasks: how much does each LR finder's suggestion cost against the best
one-cycle ``max_lr`` of a dense grid?

    python recipes/range_test_corpus/run.py                  # the full study (README table)
    python recipes/range_test_corpus/run.py --quick          # 2 tiny tasks, 3 grid lrs, 1 seed, 1 epoch (CI)
    python recipes/range_test_corpus/run.py --report-only    # table.md and regret.png again from results.json

For every task of ``tasks.py`` and every seed:

* the **oracle**: one-cycle (``OneCycle(max_lr=lr)``, its defaults otherwise) at every lr of the task's grid
  (10 ** (k / 3)), and a constant lr at the same lrs; the score of a run is its best-epoch metric on the
  held-out split, a grid point's score the mean over seeds; the oracle is the best grid point;
* **every finder** on the same freshly initialised model and data order: ours (``lr_find``, each rule of
  ``lightning_cyclic.suggest`` on the same curve, with ``evaluate="val"`` and ``"train"``), torch-lr-finder
  (its ``range_test`` and the suggestion of its ``plot(suggest_lr=True)``), Lightning's ``Tuner.lr_find``
  and its ``suggestion()``, fastai's ``valley`` (``recipes/common.fastai_valley``); then one-cycle at each
  suggestion. Regret = oracle - that score (accuracy points; RMSE tasks: % of the oracle's RMSE), so that
  positive is worse;
* **leave-one-task-out** check of the ``edge`` rule's constants (``EDGE_DIV``, ``EDGE_DEPTH``): chosen on the
  other tasks (by interpolating their oracle curves), then trained at the held-out task's suggestion.

It writes ``results.json`` (everything), ``table.md`` (also printed) and ``regret.png`` next to this file (or
into ``--out``).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars of torch-lr-finder and Lightning's Tuner (read at import)
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import tasks as corpus  # noqa: E402
from common import arguments, fastai_valley, lightning_suggestion, machine, quiet, trainer  # noqa: E402

RULES = ("edge", "valley", "steepest", "minimum")
MODES = ("val", "train")
OURS = [f"ours {rule} ({mode})" for mode in MODES for rule in RULES]
PEERS = ["torch-lr-finder", "Lightning Tuner", "fastai valley"]
# LRFinder's default rule on twice as many validation batches (the default reads 4): does a steadier curve cut
# the spread, and at what cost?
MORE_VAL = "ours edge (val, 8 batches)"
FINDERS = [*OURS, MORE_VAL, *PEERS]
DEFAULT = "ours edge (val)"  # LRFinder's defaults: rule edge, evaluate="auto" (val where there is validation data)
SHORT = {name: name.removeprefix("ours ").replace(" (", "/").rstrip(")") for name in OURS}
SHORT.update({"torch-lr-finder": "torch-lr-finder", "Lightning Tuner": "Lightning", "fastai valley": "fastai"})
SHORT[MORE_VAL] = "edge/val x8"
QUICK_TASKS = ("digits-mlp-sgd", "diabetes-mlp-adamw-long")
LONG = 2000  # optimizer steps from which a task counts as long (the cost target)
TARGETS = {"median": 0.3, "worst": 1.5, "rmse_median": 2.0, "rmse_worst": 8.0, "spread": 1.5, "cost": 0.10}
# Candidates of the leave-one-task-out check: (EDGE_DIV[0], EDGE_DIV[1], EDGE_DEPTH[0], EDGE_DEPTH[1]).
DIVS = [(lo, hi) for lo in (1.0, 1.5, 2.0, 3.0) for hi in (1.5, 2.0, 3.0, 4.0, 6.0) if hi >= lo]
DEPTHS = [(0.1, 0.3), (0.05, 0.2), (0.2, 0.5), (0.1, 0.6), (0.3, 1.0)]
CANDIDATES = [(*d, *e) for d in DIVS for e in DEPTHS]


# --- the pieces each worker process runs ----------------------------------------------------------


def loader(x, y, batch: int, shuffle: bool):
    """A DataLoader that slices whole batches out of in-memory tensors (one indexing per batch)."""
    from torch.utils.data import DataLoader, Dataset

    class Tensors(Dataset):
        def __len__(self):
            return len(x)

        def __getitem__(self, i):
            return x[i], y[i]

        def __getitems__(self, idx):
            return x[idx], y[idx]

    return DataLoader(Tensors(), batch_size=batch, shuffle=shuffle, collate_fn=tuple)


def task_module(task: corpus.Task, configure=None):
    """A LightningModule training the task's network with its loss and optimizer (lr set by the schedule);
    ``configure(parameters)``, where given, returns what ``configure_optimizers`` returns instead."""
    import lightning.pytorch as pl

    class TaskModule(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = corpus.build_net(task)
            self.loss = corpus.criterion(task)
            self.lr = 1e-3  # every schedule, range test and Tuner here sets the lr itself

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            return self.loss(self.net(batch[0]), batch[1])

        def validation_step(self, batch, batch_idx):
            self.log("val/loss", self.loss(self.net(batch[0]), batch[1]))

        def configure_optimizers(self):
            if configure is not None:
                return configure(self.parameters())
            return corpus.make_optimizer(task, self.parameters(), self.lr)

    return TaskModule()


def task_datamodule(task: corpus.Task):
    """The task's data for Lightning; with a ``val_dataloader`` only where the task has validation."""
    import lightning.pytorch as pl

    data = corpus.load(task)

    class Train(pl.LightningDataModule):
        def train_dataloader(self):
            return loader(data.x_train, data.y_train, task.batch, shuffle=True)

    class WithVal(Train):
        def val_dataloader(self):
            return loader(data.x_val, data.y_val, task.batch, shuffle=False)

    return WithVal() if task.val else Train()


def score(net, task: corpus.Task) -> float:
    """The metric on the held-out split: accuracy, or RMSE in the target's units, no worse than the trivial
    predictor's (a diverged run counts as predicting the training mean)."""
    import torch

    data = corpus.load(task)
    was_training = net.training
    net.eval()
    with torch.no_grad():
        out = torch.cat([net(x) for x in data.x_val.split(1024)])
    net.train(was_training)
    if task.metric == "acc":
        return float((out.argmax(1) == data.y_val).float().mean())
    rmse = float(((out - data.y_val) ** 2).mean().sqrt()) * data.y_scale
    return min(rmse, data.baseline) if math.isfinite(rmse) else data.baseline


def fit(task: corpus.Task, seed: int, lr: float, schedule: str, epochs: int, root: str, extra=()) -> dict:
    """One training run; the score after every epoch, the best of them and the wall time. ``extra``: more
    callbacks, after the schedule."""
    import lightning.pytorch as pl

    from lightning_cyclic import OneCycle

    data = corpus.load(task)
    pl.seed_everything(seed, verbose=False)
    module = task_module(task)
    module.lr = lr
    values = []

    class Score(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            values.append(score(pl_module.net, task))

    callbacks = [Score()] + ([OneCycle(max_lr=lr, log=False)] if schedule == "onecycle" else []) + list(extra)
    start = time.perf_counter()
    fitted = trainer(root, callbacks, max_epochs=epochs)
    fitted.fit(module, train_dataloaders=loader(data.x_train, data.y_train, task.batch, shuffle=True))
    best = max(values) if task.metric == "acc" else min(values)
    return {"best": best, "curve": values, "seconds": time.perf_counter() - start, "steps": fitted.global_step}


# --- learning-rate-free optimizers, trained as the grid is (same seed, data order, epochs, scoring) ---------------

# name: what runs. Each gets the task's weight decay (SGD tasks 5e-4, AdamW tasks 1e-2) and no other tuning.
METHODS = {
    "prodigy": "Prodigy (lr 1, safeguard warmup, bias correction), no schedule",
    "prodigy-cosine": "Prodigy, cosine annealing over the run",
    "dadapt-cosine": "D-Adaptation (DAdaptAdam on AdamW tasks, DAdaptSGD momentum 0.9 on SGD tasks), lr 1, cosine",
    "ldog-avg": "L-DoG, scored at its polynomial-decay average (gamma 8)",
    "schedulefree": "schedule-free (AdamW lr 0.0025 / SGD lr 1, momentum 0.9), 5% warmup, scored in eval mode",
    "adamw-cosine": "AdamW lr 1e-3, 5% linear warmup + cosine",
    # ours as a user adds it to a fit, in the same run as the peers: the range test inside the fit (LRFinder's
    # defaults, the validation loss where the task has validation), then one-cycle at its choice; and the same
    # with Guard() (its defaults), which rolls a blow-up back and lowers the peak
    "auto": "ours, the curve alone: OneCycle(max_lr='auto') + LRFinder(trials=False) in the fit",
    "auto-guard": "ours, the curve alone: OneCycle(max_lr='auto') + LRFinder(trials=False) + Guard() in the fit",
    # with the second signal, LRFinder's default: short trials around the curve's reading
    "auto-trials": "ours: OneCycle(max_lr='auto') + LRFinder() in the fit (range test, then short trials)",
    "auto-trials-guard": "ours: OneCycle(max_lr='auto') + LRFinder() + Guard() in the fit (with the Guard in the fit, "
    "the trials' pick is taken as it is)",
    "auto-trials-guard-sqrt2": "ours: as auto-trials-guard with the trials' pick divided by sqrt(2), as without a "
    "Guard (the default before the pick was taken as it is with a Guard)",
    "auto-trials-guard-cliff": "ours, measured and not adopted: as auto-trials-guard with the trials read below "
    "their first cliff (a trial more than 1% above a more cautious one's loss: finder_control.TRIAL_CLIFF 0.01), "
    "without the trials at the sweep's lowest (as it was measured)",
    "auto-trials-guard-one-ladder": "ours, before: as auto-trials-guard without the two trials below the ladder "
    "where its trials cannot tell the candidates apart, nor the two at the sweep's lowest",
}
# arms of the side studies only (not in the peer tables): above.py's
STUDY_ARMS = {
    "auto-trials-guard-above": "ours, measured: as auto-trials-guard with two more trials above the ladder (the edge "
    "x 2^3, 2^4) where neither the five nor the two below told the candidates apart (finder_control.TRIAL_ABOVE)",
    "auto-trials-guard-lowest": "ours, measured, then adopted: as auto-trials-guard with two more trials at the "
    "sweep's lowest (its lr x 2^-1, 2^0) where the ladder's trials learnt no more than the sweep "
    "(finder_control.TRIAL_AT_LOWEST; the package's default since)",
    "auto-trials-guard-no-lowest": "ours, before: as auto-trials-guard without the trials at the sweep's lowest (the "
    "package before them: lowest.py's baseline)",
    "auto-trials-guard-longer": "ours, measured: as auto-trials-guard with two longer trials (4x a trial's steps, at "
    "the edge x 2^-6, 2^2) where none of the seven told the candidates apart nor learnt more than the sweep "
    "(finder_control.TRIAL_LONG)",
    "auto-trials-guard-no-longer": "ours: as auto-trials-guard without the longer trials (longer.py's baseline)",
}
_SHIPPED: dict = {}  # the package's own values of the rules an arm changes, read before any arm changes them
OURS_IN_FIT = (
    "auto",
    "auto-guard",
    "auto-trials",
    "auto-trials-guard",
    "auto-trials-guard-sqrt2",
    "auto-trials-guard-cliff",
    "auto-trials-guard-above",
    "auto-trials-guard-lowest",
    "auto-trials-guard-no-lowest",
    "auto-trials-guard-longer",
    "auto-trials-guard-no-longer",
    "auto-trials-guard-one-ladder",
)
CLIFF = 0.01  # the arm auto-trials-guard-cliff's TRIAL_CLIFF
ABOVE = (3, 4)  # the arm auto-trials-guard-above's TRIAL_ABOVE
LOWEST = (-1, 0)  # the arm auto-trials-guard-lowest's TRIAL_AT_LOWEST
LONGER = (-6, 2)  # the arm auto-trials-guard-longer's TRIAL_LONG
WARMUP = 0.05  # share of the run the schedule-free and AdamW warmups take


def weight_decay(task: corpus.Task) -> float:
    return corpus.make_optimizer(task, [corpus.torch.zeros(1, requires_grad=True)], 1.0).param_groups[0]["weight_decay"]


def peer_optimizer(task: corpus.Task, method: str, total: int):
    """``configure(parameters)`` for ``task_module``: the method's optimizer and its per-step scheduler, if any."""
    import torch

    decay = weight_decay(task)
    warmup = max(1, round(WARMUP * total))

    def cosine(optimizer):
        return {"scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total), "interval": "step"}

    def configure(params):
        if method in ("prodigy", "prodigy-cosine"):
            from prodigyopt import Prodigy

            opt = Prodigy(params, lr=1.0, weight_decay=decay, safeguard_warmup=True, use_bias_correction=True)
            return {"optimizer": opt, "lr_scheduler": cosine(opt)} if method == "prodigy-cosine" else opt
        if method == "dadapt-cosine":
            from dadaptation import DAdaptAdam, DAdaptSGD

            if task.optimizer == "adamw":
                opt = DAdaptAdam(params, lr=1.0, weight_decay=decay, decouple=True)
            else:
                opt = DAdaptSGD(params, lr=1.0, momentum=0.9, weight_decay=decay)
            return {"optimizer": opt, "lr_scheduler": cosine(opt)}
        if method == "ldog-avg":
            from dog import LDoG

            # the package's advice: reps_rel 1e-6, 1e-4 for models with batch norm
            return LDoG(params, lr=1.0, weight_decay=decay, reps_rel=1e-4 if has_batch_norm(task) else 1e-6)
        if method == "schedulefree":
            import schedulefree

            if task.optimizer == "adamw":
                return schedulefree.AdamWScheduleFree(params, lr=0.0025, weight_decay=decay, warmup_steps=warmup)
            return schedulefree.SGDScheduleFree(params, lr=1.0, momentum=0.9, weight_decay=decay, warmup_steps=warmup)
        if method == "adamw-cosine":
            opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=decay)

            def factor(step):
                if step < warmup:
                    return (step + 1) / warmup
                return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

            return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, factor),
                                                       "interval": "step"}}  # fmt: skip
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")

    return configure


def has_batch_norm(task: corpus.Task) -> bool:
    from torch import nn

    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in corpus.build_net(task).modules())


def with_batch_statistics(net, task: corpus.Task):
    """A copy of ``net`` whose batch-norm statistics are recomputed at its current weights (one pass over the
    training data, cumulative average); ``net`` itself where it has no batch norm. Averaged or schedule-free
    weights are not the weights the running statistics were gathered at."""
    import copy

    import torch
    from torch import nn

    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return net
    net = copy.deepcopy(net)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    net.train()
    with torch.no_grad():
        for x in corpus.load(task).x_train.split(task.batch):
            net(x)
    return net


def fit_peer(task: corpus.Task, seed: int, method: str, epochs: int, root: str) -> dict:
    """One training with a learning-rate-free method, scored as ``fit`` scores (best epoch on the held-out split):
    L-DoG at its averaged weights, schedule-free in eval mode, both with batch-norm statistics recomputed there."""
    import lightning.pytorch as pl

    data = corpus.load(task)
    total = corpus.total_steps(task, epochs)
    pl.seed_everything(seed, verbose=False)
    ours = method in OURS_IN_FIT
    module = task_module(task, None if ours else peer_optimizer(task, method, total))
    values = []

    class Score(pl.Callback):
        averager = None

        def on_train_start(self, trainer, pl_module):
            if method == "ldog-avg":
                from dog import PolynomialDecayAverager

                self.averager = PolynomialDecayAverager(pl_module.net)

        def on_train_epoch_start(self, trainer, pl_module):
            if method == "schedulefree":
                trainer.optimizers[0].train()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if self.averager is not None:
                self.averager.step()

        def on_train_epoch_end(self, trainer, pl_module):
            net = pl_module.net
            if method == "schedulefree":
                trainer.optimizers[0].eval()
            if self.averager is not None:
                net = self.averager.averaged_model
            if method in ("schedulefree", "ldog-avg"):
                net = with_batch_statistics(net, task)
            values.append(score(net, task))
            if method == "schedulefree":
                trainer.optimizers[0].train()

    callbacks: list = [Score()]
    if ours:
        from lightning_cyclic import Guard, LRFinder, OneCycle, finder_control

        # (read when the trials choose: an earlier default, for the comparison)
        if not _SHIPPED:
            control = finder_control
            _SHIPPED.update(bias=control.GUARDED_TRIAL_BIAS, below=control.TRIAL_BELOW, cliff=control.TRIAL_CLIFF)
            _SHIPPED.update(above=control.TRIAL_ABOVE, lowest=control.TRIAL_AT_LOWEST, long=control.TRIAL_LONG)
        finder_control.GUARDED_TRIAL_BIAS = finder_control.TRIAL_BIAS if method.endswith("sqrt2") else _SHIPPED["bias"]
        finder_control.TRIAL_BELOW = () if method.endswith("one-ladder") else _SHIPPED["below"]
        finder_control.TRIAL_CLIFF = CLIFF if method.endswith("cliff") else _SHIPPED["cliff"]
        finder_control.TRIAL_ABOVE = ABOVE if method.endswith("above") else _SHIPPED["above"]
        # (the arms measured before the trials at the sweep's lowest keep their definitions: without them)
        before = method.endswith(("one-ladder", "cliff", "no-lowest"))
        at_lowest = () if before else LOWEST if method.endswith("-lowest") else _SHIPPED["lowest"]
        finder_control.TRIAL_AT_LOWEST = at_lowest
        # (and every arm measured before the longer trials, without them)
        before = method.endswith(("one-ladder", "cliff", "lowest", "above", "no-longer"))
        finder_control.TRIAL_LONG = () if before else LONGER if method.endswith("-longer") else _SHIPPED["long"]

        callbacks += [OneCycle(max_lr="auto", log=False), LRFinder(verbose=False, trials="trials" in method)]
        callbacks += [Guard(verbose=False)] if "guard" in method else []
    start = time.perf_counter()
    fitted = trainer(root, callbacks, max_epochs=epochs)
    if ours:  # the validation loader where the task has one: the range test reads it
        fitted.fit(module, datamodule=task_datamodule(task))
    else:
        fitted.fit(module, train_dataloaders=loader(data.x_train, data.y_train, task.batch, shuffle=True))
    best = max(values) if task.metric == "acc" else min(values)
    group = fitted.optimizers[0].param_groups[0]
    found = {"d": float(group["d"])} if "d" in group else {}  # Prodigy's and D-Adaptation's step-size estimate
    if ours:
        found["max_lr"] = callbacks[1].resolved["max_lr"] if callbacks[1].resolved else None  # (lr: a job key)
        trials = callbacks[2].result.extra.get("trials") if callbacks[2].result else None
        if trials is not None:
            found["trials"] = trials
        if "guard" in method:
            found.update(rollbacks=callbacks[3].rollbacks, lr_scale=callbacks[3].lr_scale)
    return {"best": best, "curve": values, "seconds": time.perf_counter() - start, "steps": fitted.global_step,
            **found}  # fmt: skip


def torch_lr_finder_suggestion(history: dict, skip_start: int = 10, skip_end: int = 5) -> float | None:
    """torch-lr-finder's suggestion, as its ``LRFinder.plot(suggest_lr=True)`` computes it, without plotting:
    its (already smoothed) loss history without the first ``skip_start`` and last ``skip_end`` points, and the lr
    where ``numpy.gradient`` of it (per point) is smallest. ``None`` where ``plot`` would raise (too few points)."""
    import numpy as np

    lrs, losses = history["lr"], history["loss"]
    if len(lrs) < skip_start + skip_end + 2:
        return None
    end = len(lrs) - skip_end
    lrs, losses = lrs[skip_start:end], losses[skip_start:end]
    return lrs[int(np.gradient(np.array(losses)).argmin())]


def run_torch_lr_finder(task: corpus.Task, module) -> dict:
    """torch-lr-finder on the module's network: 1e-7 (the optimizer's lr) to 10 in 100 steps, its defaults
    otherwise; on a task with validation it reads the validation loss (``val_loader``), else the training loss."""
    from torch_lr_finder import LRFinder as TorchLRFinder

    data = corpus.load(task)
    optimizer = corpus.make_optimizer(task, module.net.parameters(), 1e-7)
    finder = TorchLRFinder(module.net, optimizer, corpus.criterion(task), device="cpu")
    train = loader(data.x_train, data.y_train, task.batch, shuffle=True)
    val = loader(data.x_val, data.y_val, task.batch, shuffle=False) if task.val else None
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its progress
        finder.range_test(train, val_loader=val, end_lr=10, num_iter=100)
    lr = torch_lr_finder_suggestion(finder.history)
    reason = "" if lr is not None else f"only {len(finder.history['lr'])} points: its plot() needs 17"
    return {"lr": lr, "steps": len(finder.history["lr"]), "reason": reason}


def range_tests(task: corpus.Task, seed: int, epochs: int, root: str) -> dict:
    """Every finder on the seed's initial weights and data order; suggestions, cost, and our curves."""
    import lightning.pytorch as pl

    from lightning_cyclic import lr_find

    finders, curves = {}, {}

    def fresh():
        pl.seed_everything(seed, verbose=False)
        return task_module(task)

    for mode in MODES if task.val else ("train",):
        start = time.perf_counter()
        result = lr_find(trainer(root), fresh(), datamodule=task_datamodule(task), verbose=False, evaluate=mode)
        seconds = time.perf_counter() - start
        curves[mode] = {"lrs": result.lrs, "losses": result.to_dict()["losses"], "stop": result.stop_reason}
        for rule in RULES:
            s = result.suggest(rule)
            finders[f"ours {rule} ({mode})"] = {
                "lr": s.lr,
                "steps": result.optimizer_steps,
                "seconds": seconds,
                "reason": s.reason,
            }
    if task.val:
        start = time.perf_counter()
        result = lr_find(trainer(root), fresh(), datamodule=task_datamodule(task), verbose=False, val_batches=8)
        seconds = time.perf_counter() - start
        s = result.suggest("edge")
        finders[MORE_VAL] = {"lr": s.lr, "steps": result.optimizer_steps, "seconds": seconds, "reason": s.reason}
    else:  # no validation data: evaluate="val" cannot run, LRFinder's default reads the training loss
        for rule in RULES:
            finders[f"ours {rule} (val)"] = dict(finders[f"ours {rule} (train)"], note="train: no validation data")
        finders[MORE_VAL] = dict(finders["ours edge (train)"], note="train: no validation data")
    start = time.perf_counter()
    finders["torch-lr-finder"] = run_torch_lr_finder(task, fresh())
    finders["torch-lr-finder"]["seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    found = lightning_suggestion(trainer(root, max_epochs=epochs), fresh(), task_datamodule(task))
    finders["Lightning Tuner"] = dict(found, seconds=time.perf_counter() - start)
    start = time.perf_counter()
    found = fastai_valley(root, fresh(), task_datamodule(task))
    finders["fastai valley"] = dict(found, seconds=time.perf_counter() - start)
    for info in finders.values():
        lr = info["lr"]
        if lr is not None and not (math.isfinite(lr) and lr > 0):
            info["reason"], info["lr"] = f"suggested {lr}", None
        elif lr is None:
            info.setdefault("reason", "no suggestion")
    return {"finders": finders, "curves": curves}


_ROOT = None


def silence() -> None:
    """``quiet()``, and the same for the ``pytorch_lightning`` namespace (which the package imports for its
    compatibility checks; Lightning's info lines then go through its loggers)."""
    import logging

    quiet()
    import lightning_cyclic  # noqa: F401  (imports pytorch_lightning where it is installed)

    for name in ("pytorch_lightning", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


def work(job: dict) -> dict:
    """One job of the pool: ``range_tests`` of a task and seed, or one training run. Never raises."""
    global _ROOT
    silence()
    import torch

    torch.set_num_threads(1)
    if _ROOT is None:
        _ROOT = tempfile.mkdtemp(prefix="range-test-corpus-")
    task = corpus.find(job["task"])
    start = time.perf_counter()
    try:
        if job["kind"] == "range_tests":
            out = range_tests(task, job["seed"], job["epochs"], _ROOT)
        elif job["kind"] == "peer":
            out = fit_peer(task, job["seed"], job["method"], job["epochs"], _ROOT)
        else:
            out = fit(task, job["seed"], job["lr"], job["schedule"], job["epochs"], _ROOT)
    except Exception:
        out = {"error": traceback.format_exc(limit=8)}
    return {**job, **out, "wall": time.perf_counter() - start, "cpu": machine()}


# --- choosing the edge constants, leave one task out --------------------------------------------


def divisor(depth: float, constants) -> float:
    """``edge_divisor`` of ``lightning_cyclic.suggest`` with other constants."""
    div0, div1, depth0, depth1 = constants
    if div0 == div1:
        return div0
    t = min(max((depth - depth0) / (depth1 - depth0), 0.0), 1.0)
    return div0 * (div1 / div0) ** t


def edge_reading(curve: dict) -> tuple[float, float] | None:
    """``(edge, depth)`` of a curve as the ``edge`` rule reads it, before dividing; ``None`` where the rule has no
    suggestion."""
    from lightning_cyclic.suggest import finite_prefix, read_edge, suggest

    losses = [math.nan if x is None else x for x in curve["losses"]]
    if suggest(curve["lrs"], losses, "edge").lr is None:
        return None
    reading = read_edge(*finite_prefix(curve["lrs"], losses))
    return reading.at, reading.depth


def edge_lr(curve: dict, constants, reading: tuple[float, float] | None = None) -> float | None:
    """The ``edge`` rule's suggestion on a curve with other divisor constants (``None`` where it has none)."""
    reading = edge_reading(curve) if reading is None else reading
    return None if reading is None else reading[0] / divisor(reading[1], constants)


def default_constants():
    from lightning_cyclic.suggest import EDGE_DEPTH, EDGE_DIV

    return (*EDGE_DIV, *EDGE_DEPTH)


def interpolated_regret(oracle: dict, lr: float | None) -> float:
    """Regret at ``lr`` read off the task's one-cycle grid (mean score per lr), linear in log10(lr) between grid
    points, the end value beyond them; no suggestion: the worst grid point."""
    import numpy as np

    if lr is None:
        return oracle["worst_regret"]
    xs = [math.log10(x) for x in oracle["lrs"]]
    return float(np.interp(math.log10(lr), xs, oracle["regrets"]))


def choose_constants(curves: dict, oracles: dict, names: list[str]):
    """The candidate with the lowest mean interpolated regret over ``names`` (ties: the earlier candidate)."""
    candidates = [default_constants()] + [c for c in CANDIDATES if c != default_constants()]
    readings = {n: [edge_reading(curve) for curve in curves[n]] for n in names}

    def lr(reading, c):
        return None if reading is None else reading[0] / divisor(reading[1], c)

    def loss(c):
        return statistics.mean(
            statistics.mean(interpolated_regret(oracles[n], lr(r, c)) for r in readings[n]) for n in names
        )

    scored = [(loss(c), i, c) for i, c in enumerate(candidates)]
    best = min(scored)
    return best[2], best[0]


def loto(curves: dict, oracles: dict) -> dict:
    """Constants chosen on all tasks (in-sample) and on all but each task (held out), and their suggestions."""
    names = list(curves)
    every, every_loss = choose_constants(curves, oracles, names)
    out = {"in_sample": {"constants": every, "interpolated_loss": every_loss}, "tasks": {}}
    for name in names:
        others = [n for n in names if n != name]
        held, held_loss = choose_constants(curves, oracles, others) if others else (None, None)
        out["tasks"][name] = {
            "held_out_constants": held,  # None: no other task to choose on, the default constants stand
            "held_out_loss_on_others": held_loss,
            "lrs": {
                "default": [edge_lr(c, default_constants()) for c in curves[name]],
                "in_sample": [edge_lr(c, every) for c in curves[name]],
                "held_out": [edge_lr(c, held or default_constants()) for c in curves[name]],
            },
        }
    return out


# --- the report --------------------------------------------------------------------------------


def better(metric: str):
    return max if metric == "acc" else min


def regret_of(metric: str, oracle: float, value: float) -> float:
    """Positive = worse than the oracle: accuracy points, or % of the oracle's RMSE."""
    return 100 * (oracle - value) if metric == "acc" else 100 * (value - oracle) / oracle


def oracles_of(results: dict) -> dict:
    """Per task: grid means per schedule, the oracle, the best constant lr, the worst grid point, the noise."""
    out = {}
    for info in results["tasks"]:
        name, metric = info["name"], info["metric"]
        runs = [r for r in results["grid"] if r["task"] == name and "error" not in r]
        lrs = sorted({r["lr"] for r in runs})
        row = {"lrs": lrs, "metric": metric}
        for schedule in ("onecycle", "constant"):
            per_lr = [[r["best"] for r in runs if r["lr"] == lr and r["schedule"] == schedule] for lr in lrs]
            means = [statistics.mean(v) if v else math.nan for v in per_lr]
            pick = better(metric)(range(len(lrs)), key=lambda i: means[i])
            row[schedule] = {
                "means": means,
                "best": means[pick],
                "best_lr": lrs[pick],
                "at_edge": pick in (0, len(lrs) - 1),
                "sd": statistics.stdev(per_lr[pick]) if len(per_lr[pick]) > 1 else 0.0,
            }
        oracle = row["onecycle"]["best"]
        row["oracle"] = oracle
        row["regrets"] = [regret_of(metric, oracle, m) for m in row["onecycle"]["means"]]
        row["worst_regret"] = max(row["regrets"])
        row["noise"] = abs(regret_of(metric, oracle, oracle + row["onecycle"]["sd"]))  # one seed sd, in regret units
        out[name] = row
    return out


def finder_rows(results: dict, oracles: dict) -> dict:
    """Per task and finder: suggestions per seed, spread, regret per seed (trained), cost."""
    trained = {(r["task"], r["seed"], r["lr"]): r for r in results["trainings"] if "error" not in r}
    out = {}
    for info in results["tasks"]:
        name, metric = info["name"], info["metric"]
        oracle = oracles[name]
        tests = sorted((r for r in results["range_tests"] if r["task"] == name), key=lambda r: r["seed"])
        train_s = statistics.mean(
            r["seconds"]
            for r in results["grid"]
            if r["task"] == name and r["schedule"] == "onecycle" and "error" not in r
        )
        rows = {}
        for finder in FINDERS:
            lrs, regrets, missing, steps, seconds = [], [], [], [], []
            for test in tests:
                found = test.get("finders", {}).get(finder, {"lr": None, "reason": test.get("error", "failed")})
                lr = found["lr"]
                run = trained.get((name, test["seed"], lr)) if lr is not None else None
                lrs.append(lr)
                if run is None:
                    missing.append(found.get("reason") or "its training failed")
                    regrets.append(oracle["worst_regret"])
                else:
                    regrets.append(regret_of(metric, oracle["oracle"], run["best"]))
                steps.append(found.get("steps", 0))
                seconds.append(found.get("seconds", 0.0))
            good = [x for x in lrs if x is not None]
            rows[finder] = {
                "lrs": lrs,
                "regrets": regrets,
                "regret": statistics.mean(regrets),
                "spread": max(good) / min(good) if good and len(good) == len(lrs) else None,
                "missing": missing,
                "steps": statistics.mean(steps),
                "seconds": statistics.mean(seconds),
                "step_share": statistics.mean(steps) / info["steps"],
                "time_share": statistics.mean(seconds) / train_s,
                "note": next((t["finders"][finder].get("note") for t in tests if finder in t.get("finders", {})), None),
            }
        out[name] = rows
    return out


def fmt_lr(x) -> str:
    return "none" if x is None else f"{x:.3g}"


def fmt(x, digits=2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def pct(x) -> str:
    return "n/a" if x is None else f"{x:.2f}%"


def summarise(results: dict, oracles: dict, rows: dict) -> dict:
    """Per finder: median and worst regret (accuracy tasks, RMSE tasks), spreads, costs on long tasks."""
    tasks = results["tasks"]
    out = {}
    for finder in FINDERS:
        acc = [rows[t["name"]][finder]["regret"] for t in tasks if t["metric"] == "acc"]
        rmse = [rows[t["name"]][finder]["regret"] for t in tasks if t["metric"] == "rmse"]
        spreads = [rows[t["name"]][finder]["spread"] for t in tasks]
        long = [rows[t["name"]][finder] for t in tasks if t["steps"] >= LONG]
        out[finder] = {
            "median": statistics.median(acc) if acc else None,
            "worst": max(acc) if acc else None,
            "rmse_median": statistics.median(rmse) if rmse else None,
            "rmse_worst": max(rmse) if rmse else None,
            "spread_ok": sum(1 for s in spreads if s is not None and s <= TARGETS["spread"]),
            "worst_spread": None if None in spreads else max(spreads),
            "no_suggestion": sum(len(rows[t["name"]][finder]["missing"]) for t in tasks),
            "long_step_share": max((r["step_share"] for r in long), default=None),
            "long_time_share": max((r["time_share"] for r in long), default=None),
        }
    return out


def targets(summary: dict, n_tasks: int) -> list[tuple[str, str, bool | None]]:
    """``(target, the numbers, met)`` for the default finder; ``None``: nothing to judge it on."""
    ours = summary[DEFAULT]

    def at_most(value, limit):
        return None if value is None else value <= limit

    regret_limits = (
        ("median", f"median regret <= {TARGETS['median']} points (accuracy tasks)", fmt),
        ("worst", f"worst regret <= {TARGETS['worst']} points (accuracy tasks)", fmt),
        ("rmse_median", f"median regret <= {TARGETS['rmse_median']:g}% (RMSE tasks)", pct),
        ("rmse_worst", f"worst regret <= {TARGETS['rmse_worst']:g}% (RMSE tasks)", pct),
    )
    lines = [(title, show(ours[key]), at_most(ours[key], TARGETS[key])) for key, title, show in regret_limits]
    lines.append(
        (
            f"spread <= {TARGETS['spread']}x on every task",
            f"{ours['spread_ok']} of {n_tasks} tasks, worst {fmt(ours['worst_spread'])}x",
            ours["spread_ok"] == n_tasks,
        )
    )
    for key, label in (("median", "accuracy tasks"), ("rmse_median", "RMSE tasks")):
        if ours[key] is None:
            lines.append((f"lower median regret than every peer ({label})", "n/a", None))
            continue
        peers = {p: summary[p][key] for p in PEERS}
        shown = ", ".join(f"{SHORT[p]} {fmt(v)}" for p, v in peers.items())
        lines.append(
            (
                f"lower median regret than every peer ({label})",
                f"ours {fmt(ours[key])} vs {shown}",
                all(ours[key] < v for v in peers.values()),
            )
        )
    for key, label in (("long_step_share", "optimizer steps"), ("long_time_share", "wall time")):
        value = ours[key]
        lines.append(
            (
                f"range-test cost <= {TARGETS['cost']:.0%} of the training on tasks of >= {LONG} steps ({label})",
                "no such task" if value is None else f"at most {value:.1%}",
                at_most(value, TARGETS["cost"]),
            )
        )
    return lines


def report(results: dict) -> tuple[str, dict]:
    """The markdown of ``table.md`` and the derived numbers (also stored in results.json)."""
    oracles = oracles_of(results)
    rows = finder_rows(results, oracles)
    summary = summarise(results, oracles, rows)
    tasks = results["tasks"]
    meta = results["meta"]
    lines = [
        f"Seeds: {meta['seeds']}; {'QUICK smoke run (1 epoch, 3 grid lrs): not a result. ' if meta['quick'] else ''}"
        f"regret in accuracy points (RMSE tasks: % of the oracle's RMSE), positive = worse than the oracle.",
        "",
        "### Tasks and oracles",
        "",
        "| task | data | model | optimizer | batch | epochs | steps | val | metric | grid | one-cycle oracle "
        "(max_lr) | best constant lr (lr) | noise: 1 seed's sd at the oracle, in regret units |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    warnings = []
    for t in tasks:
        o = oracles[t["name"]]
        unit = 100 if t["metric"] == "acc" else 1
        digits = 1 if t["metric"] == "acc" else 2
        one, const = o["onecycle"], o["constant"]
        for label, part in (("one-cycle", one), ("constant-lr", const)):
            if part["at_edge"]:
                where = f"the best {label} grid lr {part['best_lr']:.3g}"
                warnings.append(f"{t['name']}: {where} is at an edge of the grid")
        edge = " (grid edge!)"
        lines.append(
            f"| {t['name']} | {t['data']} | {t['model']} | {t['optimizer']} | {t['batch']} | {t['epochs']} "
            f"| {t['steps']} | {'yes' if t['val'] else 'no'} | {t['metric']} "
            f"| {o['lrs'][0]:.3g}..{o['lrs'][-1]:.3g} ({len(o['lrs'])}) "
            f"| {unit * one['best']:.{digits}f} ({one['best_lr']:.3g}){edge if one['at_edge'] else ''} "
            f"| {unit * const['best']:.{digits}f} ({const['best_lr']:.3g}){edge if const['at_edge'] else ''} "
            f"| {fmt(o['noise'])} |"
        )
    header = " | ".join(SHORT[f] for f in FINDERS)
    lines += [
        "",
        "### Regret of one-cycle at each finder's suggestion (mean over seeds; * = a seed without a suggestion, "
        "counted as the task's worst grid point)",
        "",
        f"| task | {header} |",
        "|---|" + "---|" * len(FINDERS),
    ]
    for t in tasks:
        cells = []
        for f in FINDERS:
            r = rows[t["name"]][f]
            cells.append(fmt(r["regret"]) + ("%" if t["metric"] == "rmse" else "") + ("*" if r["missing"] else ""))
        lines.append(f"| {t['name']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "On tasks without a validation loader (val: no) the `/val` columns hold LRFinder's default there "
        "(`evaluate='auto'` reads the training loss): the same curve as `/train`.",
    ]
    lines += ["", "### Spread of the suggestions over seeds (max/min)", "", f"| task | {header} |"]
    lines.append("|---|" + "---|" * len(FINDERS))
    for t in tasks:
        cells = [fmt(rows[t["name"]][f]["spread"]) + "x" if rows[t["name"]][f]["spread"] else "n/a" for f in FINDERS]
        lines.append(f"| {t['name']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "### Suggested lrs per seed",
        "",
        f"| task | {header} |",
        "|---|" + "---|" * len(FINDERS),
    ]
    for t in tasks:
        cells = [", ".join(fmt_lr(x) for x in rows[t["name"]][f]["lrs"]) for f in FINDERS]
        lines.append(f"| {t['name']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "### Range-test cost: optimizer steps, seconds, share of the one-cycle training (steps; time)",
        "",
        f"| task | {header} |",
        "|---|" + "---|" * len(FINDERS),
    ]
    for t in tasks:
        cells = [
            f"{r['steps']:.0f}, {r['seconds']:.1f}s ({r['step_share']:.0%}; {r['time_share']:.0%})"
            for r in (rows[t["name"]][f] for f in FINDERS)
        ]
        lines.append(f"| {t['name']} | " + " | ".join(cells) + " |")
    n = len(tasks)
    lines += [
        "",
        "### Summary per finder",
        "",
        "| finder | median regret (acc) | worst (acc) | median (RMSE) | worst (RMSE) | spread <= 1.5x "
        f"| seeds without suggestion | cost on tasks >= {LONG} steps (steps; time, worst task) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in FINDERS:
        s = summary[f]
        cost = "n/a" if s["long_step_share"] is None else f"{s['long_step_share']:.1%}; {s['long_time_share']:.1%}"
        lines.append(
            f"| {f} | {fmt(s['median'])} | {fmt(s['worst'])} | {pct(s['rmse_median'])} | {pct(s['rmse_worst'])} "
            f"| {s['spread_ok']} of {n} | {s['no_suggestion']} | {cost} |"
        )
    peers = None
    if results.get("peers"):
        more, peers = peer_lines(results, oracles, rows)
        lines += more
    lines += ["", f"### Targets ({DEFAULT}: LRFinder's defaults)", "", "| target | measured | |", "|---|---|---|"]
    for label, measured, met in targets(summary, n):
        mark = "n/a" if met is None else ("met" if met else "**missed**")
        lines.append(f"| {label} | {measured} | {mark} |")
    lines += confidence_lines(results, rows)
    if results.get("loto"):
        lines += loto_lines(results, oracles)
    lines += divisor_lines(results, oracles)
    if warnings:
        lines += ["", "### Warnings", ""] + [f"- {w}" for w in warnings]
    missing = [
        f"- {t['name']}, {f}: " + "; ".join(sorted(set(rows[t["name"]][f]["missing"])))
        for t in tasks
        for f in FINDERS
        if rows[t["name"]][f]["missing"]
    ]
    if missing:
        lines += ["", "### Seeds without a suggestion (counted as the task's worst grid point)", "", *missing]
    errors = [r for r in results["grid"] + results["trainings"] + results["range_tests"] if "error" in r]
    if errors:
        lines += ["", f"### {len(errors)} jobs failed", ""]
        lines += [f"- {r['kind']} {r['task']} seed {r['seed']}: {r['error'].strip().splitlines()[-1]}" for r in errors]
    derived = {"oracles": oracles, "finders": rows, "summary": summary, "peers": peers}
    return "\n".join(lines), derived


def peer_rows(results: dict, oracles: dict) -> dict:
    """Per task and learning-rate-free method: regret per seed against the one-cycle oracle. A seed whose run
    failed counts as the task's worst grid point (as a finder's missing suggestion does); a method with no run on
    a task (not run yet, or its data is not installed) has no regret there."""
    seeds = range(results["meta"]["seeds"])
    out = {}
    for info in results["tasks"]:
        name, metric = info["name"], info["metric"]
        oracle = oracles[name]
        runs = {(r["method"], r["seed"]): r for r in results.get("peers", []) if r["task"] == name}
        rows = {}
        for method in results["meta"].get("methods", METHODS):
            regrets, failed = [], []
            for seed in seeds:
                run = runs.get((method, seed))
                if run is None:
                    continue
                if "error" in run:
                    failed.append(run["error"].strip().splitlines()[-1])
                    regrets.append(oracle["worst_regret"])
                else:
                    regrets.append(regret_of(metric, oracle["oracle"], run["best"]))
            complete = len(regrets) == len(seeds)
            rows[method] = {
                "regrets": regrets,
                "regret": statistics.mean(regrets) if complete else None,
                "failed": failed,
                "d": [runs[(method, s)].get("d") for s in seeds if (method, s) in runs],
            }
        out[name] = rows
    return out


def peer_summary(tasks: list[dict], rows: dict, columns: list[str], key=lambda row: row["regret"]) -> dict:
    """Per column: median and worst regret and how many tasks are within 1 point (1% on RMSE tasks) of the
    oracle, over the tasks where it has a regret."""
    out = {}
    for column in columns:
        part = {}
        for metric in ("acc", "rmse"):
            values = [key(rows[t["name"]][column]) for t in tasks if t["metric"] == metric]
            values = [v for v in values if v is not None]
            n = sum(t["metric"] == metric for t in tasks)
            part[metric] = {
                "median": statistics.median(values) if values else None,
                "worst": max(values) if values else None,
                "within_1": sum(v <= 1.0 for v in values),
                "tasks": len(values),
                "of": n,
            }
        out[column] = part
    return out


def peer_lines(results: dict, oracles: dict, finders: dict) -> tuple[list[str], dict]:
    """The learning-rate-free optimizers against the one-cycle oracle, beside the finders."""
    rows = peer_rows(results, oracles)
    methods = list(results["meta"].get("methods", METHODS))
    tasks = results["tasks"]
    lines = [
        "",
        "### Learning-rate-free optimizers against the one-cycle oracle",
        "",
        "Each trained as the grid is (the seed's initial weights and data order, the task's epochs and weight "
        "decay, the best epoch on the held-out split), with no lr to choose: "
        + "; ".join(f"**{m}**: {METHODS.get(m, m)}" for m in methods)
        + ". Regret as for the finders (mean over seeds; * = a seed whose run failed, counted as the task's "
        "worst grid point; n/a = not run).",
        "",
        "| task | " + " | ".join(methods) + " |",
        "|---|" + "---|" * len(methods),
    ]
    for t in tasks:
        cells = []
        for m in methods:
            r = rows[t["name"]][m]
            unit = "%" if t["metric"] == "rmse" else ""
            cells.append("n/a" if r["regret"] is None else fmt(r["regret"]) + unit + ("*" if r["failed"] else ""))
        lines.append(f"| {t['name']} | " + " | ".join(cells) + " |")
    summary = peer_summary(tasks, rows, methods)
    summary.update(peer_summary(tasks, finders, FINDERS))
    lines += [
        "",
        "### Summary: finders and learning-rate-free optimizers",
        "",
        "Over the tasks where each has a regret; within 1 = regret <= 1 point (RMSE tasks: 1%).",
        "",
        "| method | median regret (acc) | worst (acc) | tasks within 1 point (acc) | median (RMSE) | worst (RMSE) "
        "| tasks within 1% (RMSE) |",
        "|---|---|---|---|---|---|---|",
    ]
    for column in [*FINDERS, *methods]:
        acc, rmse = summary[column]["acc"], summary[column]["rmse"]
        lines.append(
            f"| {column} | {fmt(acc['median'])} | {fmt(acc['worst'])} | {acc['within_1']} of {acc['tasks']} "
            f"| {pct(rmse['median'])} | {pct(rmse['worst'])} | {rmse['within_1']} of {rmse['tasks']} |"
        )
    lines += held_out_lines(tasks, rows, finders, methods)
    failed = [
        f"- {t['name']}, {m}: " + "; ".join(sorted(set(rows[t["name"]][m]["failed"])))
        for t in tasks
        for m in methods
        if rows[t["name"]][m]["failed"]
    ]
    if failed:
        lines += ["", "Runs that failed (counted as the task's worst grid point):", "", *failed]
    not_run = [t["name"] for t in tasks if all(rows[t["name"]][m]["regret"] is None for m in methods)]
    if not_run:
        lines += ["", f"Not run (yet, or their data is not installed here): {', '.join(not_run)}."]
    return lines, {"rows": rows, "summary": summary}


def held_out_lines(tasks: list[dict], rows: dict, finders: dict, methods: list[str]) -> list[str]:
    """The summary again, split: the tasks the rule and its second signal were developed on, and the tasks held
    out from all tuning (``corpus.HELD_OUT``). Accuracy tasks (the RMSE ones are all earlier tasks)."""
    groups = {
        "earlier": [t for t in tasks if t["name"] not in corpus.HELD_OUT and t["metric"] == "acc"],
        "held out": [t for t in tasks if t["name"] in corpus.HELD_OUT and t["metric"] == "acc"],
    }
    if not groups["held out"]:
        return []
    names = {k: ", ".join(t["name"] for t in v) for k, v in groups.items()}
    lines = [
        "",
        "### Held out: the tasks nothing was tuned on",
        "",
        f"Accuracy tasks only; regret in points. Earlier ({len(groups['earlier'])}): the tasks the `edge` rule, its "
        f"constants and the short trials were chosen on. Held out ({len(groups['held out'])}): {names['held out']}.",
        "",
        "| method | earlier: median | earlier: worst | held out: median | held out: worst | held out: within 1 point |",
        "|---|---|---|---|---|---|",
    ]
    for column in [DEFAULT, "torch-lr-finder", *methods]:
        source = finders if column in finders[tasks[0]["name"]] else rows
        cells = []
        for group in groups.values():
            values = [source[t["name"]][column]["regret"] for t in group]
            values = [v for v in values if v is not None]
            cells.append((statistics.median(values), max(values), sum(v <= 1.0 for v in values), len(values))
                         if values else None)  # fmt: skip
        earlier, held = cells
        lines.append(
            f"| {column} | {fmt(earlier[0]) if earlier else 'n/a'} | {fmt(earlier[1]) if earlier else 'n/a'} "
            f"| {fmt(held[0]) if held else 'n/a'} | {fmt(held[1]) if held else 'n/a'} "
            f"| {f'{held[2]} of {held[3]}' if held else 'n/a'} |"
        )
    return lines


def confidence_rows(results: dict, rows: dict) -> list[tuple[str, int, object, float]]:
    """(task, seed, Confidence, regret) for the default finder on the accuracy tasks (regret in pp): the
    confidence read off the curve it read (the validation curve; the training curve where the task has none)."""
    from lightning_cyclic.suggest import confidence, finite_prefix

    accuracy = {t["name"] for t in results["tasks"] if t["metric"] == "acc"}
    out = []
    for test in results["range_tests"]:
        curves = test.get("curves", {})
        curve = curves.get("val") or curves.get("train")
        if not curve or test["task"] not in rows or test["task"] not in accuracy:
            continue
        seeds = sorted(r["seed"] for r in results["range_tests"] if r["task"] == test["task"])
        lrs, losses = finite_prefix(curve["lrs"], curve["losses"])
        if len(lrs) < 10:
            continue
        regret = rows[test["task"]][DEFAULT]["regrets"][seeds.index(test["seed"])]
        out.append((test["task"], test["seed"], confidence(lrs, losses, "edge"), regret))
    return out


def confidence_lines(results: dict, rows: dict) -> list[str]:
    """Is low confidence where the regret is? Regret of the default finder, by the confidence it reported."""
    pairs = confidence_rows(results, rows)
    if not pairs:
        return []
    lines = [
        "",
        f"### Confidence against regret ({DEFAULT}, every classification task and seed)",
        "",
        "| confidence | range tests | median regret (pp) | worst | regret > 1 pp |",
        "|---|---|---|---|---|",
    ]
    for level in ("high", "medium", "low"):
        got = [r for _, _, c, r in pairs if c.level == level]
        if got:
            big = sum(r > 1 for r in got)
            lines.append(
                f"| {level} | {len(got)} | {fmt(statistics.median(got))} | {fmt(max(got))} | {big} of {len(got)} |"
            )
        else:
            lines.append(f"| {level} | 0 | - | - | - |")
    lines += trials_by_confidence(results, pairs)
    scores, regrets = [c.score for _, _, c, _ in pairs], [r for *_, r in pairs]
    rho = spearman(scores, regrets)
    worst = max(pairs, key=lambda p: p[3])
    lines += [
        "",
        f"Spearman correlation of the confidence score with the regret: {fmt(rho)} over {len(pairs)} range tests "
        f"(negative: lower confidence, higher regret). The worst regret ({fmt(worst[3])} pp, {worst[0]} seed "
        f"{worst[1]}) came with {worst[2].describe()}.",
    ]
    return lines


def trials_by_confidence(results: dict, pairs: list) -> list[str]:
    """What the short trials (``auto-trials``) change against the curve alone (``auto``), seed by seed, split by
    the confidence the curve's reading had: the cost of always running them where the curve was sure, and what
    they buy where it was not. Both trained in the fit, same seed; regret in points."""
    oracles = oracles_of(results)
    peers = {(r["task"], r["seed"], r["method"]): r for r in results.get("peers", []) if "error" not in r}
    metric = {t["name"]: t["metric"] for t in results["tasks"]}
    out = ["", "Regret of `auto` (the curve alone) and `auto-trials` (with the short trials), the same seeds, by the "
           "curve's confidence:", "", "| confidence | seeds | auto: median / worst | auto-trials: median / worst | "
           "trials better by > 1 pp | worse by > 1 pp |", "|---|---|---|---|---|---|"]  # fmt: skip
    for level in ("high", "medium", "low"):
        both = []
        for task, seed, c, _ in pairs:
            a, b = peers.get((task, seed, "auto")), peers.get((task, seed, "auto-trials"))
            if c.level == level and a and b:
                o = oracles[task]["oracle"]
                both.append((regret_of(metric[task], o, a["best"]), regret_of(metric[task], o, b["best"])))
        if not both:
            out.append(f"| {level} | 0 | - | - | - | - |")
            continue
        xs, ys = [x for x, _ in both], [y for _, y in both]
        out.append(
            f"| {level} | {len(both)} | {fmt(statistics.median(xs))} / {fmt(max(xs))} "
            f"| {fmt(statistics.median(ys))} / {fmt(max(ys))} | {sum(y < x - 1 for x, y in both)} "
            f"| {sum(y > x + 1 for x, y in both)} |"
        )
    return out


def spearman(xs: list[float], ys: list[float]) -> float:
    def ranks(values: list[float]) -> list[float]:
        order = sorted(range(len(values)), key=values.__getitem__)
        out = [0.0] * len(values)
        i = 0
        while i < len(order):  # ties share the mean of their ranks
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2
            i = j + 1
        return out

    rx, ry = ranks(xs), ranks(ys)
    mx, my = statistics.mean(rx), statistics.mean(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    var = math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
    return cov / var if var else float("nan")


def loto_lines(results: dict, oracles: dict) -> list[str]:
    trained = {(r["task"], r["seed"], r["lr"]): r["best"] for r in results["trainings"] if "error" not in r}
    info = results["loto"]
    tested = [r for r in results["range_tests"] if "error" not in r]
    seeds = {t["name"]: sorted(r["seed"] for r in tested if r["task"] == t["name"]) for t in results["tasks"]}

    untrained = set()  # (task, column) with a choice not trained (yet): its interpolated regret stands in

    def regret(name, lrs, interpolate, column=None):
        o = oracles[name]
        values = []
        for seed, lr in zip(seeds[name], lrs):
            if interpolate or lr is None:
                values.append(interpolated_regret(o, lr) if interpolate else o["worst_regret"])
            elif (name, seed, lr) not in trained:
                values.append(interpolated_regret(o, lr))
                untrained.add((name, column))
            else:
                values.append(regret_of(o["metric"], o["oracle"], trained[(name, seed, lr)]))
        return statistics.mean(values)

    every = info["in_sample"]["constants"]
    lines = [
        "",
        "### Leave-one-task-out check of the edge rule's constants",
        "",
        f"Constants (EDGE_DIV, EDGE_DEPTH) chosen among {len(CANDIDATES)} candidates by the mean regret over the "
        "tasks, computed by interpolating each task's one-cycle grid curve (score vs log lr) at the candidate's "
        "suggestion (end values beyond the grid); then scored by training one-cycle at the suggestion, per seed. "
        f"Default: {fmt_constants(default_constants())}; in-sample (chosen on all tasks): {fmt_constants(every)}.",
        "",
        "| task | held-out constants (chosen on the others) | default: trained (interpolated) "
        "| in-sample: trained (interp.) | held-out: trained (interp.) |",
        "|---|---|---|---|---|",
    ]
    columns = {"default": [], "in_sample": [], "held_out": []}
    for t in results["tasks"]:
        name = t["name"]
        row = info["tasks"].get(name)
        if row is None:
            continue
        cells = []
        for key in columns:
            real, approx = regret(name, row["lrs"][key], False, key), regret(name, row["lrs"][key], True)
            columns[key].append((t["metric"], real))
            unit = "%" if t["metric"] == "rmse" else ""
            mark = "~" if (name, key) in untrained else ""
            cells.append(f"{mark}{fmt(real)}{unit} ({fmt(approx)}{unit})")
        lines.append(f"| {name} | {fmt_constants(row['held_out_constants'])} | " + " | ".join(cells) + " |")
    cells = []
    for values in columns.values():
        acc = [v for m, v in values if m == "acc"]
        rmse = [v for m, v in values if m == "rmse"]
        part = f"acc: median {fmt(statistics.median(acc)) if acc else 'n/a'}, worst {fmt(max(acc)) if acc else 'n/a'}"
        if rmse:
            part += f"; RMSE: median {fmt(statistics.median(rmse))}%, worst {fmt(max(rmse))}%"
        cells.append(part)
    lines.append("| **summary** | | " + " | ".join(cells) + " |")
    if untrained:
        lines += ["", "~: a choice not trained yet (`--kinds train` trains it); its interpolated regret stands in."]
    return lines


def good_window(oracle: dict, tolerance: float) -> tuple[float, float]:
    """The lrs around the oracle's best whose interpolated regret is within ``tolerance`` of the best (the
    contiguous stretch of a 200-point log grid that holds the best)."""
    import numpy as np

    xs = np.log10(oracle["lrs"])
    fine = np.linspace(xs[0], xs[-1], 200)
    regrets = np.interp(fine, xs, oracle["regrets"])
    best = int(regrets.argmin())
    ok = regrets <= regrets[best] + tolerance
    lo = hi = best
    while lo > 0 and ok[lo - 1]:
        lo -= 1
    while hi < len(fine) - 1 and ok[hi + 1]:
        hi += 1
    return 10 ** fine[lo], 10 ** fine[hi]


def divisor_lines(results: dict, oracles: dict) -> list[str]:
    """Which divisors of the edge would have put each task near its oracle: is there one for every task?"""
    from lightning_cyclic.suggest import edge_divisor

    lines = [
        "",
        "### Which divisor of the edge each task wanted",
        "",
        "The edge rule divides where the curve becomes unstable by 1.5 to 3 (more, the further the loss fell). "
        "Per task: the fall, the divisor the rule used, and the divisors that would have put every seed within "
        "the task's noise (one seed's sd, at least 0.5 points or 0.5%) of the oracle, read off the interpolated "
        "one-cycle grid.",
        "",
        "| task | fall (nats), per seed | divisor used | divisors within the noise, every seed |",
        "|---|---|---|---|",
    ]
    windows, falls = {}, {}
    for t in results["tasks"]:
        name, o = t["name"], oracles[t["name"]]
        curves = [
            r["curves"]["val" if t["val"] else "train"]
            for r in sorted(results["range_tests"], key=lambda r: r["seed"])
            if r["task"] == name and "error" not in r
        ]
        readings = [edge_reading(c) for c in curves]
        if not readings or any(r is None for r in readings):
            continue
        lo, hi = good_window(o, max(0.5, o["noise"]))
        window = (max(at / hi for at, _ in readings), min(at / lo for at, _ in readings))
        windows[name] = window
        falls[name] = statistics.mean(d for _, d in readings)
        depths = ", ".join("inf" if not math.isfinite(d) else f"{d:.2f}" for _, d in readings)
        used = ", ".join(f"{edge_divisor(d):.2f}" for _, d in readings)
        cell = f"{window[0]:.2f} to {window[1]:.2f}" if window[0] <= window[1] else "none (the seeds disagree)"
        lines.append(f"| {name} | {depths} | {used} | {cell} |")
    if windows:
        need_at_least = max(windows, key=lambda n: windows[n][0])
        need_at_most = min(windows, key=lambda n: windows[n][1])
        low, high = windows[need_at_least][0], windows[need_at_most][1]
        if low <= high:
            verdict = f"One divisor suits every task: any in {low:.2f} to {high:.2f}."
        else:
            verdict = (
                f"No one divisor suits every task: {need_at_least} needs at least {low:.2f}, {need_at_most} at "
                f"most {high:.2f} (falls of {falls[need_at_least]:.2f} and {falls[need_at_most]:.2f} nats)."
            )
        lines += ["", verdict]
    return lines


def fmt_constants(c) -> str:
    if c is None:
        return "default (no other task)"
    return f"DIV ({c[0]:g}, {c[1]:g}), DEPTH ({c[2]:g}, {c[3]:g})"


def plot(results: dict, derived: dict, path: Path):
    """Regret per task (rows) for every finder (markers), symlog x axis from 0, targets dashed."""
    from lightning_cyclic.plot import pyplot

    plt = pyplot()
    tasks = results["tasks"]
    rows = derived["finders"]
    fig, ax = plt.subplots(figsize=(13, max(5.0, 1.2 + 0.7 * len(tasks))))
    colours = plt.get_cmap("tab10").colors
    styles = {}
    for i, f in enumerate(RULES):
        styles[f"ours {f} (val)"] = dict(marker="os^v"[i], color=colours[i], fillstyle="full")
        styles[f"ours {f} (train)"] = dict(marker="os^v"[i], color=colours[i], fillstyle="none")
    styles[MORE_VAL] = dict(marker="*", color=colours[0], fillstyle="full")
    for i, f in enumerate(PEERS):
        styles[f] = dict(marker="DXP"[i], color=colours[4 + i], fillstyle="full")
    offsets = {f: ((len(FINDERS) - 1) / 2 - i) * 0.07 for i, f in enumerate(FINDERS)}  # legend order, top down
    top = 0.0
    for f in FINDERS:
        ys = [len(tasks) - 1 - j + offsets[f] for j in range(len(tasks))]
        xs = [max(rows[t["name"]][f]["regret"], 0.0) for t in tasks]
        top = max(top, *xs)
        ax.plot(xs, ys, linestyle="none", markersize=7, label=f, **styles[f])
    # ours as a user runs it now, trained in the fit: the range test and its short trials (a peer row)
    peer_rows_ = (derived.get("peers") or {}).get("rows") or {}
    done = [(j, peer_rows_[t["name"]]["auto-trials"]["regret"]) for j, t in enumerate(tasks)
            if t["name"] in peer_rows_ and "auto-trials" in peer_rows_[t["name"]]]  # fmt: skip
    done = [(j, r) for j, r in done if r is not None]
    if done:
        ys = [len(tasks) - 1 - j - 0.42 for j, _ in done]
        xs = [max(r, 0.0) for _, r in done]
        top = max(top, *xs)
        ax.plot(xs, ys, linestyle="none", marker="*", markersize=13, color="black",
                label="ours in the fit: auto with its short trials")  # fmt: skip
    for j in range(len(tasks) - 1):
        ax.axhline(j + 0.5, color="0.85", linewidth=0.8, gid="separator")  # between tasks: not data
    ax.set_yticks(range(len(tasks)))
    ax.set_yticklabels([t["name"] + (" (RMSE %)" if t["metric"] == "rmse" else "") for t in reversed(tasks)])
    ax.set_ylim(-0.5, len(tasks) - 0.5)
    ax.set_ylabel("task")
    ax.set_xscale("symlog", linthresh=1.0, linscale=0.6)
    ticks = [t for t in (0, 0.3, 1, 1.5, 3, 10, 30, 100, 300, 1000) if t <= max(top, 10) * 1.5]
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:g}" for t in ticks])
    ax.set_xlim(0, max(top, 10) * 1.3)
    ax.axvline(TARGETS["median"], color="0.3", linestyle="--", linewidth=1, label="target: median 0.3 points")
    ax.axvline(TARGETS["worst"], color="0.3", linestyle=":", linewidth=1.2, label="target: worst 1.5 points")
    ax.set_xlabel(
        "regret of one-cycle at the suggestion (accuracy points; RMSE tasks: % of the oracle's RMSE; "
        "below 0 shown at 0)"
    )
    ax.set_title(
        "Range-test suggestions, and auto with its short trials, against the one-cycle oracle "
        "(0 = as good as the best grid max_lr)"
    )
    ax.grid(alpha=0.3, axis="x")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=10, title="finder (hollow: training loss)")
    ax.tick_params(labelsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return fig


# --- the journal: every finished job, one JSON line, so that a run resumes where it stopped ----------------------

KINDS = ("range_tests", "grid", "train", "peer")
# What makes two jobs the same job. ``spec`` fingerprints the task's definition (data, model, optimizer, batch,
# validation loader), so that a changed task is trained again rather than read from an older line.
KEY = ("kind", "task", "spec", "seed", "epochs", "lr", "schedule", "method")
SPEC_FIELDS = ("data", "model", "optimizer", "batch", "val", "model_kwargs", "data_kwargs")


def spec_of(task: dict) -> str:
    """A short fingerprint of what a task trains (``asdict(task)`` or the task entry of a results.json)."""
    import hashlib

    text = json.dumps({k: task[k] for k in SPEC_FIELDS}, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def job_key(job: dict) -> str:
    return json.dumps([job.get(k) for k in KEY])


class Journal:
    """``jobs.jsonl`` in the output folder: one line per finished job (failed ones too, with their error), appended
    as each finishes. A job whose line is there, without an error, is not run again; a failed one is."""

    def __init__(self, path: Path):
        self.path = path
        self.records: dict[str, dict] = {}
        if path.exists():
            text = path.read_text()
            if text and not text.endswith("\n"):  # the last line of a killed run, cut short: finish it
                with path.open("a") as f:
                    f.write("\n")
            for line in text.splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # that cut-short line: its job runs again
                self.records[job_key(record)] = record

    def get(self, job: dict) -> dict | None:
        return self.records.get(job_key(job))

    def finished(self, job: dict) -> bool:
        record = self.get(job)
        return record is not None and "error" not in record

    def add(self, *records: dict) -> None:
        with self.path.open("a") as f:
            for record in records:
                f.write(json.dumps(record) + "\n")
                self.records[job_key(record)] = record
            f.flush()
            os.fsync(f.fileno())


def seed_journal(journal: Journal, results_path: Path) -> int:
    """Once, into a journal that does not exist yet: the jobs of an earlier full run's results.json (not a
    ``--quick`` one), so that its tasks are reused rather than trained again. Returns how many."""
    if journal.path.exists() or not results_path.exists():
        return 0
    results = json.loads(results_path.read_text())
    if results["meta"].get("quick"):
        return 0
    specs = {t["name"]: spec_of(t) for t in results["tasks"]}
    records = [
        dict(r, spec=specs[r["task"]])
        for part in ("range_tests", "grid", "trainings", "peers")
        for r in results.get(part, [])
    ]
    journal.add(*records)
    return len(records)


def run_jobs(jobs: list[dict], processes: int, journal: Journal, label: str) -> None:
    """``work`` over ``jobs`` in ``processes`` spawned processes, each result written to the journal as it comes."""
    if not jobs:
        return
    start = time.perf_counter()
    pool = None
    if processes > 1 and len(jobs) > 1:
        import multiprocessing as mp

        pool = mp.get_context("spawn").Pool(min(processes, len(jobs)))
        results = pool.imap_unordered(work, jobs)
    else:
        results = map(work, jobs)
    try:
        for i, record in enumerate(results, 1):
            journal.add(record)
            elapsed = time.perf_counter() - start
            what = " ".join(str(record[k]) for k in ("kind", "task", "seed", "lr", "schedule", "method") if k in record)
            print(
                f"{label} {i}/{len(jobs)}: {what}: {record['wall']:.0f}s{' FAILED' if 'error' in record else ''}; "
                f"about {elapsed / i * (len(jobs) - i) / 60:.0f} min left",
                flush=True,
            )
    finally:
        if pool is not None:
            pool.terminate()


# --- main -------------------------------------------------------------------------------------


def estimated_cost(task: corpus.Task, epochs: int) -> float:
    """A rough relative cost of one training, to start the long jobs first."""
    per_step = {"mlp": 1.0, "plain-mlp": 1.0, "cnn": 3.0, "plain-cnn": 6.0, "cnn1d": 3.0, "gru": 3.0, "resnet": 10.0}
    per_step["transformer"] = 10.0 * task.model_kwargs.get("layers", 1)
    return corpus.total_steps(task, epochs) * per_step[task.model] + 300


class Plan:
    """The jobs of a study: seeds, epochs and grids (``--quick`` shrinks them), for any task of the corpus."""

    def __init__(self, seeds: int, quick: bool, methods: list[str]):
        self.seeds, self.quick, self.methods = list(range(seeds)), quick, methods

    def epochs(self, t: corpus.Task) -> int:
        return 1 if self.quick else t.epochs

    def grid(self, t: corpus.Task) -> list[float]:
        return t.lrs[:: max(1, (len(t.lrs) - 1) // 2)][:3] if self.quick else t.lrs

    def base(self, t: corpus.Task, kind: str, seed: int) -> dict:
        return {"kind": kind, "task": t.name, "spec": spec_of(asdict(t)), "seed": seed, "epochs": self.epochs(t)}

    def range_tests(self, t: corpus.Task) -> list[dict]:
        return [self.base(t, "range_tests", s) for s in self.seeds]

    def grid_jobs(self, t: corpus.Task) -> list[dict]:
        return [
            dict(self.base(t, "grid", s), lr=lr, schedule=schedule)
            for lr in self.grid(t)
            for schedule in ("onecycle", "constant")
            for s in self.seeds
        ]

    def train(self, t: corpus.Task, seed: int, lr: float) -> dict:
        return dict(self.base(t, "train", seed), lr=lr, schedule="onecycle")

    def peers(self, t: corpus.Task) -> list[dict]:
        return [dict(self.base(t, "peer", s), method=m) for m in self.methods for s in self.seeds]


def collect(plan: Plan, journal: Journal, candidates: list[corpus.Task], meta: dict) -> tuple[dict, list[dict]]:
    """The results of every candidate task whose range tests and grid are all in the journal, and the one-cycle
    trainings (at every suggestion and leave-one-task-out choice) those results want."""
    scope = [t for t in candidates if all(journal.get(j) for j in plan.range_tests(t) + plan.grid_jobs(t))]

    def steps(t):
        runs = [journal.get(j) for j in plan.grid_jobs(t)]
        done = [r["steps"] for r in runs if r and "steps" in r and r["schedule"] == "onecycle"]
        return done[0] if done else corpus.total_steps(t, plan.epochs(t))

    results = {
        "meta": meta,
        "tasks": [dict(asdict(t), epochs=plan.epochs(t), metric=t.metric, steps=steps(t)) for t in scope],
        "range_tests": [journal.get(j) for t in scope for j in plan.range_tests(t)],
        "grid": [journal.get(j) for t in scope for j in plan.grid_jobs(t)],
        "trainings": [],
        # every method's runs in the journal, whichever ``--methods`` ran this time
        "peers": [
            r for t in scope for j in Plan(len(plan.seeds), plan.quick, list(METHODS)).peers(t) if (r := journal.get(j))
        ],
    }
    if not scope:
        return results, []
    oracles = oracles_of(results)
    curves = {
        t.name: [
            r["curves"]["val" if t.val else "train"]
            for r in sorted(results["range_tests"], key=lambda r: r["seed"])
            if r["task"] == t.name and "error" not in r
        ]
        for t in scope
    }
    results["loto"] = loto({k: v for k, v in curves.items() if v}, oracles)
    wanted = set()
    for r in results["range_tests"]:
        for f in r.get("finders", {}).values():
            if f["lr"] is not None:
                wanted.add((r["task"], r["seed"], f["lr"]))
    for name, row in results["loto"]["tasks"].items():
        tested = sorted(r["seed"] for r in results["range_tests"] if r["task"] == name and "error" not in r)
        for lrs in row["lrs"].values():
            wanted.update((name, seed, lr) for seed, lr in zip(tested, lrs) if lr is not None)
    known = {t.name: t for t in scope}
    trains = [plan.train(known[name], seed, lr) for name, seed, lr in sorted(wanted)]
    results["trainings"] = [r for j in trains if (r := journal.get(j))]
    return results, trains


def main() -> None:
    parser = arguments(__doc__, HERE, seeds=3, quick="2 tiny tasks, 3 grid lrs, 1 seed, 1 epoch: a smoke run")
    parser.add_argument("--tasks", default=None, help="comma-separated task names to run (default: all available)")
    parser.add_argument(
        "--kinds",
        default=",".join(KINDS),
        help="comma-separated kinds of job to run: range_tests (every finder), grid (the one-cycle and constant-lr "
        "grid), train (one-cycle at the suggestions), peer (the learning-rate-free optimizers); default: all",
    )
    parser.add_argument("--methods", default=",".join(METHODS), help="the peer methods (default: all)")
    parser.add_argument("--report-only", action="store_true", help="rebuild table.md and regret.png from results.json")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        results = json.loads((args.out / "results.json").read_text())
        finish(results, args.out)
        return
    kinds = args.kinds.split(",") if args.kinds else []
    methods = args.methods.split(",") if args.methods else []
    for given, allowed, option in ((kinds, KINDS, "--kinds"), (methods, METHODS, "--methods")):
        if set(given) - set(allowed):
            parser.error(f"{option}: unknown {sorted(set(given) - set(allowed))}; choose from: {', '.join(allowed)}")
    silence()
    start = time.perf_counter()
    names = args.tasks.split(",") if args.tasks else (list(QUICK_TASKS) if args.quick else None)
    known = {t.name: t for t in corpus.TASKS}
    unknown = [n for n in names or [] if n not in known]
    if unknown:
        parser.error(f"unknown tasks {unknown}; choose from: {', '.join(known)}")
    chosen = [known[n] for n in names] if names else corpus.TASKS
    tasks = corpus.available(chosen)
    for t in chosen:
        if t not in tasks:
            print(f"{t.name} not run: its data ({t.needs}) is not installed")
    plan = Plan(1 if args.quick else args.seeds, args.quick, methods)
    journal = Journal(args.out / "jobs.jsonl")
    seeded = 0 if args.quick else seed_journal(journal, args.out / "results.json")
    if seeded:
        print(f"{journal.path}: started from the {seeded} jobs of {args.out / 'results.json'}")
    # the report covers every task whose range tests and grid are done; --tasks and --kinds say what runs now
    candidates = chosen if args.quick else corpus.TASKS
    ran = []

    def pending(jobs):
        todo = [j for j in jobs if not journal.finished(j)]
        ran.extend(todo)
        return todo

    cost = {t.name: estimated_cost(t, plan.epochs(t)) for t in tasks}
    first = [j for t in tasks for j in (plan.range_tests(t) if "range_tests" in kinds else [])]
    first += [j for t in tasks for j in (plan.grid_jobs(t) if "grid" in kinds else [])]
    todo = pending(first)
    todo.sort(key=lambda j: -(cost[j["task"]] * (5 if j["kind"] == "range_tests" else 1)))
    size = f"{len(tasks)} tasks x {len(plan.seeds)} seeds"
    print(f"{size}: {len(first)} range-test and grid jobs, {len(first) - len(todo)} done before", flush=True)
    run_jobs(todo, args.jobs, journal, "range tests and grid")

    meta = {
        "quick": args.quick,
        "seeds": len(plan.seeds),
        "processes": args.jobs,
        "cpus": os.cpu_count(),
        "candidates": CANDIDATES,
        "default_constants": default_constants(),
        "methods": METHODS,
        "versions": versions(),
    }
    results, trains = collect(plan, journal, candidates, meta)
    running = {t.name for t in tasks}
    second = pending([j for j in trains if j["task"] in running] if "train" in kinds else [])
    second.sort(key=lambda j: -cost[j["task"]])
    print(f"one-cycle at the suggestions: {len(second)} jobs to run", flush=True)
    run_jobs(second, args.jobs, journal, "one-cycle at the suggestions")

    third = pending([j for t in tasks for j in plan.peers(t)] if "peer" in kinds else [])
    third.sort(key=lambda j: -cost[j["task"]])
    print(f"learning-rate-free optimizers: {len(third)} jobs to run", flush=True)
    run_jobs(third, args.jobs, journal, "learning-rate-free optimizers")

    results, _ = collect(plan, journal, candidates, meta)
    elapsed = time.perf_counter() - start
    # this invocation (it may have run nothing new: the report from the journal), and every reported job's own time
    results["meta"].update(seconds_this_run=elapsed, jobs_this_run=len(ran))
    parts = ("range_tests", "grid", "trainings", "peers")
    results["meta"]["job_seconds"] = sum(r.get("wall", 0.0) for p in parts for r in results[p])
    if not results["tasks"]:
        print("no task has its range tests and grid done yet: no report")
        return
    finish(results, args.out)
    print(
        f"\n{len(ran)} jobs run now in {elapsed:.0f}s with {args.jobs} processes, {os.cpu_count()} cores; "
        f"the report covers {len(results['tasks'])} tasks ({journal.path} holds every finished job)"
    )


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for p in ("torch", "lightning", "torch-lr-finder", "lightning-cyclic", *BENCH):
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            out[p] = None
    return out


BENCH = ("prodigyopt", "dadaptation", "dog-optimizer", "schedulefree")


def finish(results: dict, out: Path) -> None:
    table, derived = report(results)
    results["derived"] = derived
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "table.md").write_text(table + "\n")
    plot(results, derived, out / "regret.png")
    print(table)
    for line in table.splitlines():
        if "at an edge of the grid" in line:
            print(f"WARNING: {line.lstrip('- ')}", file=sys.stderr)


if __name__ == "__main__":
    main()
