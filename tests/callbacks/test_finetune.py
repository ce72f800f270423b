"""FineTune: fastai's fine_tune as one callback, on a real Trainer; layer_decay_groups on any module."""

from __future__ import annotations

import threading
import time

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import nn

from lightning_cyclic import FineTune, layer_decay_groups
from lightning_cyclic.shapes import OneCycleSchedule
from tests.helpers import tiny_loader, tiny_trainer


class WithBackbone(pl.LightningModule):
    """A 3-layer backbone and a head; the optimizer gets the trainable parameters only."""

    def __init__(self, lr: float = 0.01, filtered: bool = True):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))
        self.head = nn.Linear(8, 3)
        self.lr, self.filtered = lr, filtered
        self.seen: list[tuple[int, list[float]]] = []

    def forward(self, x):
        return self.head(torch.relu(self.backbone(x)))

    def training_step(self, batch, batch_idx):
        return nn.functional.cross_entropy(self(batch[0]), batch[1])

    def on_before_optimizer_step(self, optimizer):
        self.seen.append((self.trainer.global_step, [float(g["lr"]) for g in optimizer.param_groups]))

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad] if self.filtered else self.parameters()
        return torch.optim.SGD(params, lr=self.lr, momentum=0.9)


class BackboneAt(Callback):
    def __init__(self):
        self.by_epoch = {}

    def on_train_epoch_end(self, trainer, pl_module):
        self.by_epoch[trainer.current_epoch] = [p.detach().clone() for p in pl_module.backbone.parameters()]


def test_the_head_alone_then_everything_at_a_share_of_the_heads_lr(tmp_path):
    torch.manual_seed(0)
    module, at = WithBackbone(), BackboneAt()
    start = [p.detach().clone() for p in module.backbone.parameters()]
    callback = FineTune(max_lr=0.1, unfrozen_max_lr=0.05, freeze_epochs=1, backbone_lr_mult=0.1)
    tiny_trainer(tmp_path, [callback, at], max_epochs=3).fit(module, tiny_loader())  # 8 steps an epoch
    assert all(torch.equal(a, b) for a, b in zip(start, at.by_epoch[0]))  # frozen for the first epoch
    assert not all(torch.equal(a, b) for a, b in zip(at.by_epoch[0], at.by_epoch[2]))  # then trained
    phase1 = OneCycleSchedule(max_lr=0.1, total_steps=8, pct_start=0.99, div_factor=5, final_div_factor=1e4)
    phase2 = OneCycleSchedule(max_lr=0.05, total_steps=16, pct_start=0.3, div_factor=5, final_div_factor=1e4)
    for step, lrs in module.seen:
        if step < 8:
            assert lrs == [pytest.approx(phase1.lr(step))]  # the head's group alone
        else:
            head, backbone = lrs
            assert head == pytest.approx(phase2.lr(step - 8)) and backbone == pytest.approx(0.1 * head)


def test_layer_decay_gives_each_backbone_layer_its_share(tmp_path):
    module = WithBackbone()
    callback = FineTune(max_lr=0.1, unfrozen_max_lr=0.05, layer_decay=0.5)
    tiny_trainer(tmp_path, [callback], max_epochs=2).fit(module, tiny_loader())
    head, *layers = module.seen[-1][1]
    # the backbone's three Linear layers, the input side first: 0.5**3, 0.5**2, 0.5 of the head
    assert layers == [pytest.approx(head * 0.125), pytest.approx(head * 0.25), pytest.approx(head * 0.5)]


class LrsSeen(Callback):
    """The lrs of every optimizer step of the fit (callbacks do not see the range test's steps; the module does)."""

    def __init__(self):
        self.lrs = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.lrs.append([float(g["lr"]) for g in optimizer.param_groups])


