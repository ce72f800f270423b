"""CNN1D and CNN2D: output shapes, input layouts, a step that learns, argument checks."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from lightning_cyclic.models import CNN1D, CNN2D, Classifier
from tests.helpers import assert_one_sgd_step_reduces_the_loss


@pytest.mark.parametrize(
    ("input_shape", "kwargs"),
    [
        ((1, 40), {}),
        ((40,), {}),  # a flattened MNIST-1D sample
        ((3, 17), {"channels": (8, 16), "kernel_size": 3, "stride": 1}),
        ((1, 40), {"pool": "avg", "batch_norm": True, "dropout": 0.2}),
        ((1, 5), {"channels": (4,) * 6}),  # strides shrink the length to 1, no further
    ],
)
def test_cnn1d_output_shape(input_shape, kwargs):
    net = CNN1D(input_shape, num_classes=10, **kwargs)
    assert net(torch.randn(4, *input_shape)).shape == (4, 10)


def test_cnn1d_accepts_both_input_layouts():
    net = CNN1D((1, 40), num_classes=10).eval()
    x = torch.randn(3, 1, 40)
    assert torch.equal(net(x), net(x.reshape(3, 40)))


@pytest.mark.parametrize(
    ("input_shape", "kwargs"),
    [
        ((1, 28, 28), {}),
        ((784,), {}),  # flattened Fashion-MNIST
        ((28, 28), {"batch_norm": True, "dropout": 0.3}),
        ((64,), {}),  # scikit-learn's digits, read as 8x8
        ((3, 32, 32), {"channels": (8, 8, 8), "hidden": (), "kernel_size": 5}),
    ],
)
def test_cnn2d_output_shape(input_shape, kwargs):
    net = CNN2D(input_shape, num_classes=7, **kwargs)
    assert net(torch.randn(4, *input_shape)).shape == (4, 7)


def test_cnn2d_accepts_both_input_layouts():
    net = CNN2D((1, 28, 28), num_classes=10).eval()
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(net(x), net(x.reshape(3, 784)))


@pytest.mark.parametrize(
    "make",
    [
        partial(CNN1D, (1, 40)),
        partial(CNN1D, (1, 40), batch_norm=True, pool="avg"),
        partial(CNN2D, (1, 28, 28)),
        partial(CNN2D, (1, 28, 28), batch_norm=True, hidden=()),
    ],
)
def test_one_optimizer_step_reduces_the_loss(make):
    torch.manual_seed(0)
    net = make(num_classes=10)
    assert_one_sgd_step_reduces_the_loss(net, lr=1e-3)


@pytest.mark.parametrize(
    ("net", "input_shape"),
    [(partial(CNN1D, channels=(8, 8), dropout=0.1), (1, 40)), (partial(CNN2D, channels=(4, 8)), (1, 28, 28))],
)
def test_classifier_builds_the_net_from_a_partial(net, input_shape):
    model = Classifier(
        net=net, optimizer=partial(torch.optim.SGD, lr=0.1), input_shape=list(input_shape), num_classes=10
    )
    assert model(torch.randn(2, *input_shape)).shape == (2, 10)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (partial(CNN1D, (1, 40), pool="max"), "pool must be one of 'flatten', 'avg', got 'max'"),
        (partial(CNN1D, (1, 40), dropout=1.0), r"dropout must be in \[0, 1\), got 1.0"),
        (partial(CNN1D, (1, 40), channels=(32, 0)), "channels must be >= 1, got 0"),
        (partial(CNN1D, (1, 40), channels=()), r"channels must hold at least one width, got \(\)"),
        (partial(CNN1D, (1, 40), stride=0), "stride must be >= 1, got 0"),
        (partial(CNN1D, (2, 3, 40)), r"input_shape must be \(channels, length\) or \(length,\), got \(2, 3, 40\)"),
        (partial(CNN2D, (63,)), r"input_shape must be .* with n a square, got \(63,\)"),
        (partial(CNN2D, (1, 4, 4), channels=(8, 8, 8)), r"input_shape \(1, 4, 4\) is too small for 3 blocks"),
        (partial(CNN2D, (1, 28, 28), kernel_size=0), "kernel_size must be >= 1, got 0"),
        (partial(CNN2D, (1, 28, 28), hidden=(16, -1)), "hidden must be >= 1, got -1"),
    ],
)
def test_bad_arguments_name_the_argument(make, message):
    with pytest.raises(ValueError, match=message):
        make(num_classes=10)
