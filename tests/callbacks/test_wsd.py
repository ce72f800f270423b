"""Warmup-stable-decay: the reference formulas, a real Trainer, and a run extended after the fact."""

from __future__ import annotations

import itertools
import logging
import math
import warnings

import pytest
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_cyclic import WarmupStableDecay
from lightning_cyclic.shapes import WarmupStableDecaySchedule
from tests.helpers import TinyModule, tiny_loader, tiny_trainer


def reference_wsd_factor(step, warmup, stable, decay, kind, min_ratio):
    """The multiplier of ``transformers.get_wsd_schedule`` at ``step`` (its published formula, linear warmup,
    one cosine half-wave), written out here as the oracle."""
    if step < warmup:
        return min_ratio + (1 - min_ratio) * step / max(1, warmup)
    if step < warmup + stable:
        return 1.0
    if step < warmup + stable + decay:
        p = (step - warmup - stable) / max(1, decay)
        shape = {"linear": 1 - p, "cosine": 0.5 * (1 + math.cos(math.pi * p)), "1-sqrt": 1 - math.sqrt(p)}[kind]
        return min_ratio + (1 - min_ratio) * shape
    return min_ratio


@pytest.mark.parametrize("kind", ["linear", "cosine", "1-sqrt"])
@pytest.mark.parametrize("min_lr", [0.0, 0.01])
def test_wsd_equals_the_reference_formula(kind, min_lr):
    warmup, stable, decay, max_lr = 7, 25, 10, 0.2
    total = warmup + stable + decay
    for given in (dict(decay_len=decay), dict(decay_pct=decay / total)):
        s = WarmupStableDecaySchedule(
            max_lr=max_lr, warmup=warmup, anneal=kind, min_lr=min_lr, warmup_lr_init=min_lr, total_steps=total, **given
        )
        for step in range(total + 5):
            want = max_lr * reference_wsd_factor(step, warmup, stable, decay, kind, min_lr / max_lr)
            assert s.lr(step) == pytest.approx(want, rel=1e-9, abs=1e-15), (kind, given, step)


def test_wsd_in_a_trainer_under_gradient_accumulation_follows_the_optimizer_steps(tmp_path):
    # 8 batches an epoch, 2 per optimizer step: 4 steps an epoch, 5 epochs = 20 steps; 1 epoch of warmup
    callback = WarmupStableDecay(max_lr=0.3, warmup=1, decay_pct=0.25, interval="epoch", anneal="linear")
    module = TinyModule()
    tiny_trainer(tmp_path, [callback], max_epochs=5, accumulate_grad_batches=2).fit(module, tiny_loader())
    expected = WarmupStableDecaySchedule(max_lr=0.3, warmup=4, decay_pct=0.25, anneal="linear", total_steps=20)
    assert [s for s, *_ in module.seen] == list(range(20))
    assert [lr for _, lr, *_ in module.seen] == [pytest.approx(expected.lr(k)) for k in range(20)]
    assert [lr for _, lr, *_ in module.seen][4:15] == [pytest.approx(0.3)] * 11  # the stable phase


def test_a_wsd_run_extended_in_its_stable_phase_is_the_longer_run_from_the_start(tmp_path, caplog):
    """Train 3 epochs planned, keep a checkpoint from the stable phase, decide to train 6: resumed with
    max_epochs=6, the lr goes on at max_lr and decays at the new end, equal step for step to a 6-epoch run."""
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1, filename="{epoch}")

    def make():
        return WarmupStableDecay(max_lr=0.3, warmup=4, decay_pct=0.2)

    short = TinyModule()
    tiny_trainer(tmp_path / "a", [make(), ckpt], max_epochs=3, enable_checkpointing=True).fit(short, tiny_loader())
    full = TinyModule()
    tiny_trainer(tmp_path / "b", [make()], max_epochs=6).fit(full, tiny_loader())
    resumed = TinyModule()
    with warnings.catch_warnings(), caplog.at_level(logging.INFO):
        warnings.simplefilter("error", UserWarning)  # no "the lr jumps" warning: it does not jump
        warnings.filterwarnings("ignore", message=".*(does not have many workers|dirpath has changed|Be aware).*")
        trainer = tiny_trainer(tmp_path / "c", [make()], max_epochs=6)
        trainer.fit(resumed, tiny_loader(), ckpt_path=str(tmp_path / "ckpt" / "epoch=0.ckpt"))
    assert "the lr at step 8 is the same under both (0.3)" in caplog.text
    want = {s: lr for s, lr, *_ in full.seen}
    assert resumed.seen[0][0] == 8 and len(resumed.seen) == 40
    assert all(lr == pytest.approx(want[s], rel=1e-12) for s, lr, *_ in resumed.seen)
    # the 3-epoch run had decayed over its last 5 steps; the extended one decays over its last 10 instead
    assert [lr for _, lr, *_ in short.seen][-1] < 0.1 and want[23] == pytest.approx(0.3)


def test_resuming_at_a_step_where_the_plans_disagree_warns_with_the_jump(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1, filename="{epoch}")
    make = lambda: WarmupStableDecay(max_lr=0.3, decay_pct=0.5)  # noqa: E731
    first = tiny_trainer(tmp_path / "a", [make(), ckpt], max_epochs=3, enable_checkpointing=True)
    first.fit(TinyModule(), tiny_loader())
    with pytest.warns(UserWarning, match=r"so the lr jumps from 0\.\d+ to 0\.3\b"):  # resumed mid-decay: back up
        trainer = tiny_trainer(tmp_path / "b", [make()], max_epochs=6)
        trainer.fit(TinyModule(), tiny_loader(), ckpt_path=str(tmp_path / "ckpt" / "epoch=1.ckpt"))


def test_a_warmup_and_decay_that_do_not_fit_a_short_run_are_cut_with_one_warning(tmp_path):
    callback = WarmupStableDecay(max_lr=0.3, warmup=2, decay_len=1, interval="epoch")  # 3 epochs of a 1-epoch run
    module = TinyModule()
    with pytest.warns(UserWarning, match=r"a warmup of 16 and a decay of 8 optimizer steps do not fit in the run "):
        tiny_trainer(tmp_path, [callback], max_epochs=1).fit(module, tiny_loader())
    assert callback.schedule.warmup == pytest.approx(0.8) and callback.schedule.decay_len == pytest.approx(7.2)
    lrs = [lr for _, lr, *_ in module.seen]
    assert callback.schedule.lr(0.8) == pytest.approx(0.3)  # the peak, between steps 0 and 1
    assert lrs[0] == 0.0 and all(a > b for a, b in itertools.pairwise(lrs[1:]))  # then it decays to the end


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(max_lr=0.1, decay_pct=0), "decay_pct must be in (0, 1], got 0"),
        (dict(max_lr=0.1, anneal="exp"), "anneal must be one of 'linear', 'cosine', '1-sqrt', got 'exp'"),
        (dict(max_lr=0.1, min_lr=0.2), "min_lr must be <= max_lr"),
        (dict(max_lr=0.1, decay_len=-1), "decay_len must be > 0, got -1"),
        (dict(max_lr=0.1, warmup=50, decay_len=60, total_steps=100), "warmup and decay must fit in the run"),
    ],
)
def test_bad_wsd_arguments_name_themselves(kwargs, message):
    import re

    with pytest.raises(ValueError, match=re.escape(message)):
        WarmupStableDecaySchedule(**kwargs)