def test_auto_runs_a_second_range_test_on_the_unfrozen_model_and_changes_nothing_else(tmp_path):
    torch.manual_seed(0)
    auto, seen_auto = WithBackbone(), LrsSeen()
    callback = FineTune(max_lr="auto", unfrozen_max_lr="auto", freeze_epochs=1)
    tiny_trainer(tmp_path / "auto", [callback, seen_auto], max_epochs=3).fit(auto, tiny_loader(learnable=True))
    first, second = callback.lrs
    assert callback.results[0] is not None and callback.results[1] is not None
    assert first == callback.results[0].chosen.lr and second == callback.results[1].chosen.lr
    torch.manual_seed(0)
    fixed, seen_fixed = WithBackbone(), LrsSeen()
    given = FineTune(max_lr=first, unfrozen_max_lr=second, freeze_epochs=1)
    tiny_trainer(tmp_path / "fixed", [given, seen_fixed], max_epochs=3).fit(fixed, tiny_loader(learnable=True))
    # the two range tests left no trace: the same lrs and the same weights as a run given their lrs
    assert len(seen_auto.lrs) == 24 and seen_auto.lrs == [pytest.approx(lrs) for lrs in seen_fixed.lrs]
    for a, b in zip(auto.parameters(), fixed.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_a_run_resumed_in_phase_two_goes_on_with_the_backbone_trainable(tmp_path):
    def make():
        return FineTune(max_lr=0.1, unfrozen_max_lr=0.05, freeze_epochs=1)

    torch.manual_seed(0)
    full = WithBackbone()
    tiny_trainer(tmp_path / "full", [make()], max_epochs=4).fit(full, tiny_loader())
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1, filename="{epoch}")
    torch.manual_seed(0)
    first = tiny_trainer(tmp_path / "a", [make(), ckpt], max_epochs=4, enable_checkpointing=True)
    first.fit(WithBackbone(), tiny_loader())
    resumed = WithBackbone()
    trainer = tiny_trainer(tmp_path / "b", [make()], max_epochs=4)
    trainer.fit(resumed, tiny_loader(), ckpt_path=str(tmp_path / "ckpt" / "epoch=1.ckpt"))
    assert all(p.requires_grad for p in resumed.backbone.parameters())
    want = dict(full.seen)
    assert resumed.seen[0][0] == 16
    assert all(lrs == pytest.approx(want[step]) for step, lrs in resumed.seen)
    for a, b in zip(resumed.parameters(), full.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_an_optimizer_that_already_holds_the_backbone_is_refused_with_the_remedy(tmp_path):
    with pytest.raises(ValueError, match=r"filter\(lambda p: p.requires_grad, self.parameters\(\)\)"):
        tiny_trainer(tmp_path, [FineTune(max_lr=0.1)], max_epochs=2).fit(WithBackbone(filtered=False), tiny_loader())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(freeze_epochs=0), "freeze_epochs must be >= 1, got 0"),
        (dict(backbone_lr_mult=0), "backbone_lr_mult must be in (0, 1], got 0"),
        (dict(layer_decay=1.5), "layer_decay must be in (0, 1], got 1.5"),
        (dict(max_lr=-1), "max_lr must be > 0, got -1"),
        (dict(pct_start=1.5), "pct_start must be in (0, 1), got 1.5"),
        (dict(backbone=""), "backbone must be the name of the module's backbone attribute"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, message):
    import re

    with pytest.raises(ValueError, match=re.escape(message)):
        FineTune(**kwargs)


def test_a_missing_backbone_attribute_is_named(tmp_path):
    trainer = tiny_trainer(tmp_path, [FineTune(backbone="encoder", max_lr=0.1)], max_epochs=1)
    with pytest.raises(ValueError, match=r"has no nn\.Module attribute 'encoder'"):
        trainer.fit(WithBackbone(), tiny_loader())


