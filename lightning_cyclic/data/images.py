"""Image datasets read from a folder of files: the arguments, checks and missing-file message they share."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch.utils.data import TensorDataset

from lightning_cyclic.data.augment import AugmentedDataModule, BatchAugmentation
from lightning_cyclic.shapes._checks import check_number


class ImageFolderDataModule(AugmentedDataModule):
    """Subclasses set the class attributes and read the files in ``setup``.

    Args:
        root: the folder with the files (``None``: ``default_root``).
        batch_size: for the DataLoaders.
        num_workers: for the DataLoaders.
        pin_memory: for the DataLoaders.
        val_fraction: share of the training files held out for validation, split with ``split_seed``.
        flatten: give flat vectors (for an MLP) instead of ``input_shape`` images.
        limit_train: use only this many training images (after the seeded shuffle).
        augment: random crop (4 pixels of reflection padding) and, where ``augment_flip``, flip.
        cutout: side of the square cut out of every training image (0: off).
        mixup: mixup's alpha (0: off); training targets become class probabilities.
    """

    input_shape: tuple[int, ...]
    num_classes: int
    dataset_name: ClassVar[str] = "images"
    files: ClassVar[tuple[str, ...]] = ()  # every file the folder should hold
    gzip_ok: ClassVar[bool] = False  # each file may also be NAME.gz
    files_description: ClassVar[str] = "the files"
    how_to_get: ClassVar[str] = (
        "Put the files into that folder and pass root=/path/to/folder (data.root=... in train.py)."
    )
    default_root: ClassVar[str | None] = None
    augment_flip: ClassVar[bool] = True  # whether ``augment`` flips left-right

    def __init__(
        self,
        root: str | None = None,
        batch_size: int = 128,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        num_workers: int = 0,
        pin_memory: bool = False,
        flatten: bool = False,
        limit_train: int | None = None,
        augment: bool = False,
        cutout: int = 0,
        mixup: float = 0.0,
    ) -> None:
        super().__init__()
        check_number("batch_size", batch_size, 1, integer=True)
        check_number("val_fraction", val_fraction, 0, 1, low_open=True, high_open=True)
        check_number("num_workers", num_workers, 0, integer=True)
        if limit_train is not None:
            check_number("limit_train", limit_train, 1, integer=True)
        if root is None and self.default_root is None:
            raise ValueError(f"root must be the folder with {self.files_description} of {self.dataset_name}, got None")
        self.augmentation = BatchAugmentation(
            type(self).input_shape, self.num_classes, augment, cutout, mixup, flip=self.augment_flip
        )
        root = str(root if root is not None else self.default_root)  # the folder used is what hparams record
        self.save_hyperparameters()
        self.root = Path(root).expanduser()
        if flatten:
            self.input_shape = (int(np.prod(type(self).input_shape)),)

    def _tensors(self, images: np.ndarray, labels: np.ndarray, fit: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised image and label tensors; ``fit`` takes the statistics from these images."""
        raise NotImplementedError

    def _set_train_val(self, images: np.ndarray, labels: np.ndarray) -> None:
        """``train_set`` and ``val_set`` from the training files: a ``split_seed`` shuffle, ``val_fraction``
        held out, ``limit_train`` applied to the rest, standardised with the training split's statistics."""
        generator = torch.Generator().manual_seed(self.hparams["split_seed"])
        order = torch.randperm(len(images), generator=generator).numpy()
        n_val = round(len(images) * self.hparams["val_fraction"])
        val_idx, train_idx = order[:n_val], order[n_val:]
        if self.hparams["limit_train"] is not None:
            train_idx = train_idx[: self.hparams["limit_train"]]
        self.train_set = TensorDataset(*self._tensors(images[train_idx], labels[train_idx], fit=True))
        self.val_set = TensorDataset(*self._tensors(images[val_idx], labels[val_idx]))

    def missing_files(self) -> list[str]:
        """The dataset's files not found in ``root`` (as ``name(.gz)`` where gzip is accepted); ``[]`` if none."""
        suffixes = ("", ".gz") if self.gzip_ok else ("",)
        shown = "{}(.gz)" if self.gzip_ok else "{}"
        return [shown.format(n) for n in self.files if not any((self.root / f"{n}{s}").is_file() for s in suffixes)]

    def _file(self, name: str) -> Path:
        """The path of ``name`` in ``root``; ``FileNotFoundError`` naming every missing file and how to get them."""
        root = self.root
        suffixes = ("", ".gz") if self.gzip_ok else ("",)
        for suffix in suffixes:
            if (root / f"{name}{suffix}").is_file():
                return root / f"{name}{suffix}"
        shown = "{}(.gz)" if self.gzip_ok else "{}"
        missing = self.missing_files()
        where = f"folder {root}" if root.is_dir() else f"folder {root}, which does not exist"
        raise FileNotFoundError(
            f"{self.dataset_name}: {shown.format(name)} not found in the {where}; missing: {', '.join(missing)}. "
            f"{self.how_to_get}"
        )
