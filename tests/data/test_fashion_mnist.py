"""Fashion-MNIST / MNIST data modules on a tiny folder of IDX files written here, and on the Debian files."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_cyclic.data import FashionMNISTDataModule, MNISTDataModule
from tests.data.test_idx import write_idx

DEBIAN_ROOT = Path("/usr/share/datasets/fashion-mnist/")
N_TRAIN, N_TEST = 50, 20
FILE_NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


@pytest.fixture
def fake_root(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    """50 training and 20 test random 28x28 images with labels; training files gzipped, test files raw."""
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, size=(N_TRAIN, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(N_TRAIN) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 128, size=(N_TEST, 28, 28), dtype=np.uint8),  # darker than the training set
        "test_labels": (np.arange(N_TEST) * 3 % 10).astype(np.uint8),
    }
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", arrays["train_images"])
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", arrays["train_labels"])
    write_idx(tmp_path / "t10k-images-idx3-ubyte", arrays["test_images"])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", arrays["test_labels"])
    return tmp_path, arrays


def raw_pixels(dm: FashionMNISTDataModule, x: torch.Tensor) -> np.ndarray:
    """Undo the normalisation: the uint8 images behind ``x``."""
    mean, std = dm._mean_std
    return torch.round((x.reshape(len(x), 28, 28).double() * std + mean) * 255).to(torch.uint8).numpy()


def index_of(images: np.ndarray) -> dict[bytes, int]:
    return {image.tobytes(): i for i, image in enumerate(images)}


def test_split_sizes_shapes_and_dtypes(fake_root):
    root, _ = fake_root
    dm = FashionMNISTDataModule(root=str(root), batch_size=8, val_fraction=0.2)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (40, 10, 20)
    assert dm.input_shape == (1, 28, 28) and dm.num_classes == 10
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert next(iter(dm.val_dataloader()))[0].shape == (8, 1, 28, 28)
    assert next(iter(dm.test_dataloader()))[0].shape == (8, 1, 28, 28)


def test_labels_preserved_and_splits_partition_the_training_files(fake_root):
    root, arrays = fake_root
    dm = FashionMNISTDataModule(root=str(root), val_fraction=0.2)
    dm.setup()
    where = index_of(arrays["train_images"])
    seen = []
    for dataset in (dm.train_set, dm.val_set):
        x, y = dataset.tensors
        for image, label in zip(raw_pixels(dm, x), y.tolist()):
            i = where[image.tobytes()]  # every image is one of the file's, pixel for pixel
            assert arrays["train_labels"][i] == label
            seen.append(i)
    assert sorted(seen) == list(range(N_TRAIN))  # disjoint and complete
    x, y = dm.test_set.tensors
    np.testing.assert_array_equal(raw_pixels(dm, x), arrays["test_images"])  # test files in their order
    np.testing.assert_array_equal(y.numpy(), arrays["test_labels"])


def test_normalised_with_the_training_split_statistics(fake_root):
    root, _ = fake_root
    dm = FashionMNISTDataModule(root=str(root), val_fraction=0.2)
    dm.setup()
    x_train = dm.train_set.tensors[0]
    assert abs(float(x_train.mean())) < 1e-5 and abs(float(x_train.std()) - 1) < 1e-4
    train_raw = raw_pixels(dm, x_train) / 255
    assert dm._mean_std == pytest.approx((train_raw.mean(), train_raw.std(ddof=1)), rel=1e-5)
    # validation and test use the same statistics: the darker test images come out negative on average
    assert float(dm.test_set.tensors[0].mean()) < -0.5


def test_split_is_fixed_by_split_seed(fake_root):
    root, _ = fake_root

    def val_images(split_seed: int) -> list:
        dm = FashionMNISTDataModule(root=str(root), val_fraction=0.2, split_seed=split_seed)
        dm.setup("fit")
        return raw_pixels(dm, dm.val_set.tensors[0]).tolist()

    assert val_images(0) == val_images(0)
    assert val_images(0) != val_images(1)


def test_limit_train_keeps_the_first_shuffled_samples(fake_root):
    root, _ = fake_root
    full = FashionMNISTDataModule(root=str(root), val_fraction=0.2)
    full.setup("fit")
    small = FashionMNISTDataModule(root=str(root), val_fraction=0.2, limit_train=7)
    small.setup("fit")
    assert (len(small.train_set), len(small.val_set)) == (7, 10)
    np.testing.assert_array_equal(
        raw_pixels(small, small.train_set.tensors[0]), raw_pixels(full, full.train_set.tensors[0][:7])
    )
    val_small, val_full = small.val_set.tensors[0], full.val_set.tensors[0]
    np.testing.assert_array_equal(raw_pixels(small, val_small), raw_pixels(full, val_full))
    x = small.train_set.tensors[0]
    assert abs(float(x.mean())) < 1e-5  # statistics of the 7 samples trained on
    assert small.test_set is None  # "fit" reads no test files


def test_flatten(fake_root):
    root, _ = fake_root
    dm = FashionMNISTDataModule(root=str(root), flatten=True)
    dm.setup()
    assert dm.input_shape == (784,) and FashionMNISTDataModule.input_shape == (1, 28, 28)
    assert dm.train_set.tensors[0].shape[1:] == (784,) and dm.test_set.tensors[0].shape == (N_TEST, 784)


def test_mnist_module_shares_the_code(fake_root):
    root, arrays = fake_root
    dm = MNISTDataModule(root=str(root), val_fraction=0.5)
    dm.setup("test")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (25, 25, N_TEST)
    np.testing.assert_array_equal(dm.test_set.tensors[1].numpy(), arrays["test_labels"])
    assert MNISTDataModule().root == Path("/usr/share/datasets/mnist")


def test_missing_file_names_folder_file_and_how_to_get_it(fake_root):
    root, _ = fake_root
    (root / "t10k-labels-idx1-ubyte").unlink()
    dm = FashionMNISTDataModule(root=str(root))
    assert dm.missing_files() == ["t10k-labels-idx1-ubyte(.gz)"]
    dm.setup("fit")  # training files are all there
    with pytest.raises(FileNotFoundError) as err:
        dm.setup("test")
    message = str(err.value)
    assert str(root) in message and "t10k-labels-idx1-ubyte" in message
    assert "t10k-images" not in message  # only the missing one is listed
    assert "apt-get install dataset-fashion-mnist" in message
    assert "github.com/zalandoresearch/fashion-mnist" in message and "pass root=" in message and "data.root=" in message


def test_missing_folder_fails_in_setup_not_on_construction(tmp_path):
    dm = MNISTDataModule(root=str(tmp_path / "absent"))  # constructing reads nothing
    assert len(dm.missing_files()) == len(FILE_NAMES)
    with pytest.raises(FileNotFoundError, match="which does not exist") as err:
        dm.setup()
    for name in FILE_NAMES:
        assert name in str(err.value)
    assert "yann.lecun.com" in str(err.value)


def test_inconsistent_files_name_the_file(fake_root):
    root, arrays = fake_root
    write_idx(root / "train-labels-idx1-ubyte.gz", arrays["train_labels"][:-1])
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte\.gz: expected 50 labels"):
        FashionMNISTDataModule(root=str(root)).setup()
    write_idx(root / "train-labels-idx1-ubyte.gz", arrays["train_labels"])
    write_idx(root / "t10k-images-idx3-ubyte", np.zeros((N_TEST, 32, 32), np.uint8))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte: expected uint8 images of shape \(N, 28, 28\)"):
        MNISTDataModule(root=str(root)).setup("test")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"val_fraction": 1.0}, r"val_fraction must be in \(0, 1\), got 1.0"),
        ({"batch_size": 0}, "batch_size must be >= 1, got 0"),
        ({"limit_train": 0}, "limit_train must be >= 1, got 0"),
        ({"limit_train": 2.5}, "limit_train must be an integer, got 2.5"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FashionMNISTDataModule(**kwargs)


def test_trains_a_cnn_for_a_step(fake_root, tmp_path):
    import lightning.pytorch as pl

    from lightning_cyclic.models import CNN2D, Classifier

    root, _ = fake_root
    dm = FashionMNISTDataModule(root=str(root), batch_size=16)
    model = Classifier(
        net=partial(CNN2D, channels=(4, 8), hidden=(16,)),
        optimizer=partial(torch.optim.SGD, lr=0.1),
        input_shape=dm.input_shape,
        num_classes=dm.num_classes,
    )
    trainer = pl.Trainer(
        fast_dev_run=True, accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path
    )
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 1
    dm.setup("test")
    x, _ = next(iter(dm.test_dataloader()))
    assert model(x).shape == (16, 10)


@pytest.mark.skipif(
    not all((DEBIAN_ROOT / f"{name}.gz").is_file() for name in FILE_NAMES),
    reason=f"Fashion-MNIST not installed in {DEBIAN_ROOT} (apt-get install dataset-fashion-mnist)",
)
def test_debian_package_files():
    dm = FashionMNISTDataModule()  # the default root is the Debian package's folder
    dm.setup()
    assert len(dm.train_set) + len(dm.val_set) == 60_000 and len(dm.val_set) == 6_000
    assert len(dm.test_set) == 10_000
    assert torch.bincount(dm.test_set.tensors[1]).tolist() == [1_000] * 10
    assert dm.train_set.tensors[0].shape[1:] == (1, 28, 28)
    assert dm._mean_std == pytest.approx((0.2860, 0.3530), abs=1e-3)  # Fashion-MNIST's known pixel mean and std
