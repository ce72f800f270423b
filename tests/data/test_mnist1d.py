"""MNIST-1D generated offline by the mnist1d package (small ``num_samples`` keep it fast)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from lightning_cyclic.data import MNIST1DDataModule
from lightning_cyclic.data.mnist1d import generate_mnist1d

pytest.importorskip("mnist1d.data")  # imported at collection, not in a test: it takes ~1.5 s (matplotlib, scipy)

N = 200  # mnist1d keeps 80% for training: 160 train, 40 test


def make(**kwargs) -> MNIST1DDataModule:
    dm = MNIST1DDataModule(**{"num_samples": N, **kwargs})
    dm.setup()
    return dm


def test_shapes_classes_and_default_split():
    dm = make(batch_size=16)
    assert dm.input_shape == (1, 40) and dm.num_classes == 10
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (160, 40, 40)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 1, 40) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert set(dm.train_set.tensors[1].tolist()) == set(range(10))
    # by default validation is mnist1d's test split
    for a, b in zip(dm.val_set.tensors, dm.test_set.tensors):
        assert torch.equal(a, b)
    assert next(iter(dm.test_dataloader()))[0].shape == (16, 1, 40)


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = make(seed=3), make(seed=3), make(seed=4)
    for t_a, t_b in zip(a.train_set.tensors + a.val_set.tensors, b.train_set.tensors + b.val_set.tensors):
        assert torch.equal(t_a, t_b)
    assert not torch.equal(a.train_set.tensors[0], c.train_set.tensors[0])


def test_generation_leaves_the_global_random_state_alone():
    random.seed(7)
    np.random.seed(7)
    expected = (random.random(), np.random.rand())
    random.seed(7)
    np.random.seed(7)
    generate_mnist1d(num_samples=20, seed=0)  # mnist1d reseeds both generators inside
    assert (random.random(), np.random.rand()) == expected


def test_standardised_with_training_statistics():
    dm = make()
    x = dm.train_set.tensors[0]
    assert abs(float(x.mean())) < 1e-5 and abs(float(x.std()) - 1) < 1e-5
    raw = generate_mnist1d(N, 42)
    mean, std = raw["x"].astype(np.float32).mean(), raw["x"].astype(np.float32).std(ddof=1)
    expected = (raw["x_test"] - mean) / std
    np.testing.assert_allclose(dm.val_set.tensors[0].squeeze(1).numpy(), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(dm.val_set.tensors[1].numpy(), raw["y_test"])


def test_val_fraction_splits_the_training_part():
    dm = make(val_fraction=0.25, split_seed=1)
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (120, 40, 40)
    default = make()
    labels = torch.cat([dm.train_set.tensors[1], dm.val_set.tensors[1]])
    assert sorted(labels.tolist()) == sorted(default.train_set.tensors[1].tolist())
    assert torch.equal(dm.test_set.tensors[1], default.test_set.tensors[1])  # the test split stays unseen
    assert not torch.equal(make(val_fraction=0.25, split_seed=2).val_set.tensors[1], dm.val_set.tensors[1])


def test_limit_train_and_flatten():
    dm = make(limit_train=50, flatten=True)
    assert dm.input_shape == (40,) and MNIST1DDataModule.input_shape == (1, 40)
    assert dm.train_set.tensors[0].shape == (50, 40) and dm.val_set.tensors[0].shape == (40, 40)
    full = make()
    assert torch.equal(dm.train_set.tensors[1], full.train_set.tensors[1][:50])


def test_writes_nothing_without_cache_dir_and_reuses_the_cache(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make()
    assert list(tmp_path.iterdir()) == []
    cache = tmp_path / "cache"
    first = make(cache_dir=str(cache))
    (cached,) = cache.iterdir()
    assert cached.suffix == ".npz" and f"n{N}_seed42" in cached.name
    with np.load(cached) as arrays:
        np.testing.assert_array_equal(arrays["y_test"], first.val_set.tensors[1].numpy())
    second = make(cache_dir=str(cache))  # read back from the file
    assert torch.equal(first.train_set.tensors[0], second.train_set.tensors[0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_samples": 5}, "num_samples must be >= 10, got 5"),
        ({"val_fraction": 0.0}, r"val_fraction must be in \(0, 1\), got 0.0"),
        ({"seed": -1}, "seed must be in"),
        ({"limit_train": 0}, "limit_train must be >= 1, got 0"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MNIST1DDataModule(**kwargs)
