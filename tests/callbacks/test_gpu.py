"""The GPU path: mixed precision and tensors on CUDA. Runs where CUDA is available (a GPU machine)."""

from __future__ import annotations

import pytest
import torch

from lightning_cyclic import OneCycle, WarmRestarts
from lightning_cyclic.shapes import OneCycleSchedule, WarmRestartsSchedule
from tests.helpers import TinyModule, tiny_loader, tiny_trainer

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
@pytest.mark.parametrize("precision", ["32-true", "16-mixed", "bf16-mixed"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_onecycle_on_cuda_with_mixed_precision(tmp_path, precision, optimizer):
    module = TinyModule(optimizer)
    trainer = tiny_trainer(
        tmp_path, [OneCycle(max_lr=0.05)], accelerator="gpu", precision=precision, accumulate_grad_batches=3
    )
    trainer.fit(module, tiny_loader())
    schedule = OneCycleSchedule(max_lr=0.05, total_steps=trainer.estimated_stepping_batches)
    assert [s for s, *_ in module.seen] == list(range(trainer.estimated_stepping_batches))
    for step, lr, mom, _ in module.seen:
        assert lr == pytest.approx(schedule.lr(step), rel=1e-12)
        assert mom == pytest.approx(schedule.momentum(step), rel=1e-12)
    assert trainer.strategy.root_device.type == "cuda"


class FusedAdamModule(TinyModule):
    def configure_optimizers(self):
        # a tensor lr, as capturable/fused optimizers keep it on the device
        return torch.optim.Adam(self.parameters(), lr=torch.tensor(0.01, device="cuda"), fused=True, capturable=True)


@cuda
def test_fused_adam_with_a_tensor_lr_on_cuda(tmp_path):
    module = FusedAdamModule()
    callback = WarmRestarts(max_lr=0.02, cycle_len=1, moms=(0.95, 0.85), interval="epoch")
    trainer = tiny_trainer(tmp_path, [callback], accelerator="gpu")
    trainer.fit(module, tiny_loader())
    lr = trainer.optimizers[0].param_groups[0]["lr"]
    assert isinstance(lr, torch.Tensor) and lr.device.type == "cuda"
    schedule = WarmRestartsSchedule(max_lr=0.02, cycle_len=8, moms=(0.95, 0.85))
    for step, seen_lr, mom, _ in module.seen:
        assert seen_lr == pytest.approx(schedule.lr(step), rel=1e-6)  # float32 tensor on the device
        assert mom == pytest.approx(schedule.momentum(step), rel=1e-12)


@cuda
@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed"])
def test_range_test_on_cuda_with_mixed_precision_restores_everything(tmp_path, precision):
    from tests.callbacks.test_lr_finder import RangeTestMidway, assert_same
    from tests.helpers import RichModule

    probe = RangeTestMidway()
    trainer = tiny_trainer(tmp_path, [probe], accelerator="gpu", precision=precision, max_epochs=2)
    trainer.fit(RichModule(), tiny_loader(learnable=True), tiny_loader(n=16, seed=1, learnable=True))
    assert probe.result.suggestion.lr is not None, probe.result.suggestion.reason
    assert probe.before["params_and_buffers"]["head.weight"].device.type == "cuda"
    assert_same(probe.before, probe.after)


@cuda
def test_onecycle_auto_on_cuda(tmp_path):
    from lightning_cyclic import LRFinder

    finder, schedule = LRFinder(min_lr=1e-4, num_steps=80), OneCycle(max_lr="auto")
    module = TinyModule()
    trainer = tiny_trainer(tmp_path, [finder, schedule], accelerator="gpu", precision="16-mixed")
    trainer.fit(module, tiny_loader(n=512, learnable=True))
    assert schedule.resolved["max_lr"] == finder.result.suggestion.lr
    # the module's on_before_optimizer_step saw the range test's steps first (and the GradScaler's skipped ones)
    first = finder.result.optimizer_steps + finder.result.extra["skipped_steps"]
    assert module.seen[first][1] == pytest.approx(schedule.resolved["max_lr"] / 25)
