"""Small convolutional networks: ``CNN1D`` for signals such as MNIST-1D, ``CNN2D`` for 28x28 images."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from lightning_cyclic.shapes._checks import check_choice, check_number


def _check_widths(name: str, widths: Sequence[int], allow_empty: bool) -> tuple[int, ...]:
    widths = tuple(widths)
    if not widths and not allow_empty:
        raise ValueError(f"{name} must hold at least one width, got {widths!r}")
    for width in widths:
        check_number(name, width, 1, integer=True)
    return tuple(int(w) for w in widths)


def _head(features: int, num_classes: int, hidden: Sequence[int], dropout: float, batch_norm: bool) -> list[nn.Module]:
    """``[Dropout] -> Linear -> [BatchNorm] -> ReLU`` per hidden width, then ``[Dropout] -> Linear``."""
    layers: list[nn.Module] = []
    for width in hidden:
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(features, width))
        if batch_norm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(nn.ReLU())
        features = width
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(features, num_classes))
    return layers


class CNN1D(nn.Sequential):
    """``Conv1d -> [BatchNorm] -> ReLU`` per entry of ``channels``, then a linear head.

    The default is the MNIST-1D paper's small convnet (three strided convolutions,
    flattened into a linear layer), with 32 channels.

    Args:
        input_shape: ``(channels, length)``, or ``(length,)`` for one channel; inputs of
            either layout (``(N, C, L)`` or flat ``(N, C * L)``) are accepted.
        num_classes: outputs of the head.
        channels: output channels of the convolutions.
        kernel_size: kernel of every convolution ("same" padding, ``kernel_size // 2``).
        stride: stride of every convolution; each divides the length by about ``stride``.
        pool: ``"flatten"`` feeds every position to the head (keeps where features are),
            ``"avg"`` averages over the length first (fewer parameters, shift invariant).
        dropout: dropout probability before the linear head, in [0, 1).
        batch_norm: batch norm after each convolution.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (32, 32, 32),
        kernel_size: int = 5,
        stride: int = 2,
        pool: str = "flatten",
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        input_shape = tuple(int(s) for s in input_shape)
        if len(input_shape) not in (1, 2) or min(input_shape) < 1:
            raise ValueError(f"input_shape must be (channels, length) or (length,), got {input_shape}")
        check_number("num_classes", num_classes, 1, integer=True)
        channels = _check_widths("channels", channels, allow_empty=False)
        check_number("kernel_size", kernel_size, 1, integer=True)
        check_number("stride", stride, 1, integer=True)
        check_choice("pool", pool, ("flatten", "avg"))
        check_number("dropout", dropout, 0, 1, high_open=True)
        width_in, length = (1, *input_shape) if len(input_shape) == 1 else input_shape
        layers: list[nn.Module] = [nn.Flatten(), nn.Unflatten(1, (width_in, length))]
        for width in channels:
            layers.append(nn.Conv1d(width_in, width, kernel_size, stride=stride, padding=kernel_size // 2))
            length = (length + 2 * (kernel_size // 2) - kernel_size) // stride + 1  # >= 1 with this padding
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(nn.ReLU())
            width_in = width
        if pool == "avg":
            layers.append(nn.AdaptiveAvgPool1d(1))
            length = 1
        layers.append(nn.Flatten())
        layers.extend(_head(width_in * length, num_classes, (), dropout, batch_norm))
        super().__init__(*layers)


class CNN2D(nn.Sequential):
    """``Conv2d -> [BatchNorm] -> ReLU -> MaxPool(2)`` per entry of ``channels``, then an MLP head.

    With the defaults on 28x28 images: 32 and 64 channels of 3x3 kernels, 64x7x7
    features, a hidden layer of 128 and the output layer.

    Args:
        input_shape: ``(channels, height, width)``, ``(height, width)``, or ``(n,)`` with
            ``n`` a square (``(784,)`` is read as one 28x28 channel, ``(64,)`` as 8x8); inputs
            may come flat or as images.
        num_classes: outputs of the head.
        channels: output channels of the convolutions; each is followed by 2x2 max pooling.
        kernel_size: kernel of every convolution ("same" padding, odd sizes keep the size).
        hidden: widths of the hidden linear layers of the head.
        dropout: dropout probability before every linear layer, in [0, 1).
        batch_norm: batch norm after each convolution and hidden linear layer.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (32, 64),
        kernel_size: int = 3,
        hidden: Sequence[int] = (128,),
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        input_shape = tuple(int(s) for s in input_shape)
        image_shape = _image_shape(input_shape)
        check_number("num_classes", num_classes, 1, integer=True)
        channels = _check_widths("channels", channels, allow_empty=False)
        check_number("kernel_size", kernel_size, 1, integer=True)
        hidden = _check_widths("hidden", hidden, allow_empty=True)
        check_number("dropout", dropout, 0, 1, high_open=True)
        width_in, height, width_px = image_shape
        layers: list[nn.Module] = [nn.Flatten(), nn.Unflatten(1, image_shape)]
        for width in channels:
            layers.append(nn.Conv2d(width_in, width, kernel_size, padding=kernel_size // 2))
            if batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers += [nn.ReLU(), nn.MaxPool2d(2)]
            height, width_px = ((size + 2 * (kernel_size // 2) - kernel_size + 1) // 2 for size in (height, width_px))
            if min(height, width_px) < 1:
                raise ValueError(
                    f"input_shape {input_shape} is too small for {len(channels)} blocks of kernel_size {kernel_size} "
                    f"and 2x2 pooling (channels={channels}); use fewer channels entries"
                )
            width_in = width
        layers.append(nn.Flatten())
        layers.extend(_head(width_in * height * width_px, num_classes, hidden, dropout, batch_norm))
        super().__init__(*layers)


def _image_shape(input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``(channels, height, width)`` of ``input_shape``; a flat square size is one square channel."""
    if len(input_shape) == 1 and math.isqrt(input_shape[0]) ** 2 == input_shape[0] and input_shape[0] > 0:
        side = math.isqrt(input_shape[0])
        return 1, side, side
    if len(input_shape) == 2 and min(input_shape) > 0:
        return (1, *input_shape)
    if len(input_shape) == 3 and min(input_shape) > 0:
        return input_shape
    raise ValueError(
        f"input_shape must be (channels, height, width), (height, width) or (n,) with n a square, got {input_shape}"
    )