def test_layer_decay_groups_for_any_module():
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.Linear(4, 2))
    groups = layer_decay_groups(net, lr=1.0, decay=0.5)
    assert [g["lr"] for g in groups] == [0.25, 0.5, 1.0]  # the head (the last layer) at lr
    assert [len(g["params"]) for g in groups] == [2, 2, 2]
    net[0].weight.requires_grad_(False)
    assert [len(g["params"]) for g in layer_decay_groups(net, 1.0, 0.5, first_depth=1)] == [1, 2, 2]
    assert [g["lr"] for g in layer_decay_groups(net, 1.0, 0.5, first_depth=1)] == [0.125, 0.25, 0.5]
    optimizer = torch.optim.AdamW(layer_decay_groups(net, 1e-3, 0.8), lr=1e-3)  # what torch takes
    assert len(optimizer.param_groups) == 3
    with pytest.raises(ValueError, match="decay must be in \\(0, 1\\], got 0"):
        layer_decay_groups(net, 1.0, 0.0)


def test_a_run_no_longer_than_the_frozen_phase_trains_the_head_alone_and_says_so(tmp_path):
    module, at = WithBackbone(), BackboneAt()
    start = [p.detach().clone() for p in module.backbone.parameters()]
    callback = FineTune(max_lr=0.1, freeze_epochs=1)
    with pytest.warns(UserWarning, match=r"ends before part 2 starts \(at 1 epochs\)"):
        tiny_trainer(tmp_path, [callback, at], max_epochs=1).fit(module, tiny_loader())
    assert all(torch.equal(a, b) for a, b in zip(start, at.by_epoch[0])) and not callback.unfrozen
    phase1 = OneCycleSchedule(max_lr=0.1, total_steps=8, pct_start=0.99, div_factor=5, final_div_factor=1e4)
    assert [lrs for _, lrs in module.seen] == [[pytest.approx(phase1.lr(k))] for k in range(8)]


def test_it_describes_its_phases_for_a_runs_summary(tmp_path):
    callback = FineTune(max_lr=0.1, unfrozen_max_lr=0.05, freeze_epochs=1, backbone_lr_mult=0.1)
    trainer = tiny_trainer(tmp_path, [callback], max_epochs=2)
    trainer.fit(WithBackbone(), tiny_loader())
    expected = "FineTune, backbone frozen for 1 epoch(s) at peak 0.1, then peak 0.05, the backbone at x0.1 of the head"
    assert callback.describe(trainer) == expected


class Slow(WithBackbone):
    """Twenty milliseconds a step: a range test (100 steps) lasts two seconds, twice the period of the bar's refresh
    thread (it wakes once a second at the default refresh rate), so that it draws during one."""

    def training_step(self, batch, batch_idx):
        time.sleep(0.02)
        return super().training_step(batch, batch_idx)


def test_a_rich_progress_bar_live_through_the_range_tests_in_the_fit_raises_nothing(tmp_path, monkeypatch):
    # the second range test runs inside the fit, while Rich's refresh thread draws the bar: that thread reads the
    # Trainer's progress bar, which stays in the Trainer's callbacks through the test (no other callback does)
    pytest.importorskip("rich")
    from lightning.pytorch.callbacks import RichProgressBar

    try:  # (Lightning 2.1's RichProgressBar does not start with the rich of today: its own fit fails)
        plain = tiny_trainer(tmp_path / "plain", [RichProgressBar()], max_epochs=1, enable_progress_bar=True)
        plain.fit(WithBackbone(), tiny_loader())
    except IndexError as error:
        pytest.skip(f"Lightning {pl.__version__}'s RichProgressBar fails a plain fit with this rich: {error!r}")
    failures: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", failures.append)
    callback, bar = FineTune(max_lr="auto", unfrozen_max_lr="auto", freeze_epochs=1), RichProgressBar()
    torch.manual_seed(0)
    trainer = tiny_trainer(tmp_path, [callback, bar], max_epochs=2, enable_progress_bar=True)
    trainer.fit(Slow(), tiny_loader(learnable=True))
    assert callback.results[1] is not None and callback.results[1].seconds > 1.5  # (the bar's thread woke in it)
    assert not failures, [f"{f.exc_type.__name__} in {f.thread}: {f.exc_value!r}" for f in failures]
    assert trainer.progress_bar_callback is bar and trainer.callbacks.count(bar) == 1
