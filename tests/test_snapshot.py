"""Snapshot puts back what it took, as often as it is restored."""

from __future__ import annotations

import torch
import torchmetrics

from lightning_cyclic.snapshot import Snapshot


class Running(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)
        self.mean = torchmetrics.MeanMetric()  # its update adds into its states in place
        self.accuracy = torchmetrics.Accuracy(task="multiclass", num_classes=3)


def test_metrics_come_back_after_in_place_updates_however_often_restored():
    module = Running()
    module.mean.update(torch.tensor(1.0))
    module.accuracy.update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    before = module.mean.compute().item(), module.accuracy.compute().item()
    snapshot = Snapshot(module)
    for value in (5.0, 7.0):
        snapshot.restore()
        module.mean.update(torch.tensor(value))
        module.accuracy.update(torch.tensor([2, 2]), torch.tensor([0, 1]))
    snapshot.restore()
    assert module.mean.update_count == 1 and module.mean.compute().item() == before[0] == 1.0
    assert module.mean.metric_state == {"mean_value": torch.tensor(1.0), "weight": torch.tensor(1.0)}
    assert module.accuracy.compute().item() == before[1] == 1.0


def test_gradients_come_back_after_backward_adds_to_them():
    module = Running()
    module.linear(torch.ones(1, 2)).sum().backward()
    kept = module.linear.weight.grad.clone()
    snapshot = Snapshot(module)
    for _ in range(2):
        module.zero_grad(set_to_none=True)
        snapshot.restore()
        module.linear(torch.ones(1, 2)).sum().backward()  # adds into the restored gradient
    snapshot.restore()
    assert torch.equal(module.linear.weight.grad, kept)
