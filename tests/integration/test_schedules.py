"""The schedule callbacks in code nobody here wrote: Lightning's demo models and callbacks, manual
optimization, ``pytorch_lightning``. torch's own schedulers are the oracle."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import lightning.pytorch as L
import pytest
import torch
from lightning.pytorch.callbacks import BackboneFinetuning, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel, RandomDataset
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.optim import lr_scheduler as S
from torch.utils.data import DataLoader

from lightning_cyclic import LRFinder, OneCycle, SnapshotEnsemble, WarmRestarts, WarmupDecay
from tests.helpers import tiny_trainer


def trainer(tmp_path, callbacks, namespace=L, **kwargs):
    return tiny_trainer(
        tmp_path, callbacks, namespace=namespace, **{"max_epochs": 1, "num_sanity_val_steps": 0, **kwargs}
    )


def onecycle_reference(max_lr: float, total: int) -> tuple[list[float], list[float]]:
    """lr and momentum of torch's OneCycleLR before each of ``total`` steps."""
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=max_lr, momentum=0.9)
    sched = S.OneCycleLR(opt, max_lr=max_lr, total_steps=total)
    lrs, moms = [], []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        moms.append(opt.param_groups[0]["momentum"])
        opt.step()
        sched.step()
    return lrs, moms


def close(a: list[float], b: list[float], rel: float = 1e-6) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=rel, abs_tol=1e-12) for x, y in zip(a, b))


class SGDBoring(BoringModel):
    """Lightning's BoringModel with a plain SGD with momentum and no scheduler of its own."""

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


class StepRecorder(L.Callback):
    """The lr of every param group of every optimizer, as each optimizer step uses it."""

    def __init__(self):
        self.seen: list[list[float]] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.seen.append([float(g["lr"]) for g in optimizer.param_groups])


def csv_rows(logger: CSVLogger) -> list[dict[str, str]]:
    with open(Path(logger.log_dir) / "metrics.csv") as f:
        return list(csv.DictReader(f))


def column(rows: list[dict[str, str]], key: str) -> dict[int, float]:
    return {int(r["step"]): float(r[key]) for r in rows if r.get(key)}


# --- LearningRateMonitor, before and after --------------------------------------------------------


@pytest.mark.parametrize("monitor_first", [True, False], ids=["monitor-first", "monitor-last"])
def test_learning_rate_monitor_logs_the_lr_each_step_uses_in_either_order(tmp_path, monitor_first):
    monitor = LearningRateMonitor(logging_interval="step", log_momentum=True)
    schedule, recorder = OneCycle(max_lr=0.1), StepRecorder()
    callbacks = [monitor, schedule] if monitor_first else [schedule, monitor]
    logger = CSVLogger(tmp_path)
    t = trainer(tmp_path, [*callbacks, recorder], logger=logger, log_every_n_steps=1, limit_train_batches=16)
    t.fit(SGDBoring(), DataLoader(RandomDataset(32, 64)))

    rows = csv_rows(logger)
    used = [g[0] for g in recorder.seen]
    ref_lrs, ref_moms = onecycle_reference(0.1, 16)
    assert close(used, ref_lrs)  # the schedule itself
    monitored = column(rows, "lr-SGD")
    assert close([monitored[k] for k in range(16)], used)  # all 16 steps, not one step late
    assert close([column(rows, "lr-SGD-momentum")[k] for k in range(16)], ref_moms)
    ours = column(rows, "lr")  # our own key, at the same step numbers
    assert close([ours[k] for k in range(16)], used)


def test_learning_rate_monitor_logs_only_the_fit_after_autos_range_test_and_trials(tmp_path):
    # the range test and the short trials step the optimizer 100+ times before the fit: no callback sees those steps,
    # so the monitor's rows are the fit's 64 steps, at torch's OneCycleLR of the trials' pick
    torch.manual_seed(0)
    monitor = LearningRateMonitor(logging_interval="step")
    schedule, finder, recorder = OneCycle(max_lr="auto"), LRFinder(num_steps=60, verbose=False), StepRecorder()
    logger = CSVLogger(tmp_path)
    t = trainer(tmp_path, [monitor, schedule, finder, recorder], logger=logger, log_every_n_steps=1)
    t.fit(SGDBoring(), DataLoader(RandomDataset(32, 64)), DataLoader(RandomDataset(32, 16)))
    trials = finder.result.extra["trials"]
    assert schedule.resolved["max_lr"] == pytest.approx(trials["lr"]) and len(trials["lrs"]) in (5, 7)
    ref_lrs, _ = onecycle_reference(trials["lr"], 64)
    used = [g[0] for g in recorder.seen]
    assert close(used, ref_lrs)  # the recorder saw the fit's 64 steps alone
    monitored = column(csv_rows(logger), "lr-SGD")
    assert sorted(monitored) == list(range(64)) and close([monitored[k] for k in range(64)], used)


