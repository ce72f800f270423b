"""ResNet: output shapes, input layouts, its layout of stages and blocks, a step that learns, argument checks."""

from __future__ import annotations

from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_cyclic.models import Classifier, ResNet
from lightning_cyclic.models.resnet import BasicBlock
from tests.helpers import assert_one_sgd_step_reduces_the_loss


@pytest.mark.parametrize(
    ("input_shape", "kwargs"),
    [
        ((1, 28, 28), {}),
        ((3, 32, 32), {}),
        ((784,), {}),  # flattened Fashion-MNIST, read as one 28x28 channel
        ((28, 28), {"blocks_per_stage": 2}),
        ((64,), {}),  # scikit-learn's digits, read as 8x8
        ((3, 32, 32), {"channels": (8, 16, 32, 64), "dropout": 0.3, "batch_norm": False}),
    ],
)
def test_output_shape(input_shape, kwargs):
    net = ResNet(input_shape, num_classes=7, **kwargs)
    assert net(torch.randn(4, *input_shape)).shape == (4, 7)


@pytest.mark.parametrize("input_shape", [(1, 28, 28), (3, 32, 32)])
def test_accepts_flat_and_image_inputs(input_shape):
    net = ResNet(input_shape, num_classes=10).eval()
    x = torch.randn(3, *input_shape)
    assert torch.equal(net(x), net(x.reshape(3, -1)))


def feature_shapes(net: ResNet, x: torch.Tensor) -> list[tuple[int, ...]]:
    """Shapes after the stem and after each stage."""
    shapes = []
    for layer in net:
        x = layer(x)
        if isinstance(layer, nn.ReLU) or (isinstance(layer, nn.Sequential) and isinstance(layer[0], BasicBlock)):
            shapes.append(tuple(x.shape[1:]))
    return shapes


def test_stages_widen_and_halve_the_resolution():
    net = ResNet((3, 32, 32), num_classes=10, blocks_per_stage=3)
    assert feature_shapes(net, torch.randn(2, 3, 32, 32)) == [(16, 32, 32), (16, 32, 32), (32, 16, 16), (64, 8, 8)]
    assert feature_shapes(ResNet((1, 28, 28), 10), torch.randn(2, 1, 28, 28))[-1] == (64, 7, 7)
    assert sum(isinstance(m, BasicBlock) for m in net.modules()) == 9
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) + 1 == 20  # ResNet-20 of the paper: 19 3x3 convolutions and the linear layer
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(0.27e6, rel=0.02)  # the paper's 0.27M


def test_batch_norm_false_puts_identities_in_its_place():
    with_bn = ResNet((3, 32, 32), num_classes=10)
    without = ResNet((3, 32, 32), num_classes=10, batch_norm=False)
    assert any(isinstance(m, nn.BatchNorm2d) for m in with_bn.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in without.modules())
    assert all(m.bias is None for m in with_bn.modules() if isinstance(m, nn.Conv2d))  # bn has the bias
    assert all(m.bias is not None for m in without.modules() if isinstance(m, nn.Conv2d))


def test_residual_shortcuts_project_only_where_the_shape_changes():
    blocks = [m for m in ResNet((3, 32, 32), 10, blocks_per_stage=2).modules() if isinstance(m, BasicBlock)]
    projected = [not isinstance(b.shortcut, nn.Identity) for b in blocks]
    assert projected == [False, False, True, False, True, False]


@pytest.mark.parametrize(
    "make",
    [
        partial(ResNet, (1, 28, 28)),
        partial(ResNet, (3, 32, 32), batch_norm=False),
        partial(ResNet, (3, 32, 32), channels=(8, 16), blocks_per_stage=2, dropout=0.1),
    ],
)
def test_one_sgd_step_reduces_the_loss_on_a_fixed_batch(make):
    torch.manual_seed(0)
    net = make(num_classes=10).eval()  # fixed batch-norm statistics and no dropout: the same function twice
    assert_one_sgd_step_reduces_the_loss(net, lr=1e-2)


def test_trains_in_train_mode_with_batch_statistics():
    torch.manual_seed(0)
    net = ResNet((1, 28, 28), num_classes=10)
    x, y = torch.randn(32, 1, 28, 28), torch.arange(32) % 10
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(10):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]  # it fits the batch, from about ln(10)


def test_classifier_builds_it_from_a_partial():
    model = Classifier(
        net=partial(ResNet, channels=(8, 16)),
        optimizer=partial(torch.optim.SGD, lr=0.1),
        input_shape=[3, 32, 32],
        num_classes=10,
    )
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (partial(ResNet, (63,)), r"input_shape must be .* with n a square, got \(63,\)"),
        (partial(ResNet, (1, 28, 28), channels=()), r"channels must hold at least one width, got \(\)"),
        (partial(ResNet, (1, 28, 28), channels=(16, 0)), "channels must be >= 1, got 0"),
        (partial(ResNet, (1, 28, 28), blocks_per_stage=0), "blocks_per_stage must be >= 1, got 0"),
        (partial(ResNet, (1, 28, 28), dropout=1.0), r"dropout must be in \[0, 1\), got 1.0"),
    ],
)
def test_bad_arguments_name_the_argument(make, message):
    with pytest.raises(ValueError, match=message):
        make(num_classes=10)
