"""Embedded datasets as LightningDataModules (no downloads)."""

from lightning_cyclic.data.digits import DigitsDataModule

__all__ = ["DigitsDataModule"]