# --- manual optimization: a two-optimizer GAN -----------------------------------------------------


class TinyGAN(L.LightningModule):
    """A generator and a discriminator on 8-d points, each stepped once per batch (manual optimization)."""

    def __init__(self):
        super().__init__()
        self.automatic_optimization = False
        self.generator = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 8))
        self.discriminator = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
        self.lrs: list[tuple[float, float]] = []  # (generator lr, discriminator lr) at each batch

    def training_step(self, batch, batch_idx):
        real = batch
        opt_g, opt_d = self.optimizers()
        self.lrs.append((opt_g.param_groups[0]["lr"], opt_d.param_groups[0]["lr"]))
        bce = nn.functional.binary_cross_entropy_with_logits
        fake = self.generator(torch.randn(len(real), 4))
        d_loss = bce(self.discriminator(real), torch.ones(len(real), 1)) + bce(
            self.discriminator(fake.detach()), torch.zeros(len(real), 1)
        )
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()
        g_loss = bce(self.discriminator(fake), torch.ones(len(real), 1))
        opt_g.zero_grad()
        self.manual_backward(g_loss)
        opt_g.step()

    def configure_optimizers(self):
        return (
            torch.optim.Adam(self.generator.parameters(), lr=1e-3),
            torch.optim.SGD(self.discriminator.parameters(), lr=1e-2, momentum=0.9),
        )


def gan_loader(n: int = 80, batch_size: int = 4) -> DataLoader:
    return DataLoader(torch.randn(n, 8, generator=torch.Generator().manual_seed(0)) + 2, batch_size=batch_size)


def test_manual_optimization_counts_batches_not_optimizer_steps(tmp_path):
    gan = TinyGAN()
    t = trainer(tmp_path, [OneCycle(max_lr=0.01)])
    t.fit(gan, gan_loader())  # 20 batches, 40 optimizer.step() calls
    assert t.global_step == 40  # Lightning's count: every step of every optimizer
    ref, _ = onecycle_reference(0.01, 20)
    assert close([g for g, _ in gan.lrs], ref)  # one cycle over the 20 batches, not over 10 of them
    assert close([d for _, d in gan.lrs], ref)
    assert max(g for g, _ in gan.lrs) == pytest.approx(0.01, rel=0.05)  # the peak is reached, mid-run


def test_snapshot_ensemble_under_manual_optimization_keeps_each_cycle_end_in_batches(tmp_path):
    """Two optimizers step every batch (global_step counts 2 a batch): the snapshots are at the cycles' ends in the
    schedule's own steps, the batches (read by global_step they came every half cycle)."""
    gan, ensemble = TinyGAN(), SnapshotEnsemble(max_snapshots=20)
    t = trainer(tmp_path, [WarmRestarts(max_lr=0.01, cycle_len=4, interval="step"), ensemble])
    t.fit(gan, gan_loader())  # 20 batches: five cycles of 4
    lrs = [g for g, _ in gan.lrs]
    assert [k for k in range(1, len(lrs)) if lrs[k] > lrs[k - 1]] == [4, 8, 12, 16]  # the restarts, in batches
    assert [s["step"] for s in ensemble.snapshots] == [8, 16, 24, 32, 40]  # after batches 4, 8, ... (2 a batch)


def test_each_optimizer_can_have_its_own_schedule(tmp_path):
    gan = TinyGAN()
    logger = CSVLogger(tmp_path)
    schedules = [OneCycle(max_lr=0.004, moms=None, optimizer=0), WarmupDecay(max_lr=0.02, decay="linear", optimizer=1)]
    t = trainer(tmp_path, schedules, logger=logger, log_every_n_steps=1)
    t.fit(gan, gan_loader())
    ref_g, _ = onecycle_reference(0.004, 20)
    ref_d = [0.02 * (1 - k / 20) for k in range(20)]  # linear decay to 0 over the run
    assert close([g for g, _ in gan.lrs], ref_g)
    assert close([d for _, d in gan.lrs], ref_d)
    rows = csv_rows(logger)
    assert close([column(rows, "lr-optimizer0")[k] for k in range(20)], ref_g)
    assert close([column(rows, "lr-optimizer1")[k] for k in range(20)], ref_d)
    assert "lr" not in rows[0]  # the two do not collide on one key


def test_an_optimizer_index_that_does_not_exist_is_refused(tmp_path):
    t = trainer(tmp_path, [OneCycle(max_lr=0.01, optimizer=2)])
    with pytest.raises(ValueError, match=r"OneCycle\(optimizer=2\).*returned 2 \(indices 0..1\)"):
        t.fit(TinyGAN(), gan_loader())


