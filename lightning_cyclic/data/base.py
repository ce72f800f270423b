"""What every embedded dataset shares: tensors in memory, and one way to make DataLoaders."""

from __future__ import annotations

import lightning.pytorch as pl
from torch.utils.data import DataLoader, TensorDataset


class TensorDataModule(pl.LightningDataModule):
    """Subclasses fill ``train_set``, ``val_set`` (and ``test_set`` where there is one) in ``setup``;
    their hparams hold ``batch_size``, ``num_workers`` and ``pin_memory``."""

    def __init__(self) -> None:
        super().__init__()
        self.train_set: TensorDataset | None = None
        self.val_set: TensorDataset | None = None
        self.test_set: TensorDataset | None = None

    def _loader(self, dataset: TensorDataset | None, shuffle: bool, split: str) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__} has no {split} set: call setup() first, or it has none")
        return DataLoader(
            dataset,
            batch_size=self.hparams["batch_size"],
            shuffle=shuffle,
            num_workers=self.hparams["num_workers"],
            pin_memory=self.hparams["pin_memory"],
            persistent_workers=self.hparams["num_workers"] > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True, split="train")

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False, split="validation")

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False, split="test")
