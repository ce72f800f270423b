"""``RngState``: a run resumed from an epoch's checkpoint draws what the uninterrupted run drew (its batch order
and dropout masks), and ends with the same weights; without it, it does not."""

from __future__ import annotations

import importlib

import lightning
import pytest
import torch
from packaging.version import Version
from torch.utils.data import DataLoader

from lightning_cyclic import RngState
from tests.helpers import tiny_trainer

NAMESPACES = ["lightning.pytorch", "pytorch_lightning"]
# Lightning before 2.6 (measured on 2.1.4) draws the next epoch's batch order before it saves an epoch's checkpoint,
# so a resume draws that epoch's order again from the restored state: the generators are the uninterrupted run's,
# the first resumed epoch's batches are not
EXACT = Version(lightning.__version__) >= Version("2.6")


def model_and_data(namespace: str):
    """Lightning's demo ``BoringModel`` (of ``namespace``) with dropout, on its random data shuffled each epoch by
    a ``RandomSampler`` (which draws each epoch's order from torch's global generator)."""
    demos = importlib.import_module(f"{namespace}.demos.boring_classes")

    class Dropped(demos.BoringModel):
        def __init__(self):
            super().__init__()
            self.drop = torch.nn.Dropout(0.5)

        def forward(self, x):
            return self.layer(self.drop(x))

    torch.manual_seed(0)
    return Dropped(), DataLoader(demos.RandomDataset(32, 64), batch_size=8, shuffle=True)


def fit(tmp_path, namespace: str, rng: bool, ckpt_path=None):
    package = pytest.importorskip(namespace.split(".")[0])
    callbacks_module = importlib.import_module(f"{namespace}.callbacks")
    saver = callbacks_module.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, filename="{epoch}")
    callbacks = [saver, RngState()] if rng else [saver]
    trainer = tiny_trainer(tmp_path, callbacks, package, max_epochs=4, enable_checkpointing=True)
    model, data = model_and_data(namespace)
    trainer.fit(model, data, ckpt_path=ckpt_path)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_its_state_puts_every_generator_back_and_survives_weights_only_loading(tmp_path):
    import random

    import numpy as np

    callback = RngState()
    path = tmp_path / "state.pt"
    torch.save(callback.state_dict(), path)
    drawn = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    callback.load_state_dict(torch.load(path, weights_only=True))  # tensors and plain numbers only
    again = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    assert torch.equal(drawn[0], again[0]) and (drawn[1] == again[1]).all() and drawn[2] == again[2]


@pytest.mark.skipif(not EXACT, reason="Lightning before 2.6 draws an epoch's batch order before the save before it")
@pytest.mark.parametrize("namespace", NAMESPACES)
def test_a_resume_from_an_epochs_checkpoint_ends_with_the_uninterrupted_runs_weights(tmp_path, namespace):
    whole = fit(tmp_path / "whole", namespace, rng=True)
    ckpt = tmp_path / "whole" / "ckpt" / "epoch=1.ckpt"
    resumed = fit(tmp_path / "resumed", namespace, rng=True, ckpt_path=str(ckpt))
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    # the checkpoint holds tensors and plain numbers only: it loads with weights_only=True
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert set(state["callbacks"]["RngState"]) >= {"torch", "numpy", "python"}


def test_without_it_the_resumed_run_draws_other_batches_and_dropout(tmp_path):
    whole = fit(tmp_path / "whole", "lightning.pytorch", rng=False)
    ckpt = tmp_path / "whole" / "ckpt" / "epoch=1.ckpt"
    resumed = fit(tmp_path / "resumed", "lightning.pytorch", rng=False, ckpt_path=str(ckpt))
    assert not all(torch.equal(whole[k], resumed[k]) for k in whole)  # what the callback is for


def test_a_checkpoint_without_its_state_loads_and_leaves_the_generators_as_seeded():
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    RngState().load_state_dict({})
    assert torch.equal(torch.rand(3), expected)
