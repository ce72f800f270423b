"""MNIST-1D (Greydanus, 2020): 40-sample 1-D signals in 10 classes, generated offline by the ``mnist1d`` package."""

from __future__ import annotations

import os
import random
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from lightning_cyclic._extras import needs
from lightning_cyclic.data.base import TensorDataModule
from lightning_cyclic.shapes._checks import check_number


def generate_mnist1d(num_samples: int = 5000, seed: int = 42) -> dict[str, np.ndarray]:
    """``{"x", "y", "x_test", "y_test"}`` from ``mnist1d.data.make_dataset``, generated here, never downloaded.

    ``make_dataset`` reseeds python's and numpy's global generators; their states are
    restored afterwards, so generating the data does not change the run's randomness.
    Its split keeps the first 80% of the (shuffled) samples for training.
    """
    with needs("data", "MNIST1DDataModule"):
        from mnist1d.data import get_dataset_args, make_dataset
    args = get_dataset_args()
    args.num_samples = int(num_samples)
    args.seed = int(seed)
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(args)
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    return {key: np.asarray(data[key]) for key in ("x", "y", "x_test", "y_test")}


class MNIST1DDataModule(TensorDataModule):
    """MNIST-1D signals as ``(1, 40)`` tensors, standardised with the training samples' mean and std.

    The data are generated in ``setup`` with ``mnist1d.data.make_dataset`` (about 0.5 ms
    per sample), never downloaded. ``mnist1d`` splits the ``num_samples`` into 80% train
    and 20% test (4,000 and 1,000 by default).

    By default (``val_fraction=None``) the validation set IS mnist1d's test split (mnist1d
    has no validation split of its own), and ``test_dataloader`` serves the same samples.
    With a ``val_fraction``, that share of the training split is held out for validation
    instead (split with ``split_seed``) and the test split stays unseen until ``test``.

    Args:
        batch_size: samples per batch.
        val_fraction: ``None`` to validate on mnist1d's test split, or the share of the
            training split held out for validation, in (0, 1).
        split_seed: seed of that train/validation shuffle (fixed, independent of the run's seed).
        num_workers: passed to the DataLoaders.
        pin_memory: passed to the DataLoaders.
        flatten: give samples as flat 40-feature vectors instead of ``(1, 40)``.
        limit_train: train on only the first ``limit_train`` training samples (mnist1d's come
            shuffled; after the split's shuffle when ``val_fraction`` is set); ``None`` uses all.
        num_samples: samples generated in total, train and test, rounded down to a multiple
            of 10 (as many per class); mnist1d's default is 5,000.
        seed: seed of the generation; mnist1d's default is 42. The same ``num_samples`` and
            ``seed`` give the same data.
        cache_dir: folder to keep the generated arrays in (an ``.npz`` per mnist1d version,
            ``num_samples`` and ``seed``) and reuse them from; ``None`` writes nothing to disk.
    """

    num_classes = 10
    input_shape: tuple[int, ...] = (1, 40)

    def __init__(
        self,
        batch_size: int = 100,
        val_fraction: float | None = None,
        split_seed: int = 0,
        num_workers: int = 0,
        pin_memory: bool = False,
        flatten: bool = False,
        limit_train: int | None = None,
        num_samples: int = 5000,
        seed: int = 42,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        check_number("batch_size", batch_size, 1, integer=True)
        if val_fraction is not None:
            check_number("val_fraction", val_fraction, 0, 1, low_open=True, high_open=True)
        check_number("num_workers", num_workers, 0, integer=True)
        if limit_train is not None:
            check_number("limit_train", limit_train, 1, integer=True)
        check_number("num_samples", num_samples, 10, integer=True)
        check_number("seed", seed, 0, 2**32 - 1, integer=True)
        self.save_hyperparameters()
        if flatten:
            self.input_shape = (int(np.prod(type(self).input_shape)),)

    def _arrays(self) -> dict[str, np.ndarray]:
        n, seed, cache_dir = self.hparams["num_samples"], self.hparams["seed"], self.hparams["cache_dir"]
        if cache_dir is None:
            return generate_mnist1d(n, seed)
        path = Path(cache_dir).expanduser() / f"mnist1d-{metadata.version('mnist1d')}_n{n}_seed{seed}.npz"
        if path.is_file():
            with np.load(path, allow_pickle=False) as cached:
                return {key: cached[key] for key in cached.files}
        arrays = generate_mnist1d(n, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        # write then rename, so that concurrent processes never read a half-written file
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, x=arrays["x"], y=arrays["y"], x_test=arrays["x_test"], y_test=arrays["y_test"])
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return arrays

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        data = self._arrays()
        x = torch.as_tensor(data["x"], dtype=torch.float32)
        y = torch.as_tensor(data["y"], dtype=torch.long)
        x_test = torch.as_tensor(data["x_test"], dtype=torch.float32)
        y_test = torch.as_tensor(data["y_test"], dtype=torch.long)
        if self.hparams["val_fraction"] is None:
            train_idx = torch.arange(len(x))
            x_val, y_val = x_test, y_test
        else:
            order = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.hparams["split_seed"]))
            n_val = round(len(x) * self.hparams["val_fraction"])
            val_idx, train_idx = order[:n_val], order[n_val:]
            x_val, y_val = x[val_idx], y[val_idx]
        if self.hparams["limit_train"] is not None:
            train_idx = train_idx[: self.hparams["limit_train"]]
        if len(train_idx) == 0:
            raise ValueError(
                f"val_fraction={self.hparams['val_fraction']} leaves no training sample of the {len(x)} in mnist1d's "
                f"training split (num_samples={self.hparams['num_samples']})"
            )
        x_train, y_train = x[train_idx], y[train_idx]
        mean, std = x_train.mean(), x_train.std()
        std = std if std >= 1e-3 else torch.ones_like(std)  # constant training data: centred, not blown up

        def prepare(inputs: torch.Tensor) -> torch.Tensor:
            return ((inputs - mean) / std).reshape(len(inputs), *self.input_shape)

        self.train_set = TensorDataset(prepare(x_train), y_train)
        self.val_set = TensorDataset(prepare(x_val), y_val)
        self.test_set = TensorDataset(prepare(x_test), y_test)
