"""scikit-learn's handwritten digits: 1,797 8x8 images in 10 classes, shipped with scikit-learn."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from lightning_cyclic._extras import needs
from lightning_cyclic.data.base import TensorDataModule
from lightning_cyclic.shapes._checks import check_number


class DigitsDataModule(TensorDataModule):
    """Digits as flat 64-feature vectors, standardised with the training split's statistics.

    One mean and one std over all pixels (as for the other image data), not one per pixel: a
    pixel that is constant in the training split would get a std near zero and turn a validation
    image that differs there into values in the hundreds (one such image made up 0.45 of a
    validation loss of 0.665).

    Args:
        batch_size: samples per batch.
        val_fraction: share of the data held out for validation, split with ``split_seed``.
        split_seed: seed of the train/validation split (fixed, independent of the run's seed).
        num_workers: passed to the DataLoaders.
        pin_memory: passed to the DataLoaders.
    """

    num_classes = 10
    input_shape = (64,)

    def __init__(
        self,
        batch_size: int = 64,
        val_fraction: float = 0.2,
        split_seed: int = 0,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        check_number("batch_size", batch_size, 1, integer=True)
        check_number("val_fraction", val_fraction, 0, 1, low_open=True, high_open=True)
        check_number("num_workers", num_workers, 0, integer=True)
        self.save_hyperparameters()

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        with needs("data", "DigitsDataModule"):
            from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        x = torch.as_tensor(x, dtype=torch.float32)
        y = torch.as_tensor(y, dtype=torch.long)
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.hparams["split_seed"]))
        n_val = round(len(x) * self.hparams["val_fraction"])
        val_idx, train_idx = order[:n_val], order[n_val:]
        mean, std = x[train_idx].mean(), x[train_idx].std()
        x = (x - mean) / std
        self.train_set = TensorDataset(x[train_idx], y[train_idx])
        self.val_set = TensorDataset(x[val_idx], y[val_idx])
