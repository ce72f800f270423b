"""``Guard`` beside Lightning's own weight averaging (``EMAWeightAveraging``, ``StochasticWeightAveraging``): a
rollback puts the model's weights back and the running average as it was at the same snapshot (the steps rolled back
leave no trace in it), the average goes on from there, and the fit ends with finite averaged weights, whichever
callback comes first."""

from __future__ import annotations

import importlib

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader

from lightning_cyclic import Guard
from lightning_cyclic._compat import Callback  # (a Callback of either namespace)
from tests.callbacks.test_guard import Collapsing, Poisoned, finite, fit
from tests.helpers import tiny_trainer

try:
    from lightning.pytorch.callbacks import EMAWeightAveraging
except ImportError:  # Lightning before 2.6
    EMAWeightAveraging = None

needs_ema = pytest.mark.skipif(EMAWeightAveraging is None, reason="this Lightning has no EMAWeightAveraging (2.6+)")
NAMESPACES = ["lightning.pytorch", "pytorch_lightning"]
KICK = 127  # the last optimizer step of epoch 7 (16 steps an epoch)


class LastRaw(pl.Callback):
    """The model's own weights after the last optimizer step (before the average is swapped in)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.raw = [p.detach().clone() for p in pl_module.parameters()]


@needs_ema
@pytest.mark.parametrize("guard_first", [True, False])
@pytest.mark.parametrize("failure", ["nan", "collapse"])
def test_a_rollback_beside_an_ema_ends_with_finite_averaged_weights(tmp_path, failure, guard_first):
    guard = Guard(verbose=False)
    module = Poisoned(nan_at=(12,)) if failure == "nan" else Collapsing(at=40, guard=guard)
    ema, last = EMAWeightAveraging(decay=0.9), LastRaw()
    callbacks = [guard, ema] if guard_first else [ema, guard]
    trainer = fit(tmp_path, module, [*callbacks, last], max_epochs=24)
    [event] = guard.events
    assert ("nan" in event["reason"]) if failure == "nan" else ("what it learnt is lost" in event["reason"])
    assert trainer.global_step == 192 and not guard.gave_up
    # the fit ends with the average swapped into the model (Lightning's WeightAveraging at on_train_end): finite,
    # and not the last step's own weights
    assert finite(module)
    assert any(not torch.equal(raw, p) for raw, p in zip(last.raw, module.parameters()))


def kicked_fit(tmp_path, namespace: str, callbacks: list):
    """Lightning's demo ``BoringModel`` (of ``namespace``), whose gradients at optimizer step ``KICK`` are ten thousand
    times what they are: that step's update throws the weights out, the next step's loss jumps, the Guard rolls back
    to its snapshot of step 50, and an average updated in between has taken the thrown-out weights in."""
    demos = importlib.import_module(f"{namespace}.demos.boring_classes")

    class Kicked(demos.BoringModel):
        def on_after_backward(self):
            if self.global_step == KICK:
                for p in self.parameters():
                    p.grad.mul_(10_000)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05)

    trainer = tiny_trainer(tmp_path, callbacks, importlib.import_module(namespace.split(".")[0]), max_epochs=10)
    torch.manual_seed(0)
    model = Kicked()
    trainer.fit(model, DataLoader(demos.RandomDataset(32, 64), batch_size=4))
    return trainer, model


class Averages(Callback):
    """The running average of ``averaging`` (its parameters and how many updates it holds, read off the callbacks'
    own attributes) after each optimizer step, and at each epoch's start (after SWA's update there)."""

    def __init__(self, averaging):
        self.averaging, self.seen, self.epoch_start = averaging, {}, {}

    def state(self) -> dict:
        model = self.averaging._average_model
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if hasattr(self.averaging, "n_averaged"):  # StochasticWeightAveraging keeps its count beside the model
            state["n_averaged"] = self.averaging.n_averaged.clone()
        return state

    def on_train_epoch_start(self, trainer, pl_module):
        self.epoch_start[trainer.current_epoch] = self.state()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seen[trainer.global_step] = self.state()


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def check_rolled_back(guard, seen):
    [event] = guard.events
    assert "jumped" in event["reason"] and event["step"] == KICK + 1 and event["restored_step"] == 50
    # the average after the rollback's step is the average after step 50: the steps between left no trace (with the
    # Guard first, the average went back to its state before step 50's update and took the restored weights in)
    assert same(seen[KICK + 2], seen[50])


def moved(seen: dict, step: int) -> float:
    """How far the average's parameters moved from record ``step - 1`` to record ``step``."""
    now, before = seen[step], seen[step - 1]
    return sum(float((now[k] - before[k]).norm()) for k in now if now[k].is_floating_point())


@needs_ema
@pytest.mark.parametrize("guard_first", [True, False])
def test_a_rollback_puts_the_ema_average_back_as_it_was_at_the_snapshot(tmp_path, guard_first):
    guard, ema = Guard(verbose=False), EMAWeightAveraging(decay=0.9)
    seen = Averages(ema)
    callbacks = [guard, ema, seen] if guard_first else [ema, guard, seen]
    trainer, model = kicked_fit(tmp_path, "lightning.pytorch", callbacks)
    # the thrown-out weights were in the average: at step KICK + 1 it moved 100 times as far as in a step before
    assert moved(seen.seen, KICK + 1) > 100 * max(moved(seen.seen, k) for k in range(100, KICK + 1))
    check_rolled_back(guard, seen.seen)
    assert trainer.global_step == 160 and finite(model)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_a_rollback_puts_the_swa_average_and_its_count_back(tmp_path, namespace):
    # SWA averages at each epoch's start: the kick is an epoch's last step, so the next epoch's average takes the
    # thrown-out weights in before the Guard sees the jump at that epoch's first step
    pytest.importorskip(namespace.split(".")[0])
    callbacks_module = importlib.import_module(f"{namespace}.callbacks")
    guard, swa = Guard(verbose=False), callbacks_module.StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=1)
    seen = Averages(swa)
    _, model = kicked_fit(tmp_path, namespace, [guard, swa, seen])
    # epoch 8's average (taken at its start) took the thrown-out weights in: it moved 20 times as far as before
    assert moved(seen.epoch_start, 8) > 20 * max(moved(seen.epoch_start, e) for e in range(4, 8))
    check_rolled_back(guard, seen.seen)
    assert seen.seen[KICK + 2]["n_averaged"] == seen.seen[50]["n_averaged"] == 4  # epochs 0-3 averaged by step 50
    assert finite(model)  # (the average, put into the model at the end)
