"""A small ResNet (He et al., 2016) for 28x28 and 32x32 images, in the CIFAR layout of the paper."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lightning_cyclic.models.cnn import _check_widths, _image_shape
from lightning_cyclic.shapes._checks import check_number


def _norm(channels: int, batch_norm: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


class BasicBlock(nn.Module):
    """``relu(conv3x3 -> norm -> relu -> conv3x3 -> norm  +  shortcut)``.

    The shortcut is the identity, or ``conv1x1 -> norm`` where the block changes the number
    of channels or strides. ``norm`` is batch norm, or the identity with ``batch_norm=False``
    (the convolutions then have biases).
    """

    def __init__(self, width_in: int, width: int, stride: int = 1, batch_norm: bool = True) -> None:
        super().__init__()
        bias = not batch_norm
        self.conv1 = nn.Conv2d(width_in, width, 3, stride=stride, padding=1, bias=bias)
        self.norm1 = _norm(width, batch_norm)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=bias)
        self.norm2 = _norm(width, batch_norm)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or width_in != width:
            self.shortcut = nn.Sequential(
                nn.Conv2d(width_in, width, 1, stride=stride, bias=bias), _norm(width, batch_norm)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Sequential):
    """A ``conv3x3 -> norm -> ReLU`` stem, a stage of ``BasicBlock`` s per entry of ``channels``,
    global average pooling and a linear head.

    Each stage after the first halves the height and width (its first block has stride 2).
    The defaults, 16, 32 and 64 channels with one block per stage, make an 8-layer ResNet
    of about 78,000 parameters; ``blocks_per_stage=3`` is the paper's ResNet-20 for CIFAR-10.

    Args:
        input_shape: ``(channels, height, width)``, ``(height, width)``, or ``(n,)`` with
            ``n`` a square (``(784,)`` is read as one 28x28 channel); inputs may come flat or as
            images, as for :class:`~lightning_cyclic.models.CNN2D`.
        num_classes: outputs of the head.
        channels: width of each stage; the stem has the first stage's width.
        blocks_per_stage: residual blocks in every stage.
        dropout: dropout probability before the linear head, in [0, 1).
        batch_norm: batch norm after each convolution; ``False`` puts the identity in its place.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (16, 32, 64),
        blocks_per_stage: int = 1,
        dropout: float = 0.0,
        batch_norm: bool = True,
    ) -> None:
        input_shape = tuple(int(s) for s in input_shape)
        image_shape = _image_shape(input_shape)
        check_number("num_classes", num_classes, 1, integer=True)
        channels = _check_widths("channels", channels, allow_empty=False)
        check_number("blocks_per_stage", blocks_per_stage, 1, integer=True)
        check_number("dropout", dropout, 0, 1, high_open=True)
        width_in = image_shape[0]
        layers: list[nn.Module] = [
            nn.Flatten(),
            nn.Unflatten(1, image_shape),
            nn.Conv2d(width_in, channels[0], 3, padding=1, bias=not batch_norm),
            _norm(channels[0], batch_norm),
            nn.ReLU(),
        ]
        width_in = channels[0]
        for stage, width in enumerate(channels):
            blocks = []
            for block in range(int(blocks_per_stage)):
                stride = 2 if stage > 0 and block == 0 else 1
                blocks.append(BasicBlock(width_in, width, stride, batch_norm))
                width_in = width
            layers.append(nn.Sequential(*blocks))
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(width_in, num_classes))
        super().__init__(*layers)
