"""ScheduleMixin: the schedule inside configure_optimizers gives the callback's trajectory."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from lightning_cyclic import OneCycle, WarmRestarts
from lightning_cyclic.models import MLP, Classifier
from lightning_cyclic.shapes import OneCycleSchedule
from tests.helpers import tiny_loader, tiny_trainer


class Lrs(Callback):
    def __init__(self):
        self.lrs = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.lrs.append([(g["lr"], g["momentum"]) for g in optimizer.param_groups])


def run(tmp_path, schedule=None, callback=None, **trainer_kwargs):
    torch.manual_seed(0)
    module = Classifier(
        partial(MLP, hidden=[8]), partial(torch.optim.SGD, lr=0.1, momentum=0.9), (4,), 3, {"net.1": 0.1}, schedule
    )
    record = Lrs()
    callbacks = [record] + ([callback] if callback is not None else [])
    tiny_trainer(tmp_path, callbacks, **trainer_kwargs).fit(module, tiny_loader())
    return record.lrs


@pytest.mark.parametrize(
    "make",
    [
        lambda: OneCycle(max_lr=0.4),
        lambda: WarmRestarts(max_lr=0.4, cycle_len=1, cycle_mult=2, interval="epoch", moms=(0.95, 0.85)),
    ],
    ids=["onecycle", "warm_restarts"],
)
def test_scheduler_path_equals_callback_path(tmp_path, make):
    kwargs = dict(max_epochs=3, accumulate_grad_batches=3)
    via_callback = run(tmp_path / "a", callback=make(), **kwargs)
    via_scheduler = run(tmp_path / "b", schedule=make(), **kwargs)
    assert len(via_callback) == len(via_scheduler) == 9
    for a, b in zip(via_callback, via_scheduler):
        assert a == [(pytest.approx(x), pytest.approx(y)) for x, y in b]
        assert a[0][0] == pytest.approx(0.1 * a[1][0])  # lr_mult's ratio kept


def test_a_schedule_shape_in_optimizer_steps(tmp_path):
    lrs = run(tmp_path, schedule=OneCycleSchedule(max_lr=0.2, total_steps=24), max_epochs=3)
    assert [s[1][0] for s in lrs] == [
        pytest.approx(OneCycleSchedule(max_lr=0.2, total_steps=24).lr(k)) for k in range(24)
    ]


def test_auto_needs_the_callback_path(tmp_path):
    with pytest.raises(ValueError, match="needs the LR range test, which runs after configure_optimizers"):
        run(tmp_path, schedule=OneCycle(max_lr="auto"), max_epochs=1)


def test_anything_else_is_refused(tmp_path):
    with pytest.raises(TypeError, match=r"schedule must be a schedule callback, a lightning_cyclic\.shapes\.Schedule"):
        run(tmp_path, schedule="onecycle", max_epochs=1)


def test_epoch_lengths_with_total_steps_are_converted_as_the_callback_does(tmp_path):
    """A one-epoch warmup given with total_steps: 8 steps per epoch on both paths, never 1."""
    from lightning_cyclic import WarmupDecay

    def make():
        return WarmupDecay(max_lr=0.4, warmup=1, decay="linear", interval="epoch", total_steps=24)

    via_callback = run(tmp_path / "a", callback=make(), max_epochs=3)
    via_scheduler = run(tmp_path / "b", schedule=make(), max_epochs=3)
    head = [s[1][0] for s in via_scheduler]
    assert head[:9] == [pytest.approx(0.4 * k / 8) for k in range(8)] + [pytest.approx(0.4)]  # warmup over 8 steps
    assert head == [pytest.approx(s[1][0]) for s in via_callback]


def test_an_unsized_loader_with_epoch_lengths_fails_alike_on_both_paths(tmp_path):
    """One rule for the run's length (``plan``): a loader without a length has no epoch to convert, on either path
    (the mixin once counted such an epoch as one step)."""
    from torch.utils.data import DataLoader, IterableDataset

    class Stream(IterableDataset):
        def __iter__(self):
            g = torch.Generator().manual_seed(0)
            for _ in range(64):
                yield torch.randn(4, generator=g), torch.randint(0, 3, (), generator=g)

    def fit(schedule=None, callback=None):
        module = Classifier(partial(MLP, hidden=[8]), partial(torch.optim.SGD, lr=0.1), (4,), 3, None, schedule)
        trainer = tiny_trainer(tmp_path, [callback] if callback else [], max_steps=10)
        trainer.fit(module, DataLoader(Stream(), batch_size=8))

    def make():
        return WarmRestarts(max_lr=0.4, cycle_len=1, interval="epoch")

    for kwargs in (dict(callback=make()), dict(schedule=make())):
        with pytest.raises(ValueError, match=r"WarmRestarts\(interval='epoch'\): interval='epoch' needs the number"):
            fit(**kwargs)
