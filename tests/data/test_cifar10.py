"""The CIFAR-10 data module on a tiny folder of pickled batches written here in the python version's format."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_cyclic.data import CIFAR10DataModule
from tests.helpers import WritesAMarker

PER_BATCH, N_TEST = 8, 6
N_TRAIN = 5 * PER_BATCH
TRAIN_NAMES = [f"data_batch_{i}" for i in range(1, 6)]
NAMES = [*TRAIN_NAMES, "test_batch", "batches.meta"]
LABEL_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
# A marker in test image 0: one green pixel at row 5, column 9; the rows are the red, green, blue planes in turn.
MARK_CHANNEL, MARK_ROW, MARK_COL = 1, 5, 9
MARK_INDEX = MARK_CHANNEL * 1024 + MARK_ROW * 32 + MARK_COL


def write_batch(path: Path, data: np.ndarray, labels: list[int], name: bytes = b"batch") -> None:
    """A pickled batch as in ``cifar-10-python.tar.gz``: byte keys, uint8 rows of 3072, labels as a list."""
    with path.open("wb") as f:
        pickle.dump({b"batch_label": name, b"labels": labels, b"data": data, b"filenames": []}, f, protocol=2)


def write_fake_cifar10(root: Path) -> dict[str, np.ndarray]:
    """5 training batches of 8 images and a test batch of 6 images with labels, and ``batches.meta``.

    Training pixels are bright in red, mid in green and dark in blue (each channel has its own
    statistics); test image 0 is black but for one green pixel, and the other test images are darker.
    """
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    planes = [rng.integers(low, high, size=(N_TRAIN, 1024)) for low, high in ((128, 256), (64, 192), (0, 96))]
    train = np.concatenate(planes, axis=1).astype(np.uint8)  # (N, 3072): the red, green, blue planes
    train_labels = (np.arange(N_TRAIN) * 7 % 10).astype(np.int64)
    for i, name in enumerate(TRAIN_NAMES):
        rows = slice(i * PER_BATCH, (i + 1) * PER_BATCH)
        write_batch(root / name, train[rows], train_labels[rows].tolist(), name.encode())
    test = rng.integers(0, 64, size=(N_TEST, 3072)).astype(np.uint8)
    test[0] = 0
    test[0, MARK_INDEX] = 255
    test_labels = np.array([3, 1, 4, 1, 5, 9], dtype=np.int64)
    write_batch(root / "test_batch", test, test_labels.tolist(), b"testing batch 1 of 1")
    with (root / "batches.meta").open("wb") as f:
        pickle.dump({b"num_cases_per_batch": PER_BATCH, b"label_names": LABEL_NAMES, b"num_vis": 3072}, f)
    return {"train": train, "train_labels": train_labels, "test": test, "test_labels": test_labels}


@pytest.fixture
def fake_root(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path / "cifar-10-batches-py"
    return root, write_fake_cifar10(root)


def raw_pixels(dm: CIFAR10DataModule, x: torch.Tensor) -> np.ndarray:
    """Undo the per-channel normalisation: the uint8 images behind ``x``, as (N, 3, 32, 32)."""
    mean, std = (torch.tensor(v, dtype=torch.float64).view(1, 3, 1, 1) for v in dm._mean_std)
    return torch.round((x.reshape(len(x), 3, 32, 32).double() * std + mean) * 255).to(torch.uint8).numpy()


def test_split_sizes_shapes_and_dtypes(fake_root):
    root, _ = fake_root
    dm = CIFAR10DataModule(root=str(root), batch_size=4, val_fraction=0.25)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (30, 10, N_TEST)
    assert dm.input_shape == (3, 32, 32) and dm.num_classes == 10
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert next(iter(dm.val_dataloader()))[0].shape == (4, 3, 32, 32)
    assert next(iter(dm.test_dataloader()))[0].shape == (4, 3, 32, 32)
    assert dm.classes[0] == "airplane" and dm.classes[-1] == "truck" and len(dm.classes) == 10


def test_rows_are_decoded_channel_major(fake_root):
    root, arrays = fake_root
    dm = CIFAR10DataModule(root=str(root))
    dm.setup("test")
    image = raw_pixels(dm, dm.test_set.tensors[0][:1])[0]
    assert image[MARK_CHANNEL, MARK_ROW, MARK_COL] == 255
    image[MARK_CHANNEL, MARK_ROW, MARK_COL] = 0
    assert not image.any()  # the one bright pixel is green, at row 5, column 9, and nowhere else
    # every image: channel c, row r, column k is byte c * 1024 + r * 32 + k of its row
    c, r, k = np.meshgrid(np.arange(3), np.arange(32), np.arange(32), indexing="ij")
    np.testing.assert_array_equal(raw_pixels(dm, dm.test_set.tensors[0]), arrays["test"][:, c * 1024 + r * 32 + k])


def test_labels_preserved_and_splits_partition_the_training_batches(fake_root):
    root, arrays = fake_root
    dm = CIFAR10DataModule(root=str(root), val_fraction=0.25)
    dm.setup()
    where = {row.tobytes(): i for i, row in enumerate(arrays["train"])}
    seen = []
    for dataset in (dm.train_set, dm.val_set):
        x, y = dataset.tensors
        for image, label in zip(raw_pixels(dm, x), y.tolist()):
            i = where[image.reshape(-1).tobytes()]  # every image is one of the batches', pixel for pixel
            assert arrays["train_labels"][i] == label
            seen.append(i)
    assert sorted(seen) == list(range(N_TRAIN))  # disjoint and complete, over all five batches
    np.testing.assert_array_equal(dm.test_set.tensors[1].numpy(), arrays["test_labels"])


def test_normalised_per_channel_with_the_training_split_statistics(fake_root):
    root, _ = fake_root
    dm = CIFAR10DataModule(root=str(root), val_fraction=0.25)
    dm.setup()
    x_train = dm.train_set.tensors[0]
    per_channel = x_train.transpose(0, 1).reshape(3, -1)
    np.testing.assert_allclose(per_channel.mean(1).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(per_channel.std(1).numpy(), 1, atol=1e-4)
    raw = raw_pixels(dm, x_train).transpose(1, 0, 2, 3).reshape(3, -1) / 255
    mean, std = dm._mean_std
    np.testing.assert_allclose(mean, raw.mean(1), rtol=1e-5)
    np.testing.assert_allclose(std, raw.std(1, ddof=1), rtol=1e-5)
    assert mean[0] > mean[1] > mean[2]  # red brightest, blue darkest: three statistics, not one
    # validation and test use the same statistics: the darker test images come out negative
    assert float(dm.test_set.tensors[0].mean()) < -1


def test_limit_train_flatten_and_fit_reads_no_test_batch(fake_root):
    root, _ = fake_root
    full = CIFAR10DataModule(root=str(root), val_fraction=0.25)
    full.setup("fit")
    small = CIFAR10DataModule(root=str(root), val_fraction=0.25, limit_train=7, flatten=True)
    (root / "test_batch").unlink()  # "fit" does not need it
    small.setup("fit")
    assert (len(small.train_set), len(small.val_set)) == (7, 10) and small.test_set is None
    assert small.input_shape == (3072,) and CIFAR10DataModule.input_shape == (3, 32, 32)
    assert small.train_set.tensors[0].shape == (7, 3072)
    np.testing.assert_array_equal(
        raw_pixels(small, small.train_set.tensors[0]), raw_pixels(full, full.train_set.tensors[0][:7])
    )
    with pytest.raises(FileNotFoundError, match="test_batch"):
        small.setup("test")


def test_missing_batch_names_folder_files_and_how_to_get_them(fake_root):
    root, _ = fake_root
    (root / "data_batch_3").unlink()
    (root / "batches.meta").unlink()  # optional: the standard names are used
    dm = CIFAR10DataModule(root=str(root))  # constructing reads nothing
    with pytest.raises(FileNotFoundError) as err:
        dm.setup()
    message = str(err.value)
    assert str(root) in message and "data_batch_3" in message
    assert "data_batch_2" not in message and "test_batch" not in message  # only the missing ones are listed
    assert "cifar-10-python.tar.gz" in message and "cs.toronto.edu/~kriz/cifar.html" in message
    assert "data.root=" in message


def test_missing_folder_fails_in_setup_and_lists_every_file(tmp_path):
    dm = CIFAR10DataModule(root=str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="which does not exist") as err:
        dm.setup()
    for name in NAMES:
        assert name in str(err.value)


def test_default_root():
    dm = CIFAR10DataModule()
    assert dm.root == Path("~/.cache/lightning_cyclic/cifar-10-batches-py").expanduser()
    assert dm.hparams.root == "~/.cache/lightning_cyclic/cifar-10-batches-py"


def test_class_names_come_from_batches_meta_or_are_the_standard_ones(fake_root):
    root, _ = fake_root
    with (root / "batches.meta").open("wb") as f:
        pickle.dump({b"label_names": [b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"h", b"i", b"j"]}, f)
    dm = CIFAR10DataModule(root=str(root))
    dm.setup("fit")
    assert dm.classes == tuple("abcdefghij")
    (root / "batches.meta").unlink()
    dm = CIFAR10DataModule(root=str(root))
    dm.setup("fit")
    assert dm.classes[:2] == ("airplane", "automobile")


def test_malformed_batches_name_the_file(fake_root):
    root, arrays = fake_root
    write_batch(root / "data_batch_2", arrays["train"][:PER_BATCH, :1024], [0] * PER_BATCH)
    with pytest.raises(ValueError, match=r"data_batch_2: expected uint8 data of shape \(N, 3072\)"):
        CIFAR10DataModule(root=str(root)).setup()
    write_batch(root / "data_batch_2", arrays["train"][:PER_BATCH], [0] * (PER_BATCH - 1))
    with pytest.raises(ValueError, match="data_batch_2: expected 8 integer labels"):
        CIFAR10DataModule(root=str(root)).setup()
    write_batch(root / "data_batch_2", arrays["train"][:PER_BATCH], [10] * PER_BATCH)
    with pytest.raises(ValueError, match=r"data_batch_2: labels must be in \[0, 10\), found 10..10"):
        CIFAR10DataModule(root=str(root)).setup()
    with (root / "data_batch_2").open("wb") as f:
        pickle.dump([1, 2, 3], f)
    with pytest.raises(ValueError, match="data_batch_2: expected a CIFAR-10 batch"):
        CIFAR10DataModule(root=str(root)).setup()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"val_fraction": 0.0}, r"val_fraction must be in \(0, 1\), got 0.0"),
        ({"batch_size": 0}, "batch_size must be >= 1, got 0"),
        ({"limit_train": 0}, "limit_train must be >= 1, got 0"),
        ({"cutout": 33}, r"cutout must be in \[0, 32\], got 33"),
        ({"cutout": 2.5}, "cutout must be an integer, got 2.5"),
        ({"mixup": -0.2}, "mixup must be >= 0, got -0.2"),
        ({"augment": "yes"}, "augment must be true or false, got 'yes'"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CIFAR10DataModule(**kwargs)


@pytest.mark.parametrize("name", ["data_batch_1", "batches.meta"])
def test_a_crafted_batch_file_runs_no_code(fake_root, tmp_path, name):
    root, _ = fake_root
    marker = tmp_path / "pwned"
    with (root / name).open("wb") as f:
        pickle.dump({b"data": WritesAMarker(marker), b"labels": [0]}, f, protocol=2)
    with pytest.raises(ValueError, match=rf"{name}: not a readable CIFAR-10 batch file .*refused to load io.open"):
        CIFAR10DataModule(root=str(root)).setup()
    assert not marker.exists()  # pickle.load would have created it


def test_truncated_and_empty_batch_files_name_the_file(fake_root):
    root, _ = fake_root
    path = root / "data_batch_3"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="data_batch_3: not a readable CIFAR-10 batch file"):
        CIFAR10DataModule(root=str(root)).setup()
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="data_batch_3: not a readable CIFAR-10 batch file"):
        CIFAR10DataModule(root=str(root)).setup()


def test_a_channel_constant_in_the_training_images_stays_sane_in_validation(fake_root):
    """The digits bug (a std clamped at 1e-3 turned one validation pixel into 1000), per channel here."""
    dm = CIFAR10DataModule(root=fake_root)
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, size=(32, 3, 32, 32), dtype=np.uint8)
    train[:, 2] = 7  # the blue channel never varies in training
    x_train, _ = dm._tensors(train, np.zeros(32, dtype=np.int64), fit=True)
    val = rng.integers(0, 256, size=(8, 3, 32, 32), dtype=np.uint8)
    x_val, _ = dm._tensors(val, np.zeros(8, dtype=np.int64))
    assert float(x_train[:, 2].abs().max()) == 0.0  # centred
    assert float(x_val.abs().max()) <= max(float(x_train.abs().max()), 1.0) + 1e-4  # was up to 990