@pytest.mark.parametrize("bad", [-1, "0", [], 1.5, True])
def test_optimizer_argument_is_checked_at_construction(bad):
    with pytest.raises(ValueError, match="optimizer must be None"):
        OneCycle(max_lr=0.1, optimizer=bad)


def test_manual_optimization_resumes_on_the_batch_clock(tmp_path):
    full = TinyGAN()
    trainer(tmp_path / "full", [OneCycle(max_lr=0.01)], max_epochs=2).fit(full, gan_loader(40))

    first = TinyGAN()
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    t = trainer(tmp_path / "a", [OneCycle(max_lr=0.01), ckpt], max_epochs=1, enable_checkpointing=True)
    t.fit(first, gan_loader(40))
    resumed = TinyGAN()
    t = trainer(tmp_path / "b", [OneCycle(max_lr=0.01)], max_epochs=2)
    with pytest.warns(UserWarning, match="planned as"):  # the first run was planned for 1 epoch, this one for 2
        t.fit(resumed, gan_loader(40), ckpt_path=ckpt.last_model_path)
    # the resumed epoch is on the 2-epoch plan, at batch 10..19: exactly the uninterrupted run's second half
    assert close([g for g, _ in resumed.lrs], [g for g, _ in full.lrs[10:]])


# --- BackboneFinetuning adds a param group mid-fit ------------------------------------------------


class WithBackbone(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(32, 16), nn.ReLU())
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        return self.head(self.backbone(x))

    def training_step(self, batch, batch_idx):
        return nn.functional.mse_loss(self(batch), torch.ones(len(batch), 2))

    def configure_optimizers(self):
        return torch.optim.SGD(filter(lambda p: p.requires_grad, self.parameters()), lr=0.1, momentum=0.9)


@pytest.mark.parametrize("finetuning_first", [True, False], ids=["finetuning-first", "schedule-first"])
def test_a_param_group_added_mid_fit_is_scheduled_at_its_ratio(tmp_path, finetuning_first):
    finetuning = BackboneFinetuning(unfreeze_backbone_at_epoch=1, backbone_initial_ratio_lr=0.1, verbose=False)
    schedule, recorder = OneCycle(max_lr=0.1), StepRecorder()
    callbacks = [finetuning, schedule] if finetuning_first else [schedule, finetuning]
    t = trainer(tmp_path, [*callbacks, recorder], max_epochs=4)
    t.fit(WithBackbone(), DataLoader(RandomDataset(32, 32), batch_size=4))  # 8 steps an epoch, 32 in all

    ref, _ = onecycle_reference(0.1, 32)
    head = [g[0] for g in recorder.seen]
    assert close(head, ref)
    assert [len(g) for g in recorder.seen] == [1] * 8 + [2] * 24  # the backbone joins at epoch 1
    # BackboneFinetuning adds it at 0.1x the head's lr; it keeps that ratio through the schedule, to the end
    ratios = [g[1] / g[0] for g in recorder.seen[8:]]
    assert all(math.isclose(r, 0.1, rel_tol=1e-6) for r in ratios), ratios
    assert recorder.seen[-1][1] == pytest.approx(0.1 * ref[-1], rel=1e-6)  # annealed with the head, not left behind


# --- Lightning's demo transformer on synthetic tokens ----------------------------------------------


def test_lightning_demo_transformer_follows_torch_onecyclelr(tmp_path):
    from lightning.pytorch.demos.transformer import LightningTransformer

    vocab, length = 16, 12
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, vocab, (24, length + 1), generator=g)
    pairs = list(zip(tokens[:, :-1], tokens[:, 1:]))  # next-token prediction

    class Offline(LightningTransformer):
        def prepare_data(self):  # the demo downloads WikiText-2 here; the tokens above are the data
            pass

    model = Offline(vocab_size=vocab)
    recorder = StepRecorder()
    t = trainer(tmp_path, [OneCycle(max_lr=0.05), recorder], max_epochs=2)
    t.fit(model, DataLoader(pairs, batch_size=4))
    ref, _ = onecycle_reference(0.05, 12)
    assert close([g[0] for g in recorder.seen], ref)


# --- import pytorch_lightning as pl -----------------------------------------------------------------


def test_pytorch_lightning_trainer_takes_the_schedule_callbacks(tmp_path):
    pl = pytest.importorskip("pytorch_lightning")
    from pytorch_lightning.demos.boring_classes import BoringModel as PLBoring

    class Model(PLBoring):
        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

    seen = []

    class Recorder(pl.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            seen.append(optimizer.param_groups[0]["lr"])

    t = trainer(tmp_path, [OneCycle(max_lr=0.1), Recorder()], namespace=pl, limit_train_batches=10, max_epochs=2)
    t.fit(Model(), DataLoader(RandomDataset(32, 64)))
    assert close(seen, onecycle_reference(0.1, 20)[0])
