"""CIFAR-10 from its "python version" pickle batches in a local folder (never downloaded at run time)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from lightning_cyclic.data.images import ImageFolderDataModule

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
FILES = (*TRAIN_BATCHES, TEST_BATCH, META)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


# What the CIFAR-10 python batches hold: dicts, lists, bytes, numbers and numpy arrays. An
# unpickler that admits only the globals needed to rebuild numpy arrays cannot run code from a
# crafted file (pickle.load would call whatever callable the file names).
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("_codecs", "encode"),  # Python 2 pickles of numpy arrays encode their raw bytes through it
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refused to load {module}.{name}: a CIFAR-10 batch holds only dicts, lists, bytes and numpy arrays"
        )


def load_batch_file(path: Path) -> Any:
    """Unpickle a CIFAR-10 batch file with an unpickler that executes nothing; errors name the file."""
    try:
        with path.open("rb") as f:
            return _BatchUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise ValueError(f"{path}: not a readable CIFAR-10 batch file ({type(err).__name__}: {err})") from None


class CIFAR10DataModule(ImageFolderDataModule):
    """Krizhevsky's CIFAR-10: 50,000 training and 10,000 test 32x32 colour images, 10 classes.

    Reads the "CIFAR-10 python version" (``cifar-10-python.tar.gz``, extracted): the folder
    ``cifar-10-batches-py`` with the training batches ``data_batch_1`` .. ``data_batch_5``,
    ``test_batch`` and ``batches.meta``. Each batch is a pickled dict whose ``b"data"`` holds
    ``N x 3072`` uint8 pixels (the red, then green, then blue 32x32 plane, row by row) and
    ``b"labels"`` the ``N`` classes. ``batches.meta`` only names the classes (``classes``);
    without it the standard names are used. Pixels are scaled to [0, 1], then standardised
    per channel with the mean and std of the training samples used. Files are read in
    ``setup``, not on construction; unpickling runs code, so use files from a trusted source.

    Args:
        root: the ``cifar-10-batches-py`` folder; ``None`` uses ``default_root``.
        batch_size: samples per batch.
        val_fraction: share of the 50,000 training images held out for validation, split with ``split_seed``.
        split_seed: seed of the train/validation shuffle (fixed, independent of the run's seed).
        num_workers: passed to the DataLoaders.
        pin_memory: passed to the DataLoaders.
        flatten: give samples as flat 3072-feature vectors instead of ``(3, 32, 32)``.
        limit_train: train on only the first ``limit_train`` samples of the shuffled training
            split (the validation split is unchanged); ``None`` uses all of them.
        augment: the standard CIFAR augmentation of training images: shifts of up to 4 pixels each
            way (a random crop after reflection padding) and random left-right flips.
        cutout: zero one random ``cutout x cutout`` square (clipped at the border) per training
            image; 0 is off (DeVries & Taylor used 16 on CIFAR-10).
        mixup: mix training batches with mixup of this alpha, which makes the targets class
            probabilities; 0.0 is off.

    The augmentations change training batches only, on the device, after the transfer
    (see :class:`~lightning_cyclic.data.augment.AugmentedDataModule`). ``test_dataloader``
    serves ``test_batch``.
    """

    num_classes = 10
    input_shape: tuple[int, ...] = (3, 32, 32)
    dataset_name = "CIFAR-10"
    files = FILES
    classes: tuple[str, ...] = CLASSES
    #: the folder used when ``root`` is None
    default_root = "~/.cache/lightning_cyclic/cifar-10-batches-py"
    how_to_get = (
        "No download happens at run time: on a machine with internet access, download the python version, "
        "cifar-10-python.tar.gz, from the CIFAR-10 page, https://www.cs.toronto.edu/~kriz/cifar.html, extract it "
        "(tar -xzf cifar-10-python.tar.gz makes the folder cifar-10-batches-py), copy that folder here and pass "
        "root=/path/to/cifar-10-batches-py (data.root=... in train.py; or put it at the default root, "
        "~/.cache/lightning_cyclic/cifar-10-batches-py)."
    )

    def _read_batch(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(images (N, 3, 32, 32) uint8, labels (N,) int64)`` of the pickled batch ``name``."""
        path = self._file(name)
        batch = load_batch_file(path)
        if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
            found = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
            raise ValueError(f"{path}: expected a CIFAR-10 batch, a dict with keys b'data' and b'labels', got {found}")
        data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
        image_shape = type(self).input_shape
        size = int(np.prod(image_shape))
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != size:
            raise ValueError(f"{path}: expected uint8 data of shape (N, {size}), got {data.dtype} {data.shape}")
        if labels.ndim != 1 or len(labels) != len(data) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"{path}: expected {len(data)} integer labels (one per row of data), got {labels.dtype} {labels.shape}"
            )
        if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"{path}: labels must be in [0, {self.num_classes}), found {labels.min()}..{labels.max()}")
        return data.reshape(len(data), *image_shape), labels.astype(np.int64)  # rows are channel-major

    def _read_classes(self) -> None:
        path = self.root / META
        if not path.is_file():
            return
        meta = load_batch_file(path)
        names = meta.get(b"label_names") if isinstance(meta, dict) else None
        if names is None or len(names) != self.num_classes:
            raise ValueError(f"{path}: expected b'label_names' with {self.num_classes} class names, got {names!r}")
        self.classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)

    def _tensors(self, images: np.ndarray, labels: np.ndarray, fit: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled, per-channel standardised images and int64 labels; ``fit`` takes the statistics from these images."""
        x = torch.from_numpy(images).float().div_(255)
        if fit:
            mean = x.mean(dim=(0, 2, 3))
            std = x.std(dim=(0, 2, 3))
            # a channel constant in the training images is centred, not scaled: dividing by a clamped std of
            # 1e-3 would turn a validation pixel that differs into a value in the hundreds
            std = torch.where(std < 1e-3, torch.ones_like(std), std)
            self._mean_std = (tuple(mean.tolist()), tuple(std.tolist()))
        mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in self._mean_std)
        x = x.sub_(mean).div_(std).reshape(len(x), *self.input_shape)
        return x, torch.from_numpy(labels)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self._read_classes()
            batches = [self._read_batch(name) for name in TRAIN_BATCHES]
            images = np.concatenate([b[0] for b in batches])
            labels = np.concatenate([b[1] for b in batches])
            del batches
            self._set_train_val(images, labels)
        if stage in (None, "test") and self.test_set is None:
            self.test_set = TensorDataset(*self._tensors(*self._read_batch(TEST_BATCH)))
