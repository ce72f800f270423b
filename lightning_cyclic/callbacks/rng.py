"""``RngState``: the random number generators' states in each checkpoint, and back at a resume."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from typing_extensions import override

from lightning_cyclic._compat import Callback
from lightning_cyclic.snapshot import rng_states, set_rng_states


class RngState(Callback):
    """Put the states of torch's (CPU and CUDA), numpy's and Python's random number generators into each
    checkpoint, and back when a run resumes from it.

    Lightning saves no generator state, so a run resumed from an epoch's checkpoint draws its batch order
    (a ``RandomSampler`` draws each epoch's from torch's generator), its dropout masks and its augmentations
    from wherever ``seed_everything`` left the generators, and its weights part from the uninterrupted run's
    at the first step after the resume. With this callback they are the uninterrupted run's: a resume from an
    epoch's checkpoint ends with the same weights. The states are kept as tensors and plain numbers, so the
    checkpoint still loads with ``torch.load(weights_only=True)``. Under DDP the checkpoint holds rank 0's
    states and every rank takes them back (``DistributedSampler`` orders each epoch by its own seed).

    Example::

        trainer = Trainer(callbacks=[RngState(), ModelCheckpoint()])
        trainer.fit(model, ckpt_path="last")
    """

    @override
    def state_dict(self) -> dict[str, Any]:
        states = rng_states()
        kind, keys, pos, has_gauss, gauss = states["numpy"]
        states["numpy"] = (str(kind), torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss))
        return states

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        kind, keys, pos, has_gauss, gauss = state_dict["numpy"]
        states = dict(state_dict, numpy=(kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        if "cuda" in states and not (torch.cuda.is_available() and torch.cuda.device_count() == len(states["cuda"])):
            states.pop("cuda")  # (resumed on another machine: the CUDA generators stay as seeded)
        set_rng_states(states)
