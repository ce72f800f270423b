"""A multi-layer perceptron with optional dropout and batch norm."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from lightning_cyclic.shapes._checks import check_number


class MLP(nn.Sequential):
    """``Linear -> [BatchNorm] -> ReLU -> [Dropout]`` per hidden layer, then a linear head.

    Args:
        input_shape: shape of one sample; it is flattened.
        num_classes: outputs of the head.
        hidden: widths of the hidden layers.
        dropout: dropout probability after each hidden layer, in [0, 1).
        batch_norm: batch norm after each hidden linear layer.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        hidden: Sequence[int] = (128,),
        dropout: float = 0.0,
        batch_norm: bool = False,
    ) -> None:
        check_number("dropout", dropout, 0, 1, high_open=True)
        for width in hidden:
            check_number("hidden", width, 1, integer=True)
        layers: list[nn.Module] = [nn.Flatten()]
        width_in = math.prod(input_shape)
        for width in hidden:
            layers.append(nn.Linear(width_in, width))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width_in = width
        layers.append(nn.Linear(width_in, num_classes))
        super().__init__(*layers)
