"""Optimizers with unusual momentum, and schedule-free optimizers, on their real classes in a real Trainer."""

from __future__ import annotations

import warnings

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import nn

from lightning_cyclic import BestSnapshot, OneCycle, ScheduleFree, WarmupStableDecay
from lightning_cyclic.optim import is_schedule_free
from tests.helpers import tiny_loader, tiny_trainer

lion_pytorch = pytest.importorskip("lion_pytorch")  # both come with the dev extra: CI runs these
schedulefree = pytest.importorskip("schedulefree")


class Net(pl.LightningModule):
    """A linear classifier whose optimizer is given by a factory; records each step's param group 0."""

    def __init__(self, make_optimizer, validate: bool = False):
        super().__init__()
        self.layer = nn.Linear(4, 3)
        self.make_optimizer, self.validate = make_optimizer, validate
        self.seen: list[dict] = []

    def training_step(self, batch, batch_idx):
        return nn.functional.cross_entropy(self.layer(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", nn.functional.cross_entropy(self.layer(batch[0]), batch[1]))

    def on_before_optimizer_step(self, optimizer):
        self.seen.append({k: v for k, v in optimizer.param_groups[0].items() if k != "params"})

    def configure_optimizers(self):
        return self.make_optimizer(self.parameters())


@pytest.mark.parametrize(
    "make, key",
    [
        (lambda p: lion_pytorch.Lion(p, lr=1e-4, betas=(0.9, 0.99)), "betas"),  # betas[0]: the update's momentum
        (lambda p: torch.optim.NAdam(p, lr=1e-3), "betas"),
    ],
    ids=["lion", "nadam"],
)
def test_momentum_is_cycled_on_the_key_the_optimizer_uses(tmp_path, make, key):
    module = Net(make)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*has no momentum.*")
        tiny_trainer(tmp_path, [OneCycle(max_lr=1e-3, moms=(0.95, 0.85))], max_epochs=2).fit(module, tiny_loader())
    firsts = [g[key][0] for g in module.seen]
    assert min(firsts) == pytest.approx(0.85, abs=2e-3) and max(firsts) == pytest.approx(0.95)
    assert {g[key][1] for g in module.seen} == {module.seen[0][key][1]}  # betas[1] untouched


@pytest.mark.parametrize(
    "make",
    [
        lambda p: torch.optim.Adafactor(p, lr=1e-2),
        lambda p: torch.optim.Adagrad(p, lr=1e-2),
        lambda p: torch.optim.Rprop(p, lr=1e-2),
        lambda p: torch.optim.Adadelta(p, lr=1.0),
    ],
    ids=["adafactor", "adagrad", "rprop", "adadelta"],
)
def test_an_optimizer_without_momentum_gets_its_lr_scheduled_and_one_warning(tmp_path, make):
    module = Net(make)
    with pytest.warns(UserWarning, match="has no momentum") as said:
        tiny_trainer(tmp_path, [OneCycle(max_lr=0.05)], max_epochs=2).fit(module, tiny_loader())
    assert len([w for w in said if "has no momentum" in str(w.message)]) == 1
    lrs = [g["lr"] for g in module.seen]
    assert max(lrs) == pytest.approx(0.05, rel=0.05) and lrs[-1] < lrs[0]
    before = module.seen[0]
    for key in ("etas", "beta2_decay", "rho", "lr_decay"):  # their own hyperparameters stay as they were
        if key in before:
            assert {str(g[key]) for g in module.seen} == {str(before[key])}


# --- schedule-free optimizers ---------------------------------------------------------------------

FREE = {
    "sgd": lambda p: schedulefree.SGDScheduleFree(p, lr=0.5, momentum=0.9, warmup_steps=4),
    "adamw": lambda p: schedulefree.AdamWScheduleFree(p, lr=0.05, warmup_steps=4),
}


class ModeProbe(Callback):
    """Records the optimizer's mode wherever the weights matter."""

    def __init__(self):
        self.modes: dict[str, list[bool]] = {"validation": [], "training": []}

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.modes["validation"].append(trainer.optimizers[0].param_groups[0]["train_mode"])

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.modes["training"].append(optimizer.param_groups[0]["train_mode"])


@pytest.mark.parametrize("kind", sorted(FREE))
def test_schedule_free_trains_in_train_mode_and_is_evaluated_and_kept_in_eval_mode(tmp_path, kind):
    assert is_schedule_free(FREE[kind]([nn.Parameter(torch.zeros(1))]))
    probe, best = ModeProbe(), BestSnapshot(monitor="val/loss", verbose=False)
    module = Net(FREE[kind], validate=True)
    trainer = tiny_trainer(tmp_path, [ScheduleFree(), best, probe], max_epochs=3)
    trainer.fit(module, tiny_loader(), tiny_loader(n=16, seed=2))
    assert probe.modes["training"] and set(probe.modes["training"]) == {True}
    assert probe.modes["validation"] and set(probe.modes["validation"]) == {False}
    assert trainer.optimizers[0].param_groups[0]["train_mode"] is False  # the model you get holds the average
    for name, value in module.state_dict().items():  # and it is the best evaluated one, put back
        assert torch.equal(value, best.snapshot[name]), name


def test_without_the_callback_best_snapshot_says_what_it_would_keep(tmp_path):
    module = Net(FREE["sgd"], validate=True)

    class TrainMode(Callback):  # what a user's own loop does: optimizer.train() at the start, and nothing else
        def on_train_start(self, trainer, pl_module):
            trainer.optimizers[0].train()

    with pytest.warns(UserWarning, match="schedule-free optimizer is in train mode during validation"):
        tiny_trainer(tmp_path, [TrainMode(), BestSnapshot(monitor="val/loss", verbose=False)], max_epochs=2).fit(
            module, tiny_loader(), tiny_loader(n=16, seed=2)
        )


def test_a_schedule_callback_refuses_a_schedule_free_optimizer_and_says_what_to_use(tmp_path):
    refused = r"SGDScheduleFree is a schedule-free optimizer.*add lightning_cyclic\.ScheduleFree"
    with pytest.raises(ValueError, match=refused):
        tiny_trainer(tmp_path, [WarmupStableDecay(max_lr=0.1)], max_epochs=1).fit(Net(FREE["sgd"]), tiny_loader())


def test_a_checkpoint_holds_the_evaluated_point_and_a_resume_goes_on_exactly(tmp_path):
    """Saved at an epoch end (in train mode: no validation ran): the file holds the eval-mode weights and
    optimizer state; resumed from it, the run ends where the uninterrupted one did."""
    torch.manual_seed(0)
    full = Net(FREE["sgd"])
    tiny_trainer(tmp_path / "full", [ScheduleFree()], max_epochs=3).fit(full, tiny_loader())

    torch.manual_seed(0)
    first = Net(FREE["sgd"])
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_epochs=1, save_top_k=-1, filename="{step}")
    probe = []

    class Look(Callback):  # the weights the model trains with at step 8, before the checkpoint's copy
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == 8:
                probe.append(pl_module.layer.weight.detach().clone())

    trainer = tiny_trainer(tmp_path / "a", [ScheduleFree(), Look(), ckpt], max_epochs=3, enable_checkpointing=True)
    trainer.fit(first, tiny_loader())
    saved = torch.load(tmp_path / "ckpt" / "step=8.ckpt", map_location="cpu", weights_only=False)
    assert saved["optimizer_states"][0]["param_groups"][0]["train_mode"] is False
    assert not torch.equal(saved["state_dict"]["layer.weight"], probe[0])  # the average, not the training point

    torch.manual_seed(0)
    resumed = Net(FREE["sgd"])
    trainer = tiny_trainer(tmp_path / "b", [ScheduleFree()], max_epochs=3)
    trainer.fit(resumed, tiny_loader(), ckpt_path=str(tmp_path / "ckpt" / "step=8.ckpt"))
    for name, value in full.state_dict().items():
        assert torch.allclose(resumed.state_dict()[name], value, atol=1e-6), name
