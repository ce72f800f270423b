"""Fashion-MNIST and MNIST from their four IDX files in a local folder (never downloaded at run time)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import TensorDataset

from lightning_cyclic.data.idx import read_idx
from lightning_cyclic.data.images import ImageFolderDataModule

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)


class IDXImageDataModule(ImageFolderDataModule):
    """28x28 grey images in 10 classes read from the four standard IDX files in ``root``.

    The files are ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each raw or gzipped
    (``.gz``). Pixels are scaled to [0, 1], then standardised with the mean and std
    (one scalar each) of the training samples used. Files are read in ``setup``, not
    on construction.

    Args:
        root: the folder with the four files; ``None`` uses the class's ``default_root``.
        batch_size: samples per batch.
        val_fraction: share of the training files held out for validation, split with ``split_seed``.
        split_seed: seed of the train/validation shuffle (fixed, independent of the run's seed).
        num_workers: passed to the DataLoaders.
        pin_memory: passed to the DataLoaders.
        flatten: give samples as flat 784-feature vectors instead of ``(1, 28, 28)``.
        limit_train: train on only the first ``limit_train`` samples of the shuffled training
            split (the validation split is unchanged); ``None`` uses all of them.
        augment: shift training images by up to 4 pixels each way (a random crop after reflection
            padding) and, where the class allows it (``augment_flip``), flip them left-right.
        cutout: zero one random ``cutout x cutout`` square (clipped at the border) per training
            image; 0 is off.
        mixup: mix training batches with mixup of this alpha, which makes the targets class
            probabilities; 0.0 is off.

    The augmentations change training batches only, on the device, after the transfer
    (see :class:`~lightning_cyclic.data.augment.AugmentedDataModule`); flat batches
    (``flatten=True``) are augmented as images. ``test_dataloader`` serves the ``t10k`` files.
    """

    num_classes = 10
    input_shape: tuple[int, ...] = (1, 28, 28)
    dataset_name = "IDX images"
    files = FILES
    gzip_ok = True
    files_description = "the four IDX files"
    how_to_get = "Put the four IDX files into that folder and pass root=/path/to/folder (data.root=... in train.py)."

    def _read(self, images_name: str, labels_name: str) -> tuple[np.ndarray, np.ndarray]:
        images_path, labels_path = self._file(images_name), self._file(labels_name)
        images, labels = read_idx(images_path), read_idx(labels_path)
        image_shape = type(self).input_shape[1:]
        if images.dtype != np.uint8 or images.shape[1:] != image_shape:
            raise ValueError(
                f"{images_path}: expected uint8 images of shape (N, {', '.join(map(str, image_shape))}), "
                f"got {images.dtype} {images.shape}"
            )
        if labels.ndim != 1 or len(labels) != len(images):
            raise ValueError(
                f"{labels_path}: expected {len(images)} labels (one per image in {images_path.name}), "
                f"got shape {labels.shape}"
            )
        if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(
                f"{labels_path}: labels must be in [0, {self.num_classes}), found {labels.min()}..{labels.max()}"
            )
        return images, labels

    def _tensors(self, images: np.ndarray, labels: np.ndarray, fit: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled, standardised images and int64 labels; ``fit`` takes the mean and std from these images."""
        x = torch.from_numpy(images).float().div_(255)
        if fit:
            self._mean_std = (float(x.mean()), max(float(x.std()), 1e-3))
        mean, std = self._mean_std
        x = x.sub_(mean).div_(std).reshape(len(x), *self.input_shape)
        return x, torch.from_numpy(labels.astype(np.int64))

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            images, labels = self._read(TRAIN_IMAGES, TRAIN_LABELS)
            self._set_train_val(images, labels)
        if stage in (None, "test") and self.test_set is None:
            self.test_set = TensorDataset(*self._tensors(*self._read(TEST_IMAGES, TEST_LABELS)))


class FashionMNISTDataModule(IDXImageDataModule):
    """Zalando's Fashion-MNIST: 60,000 training and 10,000 test 28x28 images of clothes, 10 classes.

    The default ``root`` is where the Debian/Ubuntu package ``dataset-fashion-mnist``
    installs the four gzipped files (``root=None``). Arguments as :class:`IDXImageDataModule`.
    """

    dataset_name = "Fashion-MNIST"
    how_to_get = (
        "On Debian/Ubuntu: `apt-get install dataset-fashion-mnist` (installs them into /usr/share/datasets/"
        "fashion-mnist/). Otherwise download the four .gz files from the official Fashion-MNIST repository, "
        "https://github.com/zalandoresearch/fashion-mnist (folder data/fashion), into that folder, or into "
        "another one and pass root=/path/to/folder (data.root=... in train.py)."
    )

    default_root = "/usr/share/datasets/fashion-mnist/"


class MNISTDataModule(IDXImageDataModule):
    """LeCun's MNIST handwritten digits: 60,000 training and 10,000 test 28x28 images, 10 classes.

    The default ``root`` (``root=None``) mirrors the Fashion-MNIST package's layout; no
    Debian package ships MNIST. Arguments as :class:`IDXImageDataModule`; ``augment`` only
    shifts the digits, never mirrors them.
    """

    dataset_name = "MNIST"
    how_to_get = (
        "Download the four .gz files from the MNIST page, https://yann.lecun.com/exdb/mnist/ (or a mirror such as "
        "https://ossci-datasets.s3.amazonaws.com/mnist/), into that folder, or into another one and pass "
        "root=/path/to/folder (data.root=... in train.py)."
    )

    default_root = "/usr/share/datasets/mnist/"
    augment_flip = False
