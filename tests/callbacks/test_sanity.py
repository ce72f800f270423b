"""InitialLossCheck: the first loss against log(num_classes)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from lightning_cyclic import InitialLossCheck
from tests.helpers import TinyModule, tiny_loader, tiny_trainer


def run(tmp_path, scale: float):
    torch.manual_seed(0)
    module = TinyModule()
    with torch.no_grad():
        module.extra.weight.mul_(scale)
        module.extra.bias.zero_()  # logits ~ 0 for a small scale: the loss starts at log(3)
    check = InitialLossCheck(num_classes=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tiny_trainer(tmp_path, [check], max_epochs=1).fit(module, tiny_loader())
    return check, [w for w in caught if "InitialLossCheck" in str(w.message)]


def test_a_sane_start_passes_quietly(tmp_path):
    check, warned = run(tmp_path, scale=0.01)
    assert check.expected == pytest.approx(math.log(3))
    assert check.initial_loss == pytest.approx(math.log(3), rel=0.02) and not warned


def test_a_far_off_start_warns_with_the_numbers(tmp_path):
    check, warned = run(tmp_path, scale=300.0)  # huge logits: the first loss is far above log(3)
    assert check.initial_loss > 3 * math.log(3)
    assert len(warned) == 1
    message = str(warned[0].message)
    assert f"{check.initial_loss:.4g}" in message and "log(3) = 1.099" in message


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_classes must be >= 2, got 1"):
        InitialLossCheck(num_classes=1)
    with pytest.raises(ValueError, match="tolerance must be > 0, got 0"):
        InitialLossCheck(tolerance=0)
