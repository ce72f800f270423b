"""BestSnapshot on a real (tiny) Trainer: scripted metrics, divergence, interruption, resume."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from lightning_cyclic import BestSnapshot
from lightning_cyclic.callbacks.best import cpu_state
from tests.helpers import TinyModule, tiny_loader, tiny_trainer


class Scripted(TinyModule):
    """Logs ``score = values[epoch]`` at every validation; optionally a NaN training loss from a given step."""

    def __init__(self, values, nan_from_step=None):
        super().__init__()
        self.values, self.nan_from_step = list(values), nan_from_step

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        if self.nan_from_step is not None and self.trainer.global_step >= self.nan_from_step:
            loss = loss * float("nan")
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("score", self.values[min(self.current_epoch, len(self.values) - 1)])


class Weights(Callback):
    """Records the weights at every validation end, by epoch."""

    def __init__(self):
        self.by_epoch = {}

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.by_epoch[trainer.current_epoch] = cpu_state(pl_module)


def fit(tmp_path, module, callbacks, ckpt_path=None, **kwargs):
    kwargs.setdefault("max_epochs", len(module.values))
    trainer = tiny_trainer(tmp_path, callbacks, num_sanity_val_steps=0, **kwargs)
    trainer.fit(module, tiny_loader(n=32), tiny_loader(n=8, seed=1), ckpt_path=ckpt_path)
    return trainer


def assert_weights(module, state):
    for name, value in module.state_dict().items():
        assert torch.equal(value.cpu(), state[name]), name


@pytest.mark.parametrize(
    "values, mode, patience, min_delta, stop_epoch, best_epoch",
    [
        ([5, 4, 3, 2, 1, 0], "min", 2, 0.0, None, 5),  # keeps improving: runs to max_epochs
        ([5, 4, 4.5, 4.2, 4.1, 0], "min", 3, 0.0, 4, 1),  # three epochs without a new best
        ([5, 4, 4.5, 4.2, 4.1, 0], "min", None, 0.0, None, 5),  # no patience: never stops early
        ([1, 2, 3, 2.5, 2.9, 2.8], "max", 2, 0.0, 4, 2),
        ([1, 1.05, 1.08, 1.09, 5, 6], "max", 2, 0.1, 2, 0),  # gains below min_delta do not count
        ([3, 2, math.nan, 1, 0, 0], "min", None, 0.0, 2, 1),  # a NaN metric stops the run
    ],
)
def test_scripted_metrics_stop_and_restore_the_best_epoch_bit_for_bit(
    tmp_path, values, mode, patience, min_delta, stop_epoch, best_epoch
):
    best, weights = BestSnapshot("score", mode, patience=patience, min_delta=min_delta), Weights()
    module = Scripted(values)
    trainer = fit(tmp_path, module, [best, weights])
    assert best.stopped_epoch == stop_epoch
    assert trainer.current_epoch == (stop_epoch + 1 if stop_epoch is not None else len(values))
    assert best.best_epoch == best_epoch and best.best_score == values[best_epoch]
    assert best.best_step == 4 * (best_epoch + 1)  # 4 optimizer steps per epoch
    assert_weights(module, weights.by_epoch[best_epoch])  # the model holds exactly the best epoch's weights
    assert all(t.device.type == "cpu" for t in best.snapshot.values())
    assert best._candidate is None  # the copy of each validation's weights is not kept past its decision


def test_stopping_and_divergence_thresholds(tmp_path):
    best = BestSnapshot("score", "max", stopping_threshold=0.9)
    fit(tmp_path, Scripted([0.5, 0.95, 0.99]), [best])
    assert best.stopped_epoch == 1 and "stopping_threshold" in best.stop_reason
    best = BestSnapshot("score", "min", divergence_threshold=10)
    fit(tmp_path, Scripted([3, 2, 50, 1]), [best])
    assert best.stopped_epoch == 2 and best.best_epoch == 1


def test_a_nan_training_loss_stops_cleanly_and_restores_the_best(tmp_path):
    best, weights = BestSnapshot("score", "min"), Weights()
    module = Scripted([3, 2, 1, 0, 0, 0], nan_from_step=10)  # epoch 2 (steps 8..11) goes NaN
    fit(tmp_path, module, [best, weights])  # does not raise
    assert "the training loss is nan after 11 optimizer steps" in best.stop_reason and best.stopped_epoch == 2
    assert best.best_epoch == 1
    assert_weights(module, weights.by_epoch[1])
    assert all(torch.isfinite(p).all() for p in module.parameters())


class Interrupt(Callback):
    def __init__(self, epoch, exception):
        self.epoch, self.exception = epoch, exception

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise self.exception


@pytest.mark.parametrize("exception, raised", [(KeyboardInterrupt(), SystemExit), (RuntimeError("boom"), RuntimeError)])
def test_interrupted_fit_restores_the_best(tmp_path, exception, raised):
    best, weights = BestSnapshot("score", "min"), Weights()
    module = Scripted([3, 1, 2, 2, 2])
    # Ctrl-C: Lightning 2.2+ exits with SystemExit once its callbacks have run, 2.1 returns from fit
    ctx = contextlib.suppress(SystemExit) if raised is SystemExit else pytest.raises(raised)
    with ctx:
        fit(tmp_path, module, [best, weights, Interrupt(3, exception)])
    assert best.restored and best.best_epoch == 1
    assert_weights(module, weights.by_epoch[1])


def test_max_steps_end_restores_too(tmp_path):
    best, weights = BestSnapshot("score", "max"), Weights()
    module = Scripted([1, 3, 2, 2, 2, 2])
    fit(tmp_path, module, [best, weights], max_steps=14, val_check_interval=2, check_val_every_n_epoch=None)
    assert best.restored and best.best_score == 3


def test_save_and_resume_keeps_the_best(tmp_path):
    values = [4, 1, 3, 3, 3, 2]
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1, filename="{epoch}")
    full_best, weights = BestSnapshot("score", "min"), Weights()
    full = Scripted(values)
    fit(tmp_path, full, [full_best, weights, ckpt], enable_checkpointing=True)

    resumed_best = BestSnapshot("score", "min", save_path=tmp_path / "best.pt")
    resumed = Scripted(values)
    fit(tmp_path, resumed, [resumed_best], ckpt_path=str(tmp_path / "ckpt" / "epoch=2.ckpt"))
    assert (resumed_best.best_epoch, resumed_best.best_score) == (1, 1)  # the best came from before the checkpoint
    assert_weights(resumed, weights.by_epoch[1])
    assert_weights(full, weights.by_epoch[1])
    saved = torch.load(tmp_path / "best.pt", weights_only=True)
    assert_weights(resumed, saved)


def test_missing_monitor_names_the_metrics_that_exist(tmp_path):
    with pytest.raises(RuntimeError, match=r"BestSnapshot\(monitor='val/acc'\) found no such metric.*: score"):
        fit(tmp_path, Scripted([1, 2]), [BestSnapshot("val/acc")])
    best = BestSnapshot("val/acc", strict=False)
    with pytest.warns(UserWarning, match="found no such metric"):
        fit(tmp_path, Scripted([1, 2]), [best])
    assert best.best_epoch is None and not best.restored


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(mode="mini"), "mode must be one of 'min', 'max', got 'mini'"),
        (dict(patience=0), "patience must be >= 1, got 0"),
        (dict(min_delta=-1), "min_delta must be >= 0, got -1"),
        (dict(monitor=""), "monitor must be the name of a logged metric, got ''"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BestSnapshot(**kwargs)


def test_a_real_divergence_from_a_growing_lr(tmp_path):
    """No scripted NaN: the lr grows until SGD blows up; the run stops cleanly with the best weights back."""

    class Learner(TinyModule):
        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", torch.nn.functional.cross_entropy(self(x), y))

    class TenfoldPerEpoch(Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            for group in trainer.optimizers[0].param_groups:
                group["lr"] = 0.05 * 10**trainer.current_epoch

    best, weights = BestSnapshot("val_loss", "min"), Weights()
    module = Learner()
    trainer = tiny_trainer(tmp_path, [TenfoldPerEpoch(), best, weights], max_epochs=8, num_sanity_val_steps=0)
    trainer.fit(module, tiny_loader(learnable=True), tiny_loader(n=16, seed=2, learnable=True))  # does not raise
    assert best.stopped_epoch is not None and best.stopped_epoch < 7
    assert "nan" in best.stop_reason or "inf" in best.stop_reason
    assert best.best_epoch < best.stopped_epoch
    assert_weights(module, weights.by_epoch[best.best_epoch])
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_a_resumed_run_does_not_report_the_previous_runs_stop_as_its_own(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    first = BestSnapshot("score", "min", patience=1, verbose=False)
    fit(tmp_path, Scripted([3, 2, 5, 5, 5]), [first, ckpt], enable_checkpointing=True)
    assert first.stop_reason and first.stopped_epoch == 2  # the first run stopped early
    again = BestSnapshot("score", "min", verbose=False)  # the same monitor and mode: it takes the saved state
    fit(tmp_path, Scripted([3, 2, 5, 5, 5, 5]), [again], ckpt_path=ckpt.last_model_path, max_epochs=5)
    assert again.best_epoch == 1 and again.best_score == 2  # the saved best carries over
    assert again.stop_reason == "" and again.stopped_epoch is None  # this run ended by max_epochs
    assert again.previous_stop_reason == first.stop_reason


def test_state_key_is_built_once_and_follows_a_changed_argument():
    best = BestSnapshot(monitor="val/acc", mode="max")
    key = best.state_key
    assert key == Callback._generate_state_key(best, monitor="val/acc", mode="max")
    assert best.state_key is key  # the cached string, not a rebuilt one
    best.monitor = "val/loss"  # set after construction: the key follows
    assert best.state_key != key and "val/loss" in best.state_key
