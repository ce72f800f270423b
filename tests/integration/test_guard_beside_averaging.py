"""``Guard`` beside Lightning's own ``EMAWeightAveraging``: a rollback puts the model's weights back, the average
goes on from them, and the fit ends with finite averaged weights, whichever callback comes first."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from lightning_cyclic import Guard
from tests.callbacks.test_guard import Collapsing, Poisoned, finite, fit

try:
    from lightning.pytorch.callbacks import EMAWeightAveraging
except ImportError:  # Lightning before 2.6
    EMAWeightAveraging = None

pytestmark = pytest.mark.skipif(EMAWeightAveraging is None, reason="this Lightning has no EMAWeightAveraging (2.6+)")


class LastRaw(pl.Callback):
    """The model's own weights after the last optimizer step (before the average is swapped in)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.raw = [p.detach().clone() for p in pl_module.parameters()]


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
