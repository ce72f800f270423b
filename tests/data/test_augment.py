"""Image augmentation in torch alone: crop+flip, cutout, mixup, and the data modules applying them to training
batches only (checked on the batches a real Trainer hands the model)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lightning_cyclic.data import CIFAR10DataModule, FashionMNISTDataModule, MNISTDataModule
from lightning_cyclic.data.augment import BatchAugmentation, cutout, mixup, random_crop_flip, sample_beta
from lightning_cyclic.models import CNN2D, Classifier, ResNet
from tests.data.test_cifar10 import write_fake_cifar10
from tests.data.test_idx import write_idx


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int = 32, c: int = 2, h: int = 6, w: int = 7) -> torch.Tensor:
    """A batch whose values are all different and none zero: every crop, flip and hole is recognisable."""
    return (torch.randperm(n * c * h * w, generator=gen(123)).float() + 1).reshape(n, c, h, w)


def numpy_pad(x: torch.Tensor, padding: int, mode: str) -> torch.Tensor:
    """The padded images, made with numpy (independent of the code under test)."""
    width = ((0, 0), (0, 0), (padding, padding), (padding, padding))
    return torch.from_numpy(np.pad(x.numpy(), width, mode="constant" if mode == "zeros" else "reflect"))


def crop_and_flip_of(out: torch.Tensor, padded: torch.Tensor, flips: tuple[bool, ...]) -> list[tuple[int, int, bool]]:
    """Every (row offset, column offset, flipped) whose crop of ``padded`` (one image) is ``out``."""
    height, width = out.shape[-2:]
    found = []
    for a in range(padded.shape[-2] - height + 1):
        for b in range(padded.shape[-1] - width + 1):
            crop = padded[..., a : a + height, b : b + width]
            found += [(a, b, f) for f in flips if torch.equal(out, crop.flip(-1) if f else crop)]
    return found


# ---------------------------------------------------------------------------------------------- random_crop_flip


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect"])
def test_each_output_is_a_crop_of_the_padded_image_flipped_or_not(padding_mode):
    x = images()
    out = random_crop_flip(x, padding=2, generator=gen(0), padding_mode=padding_mode)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(x, images())  # the input is left as it was
    padded = numpy_pad(x, 2, padding_mode)
    found = []
    for i in range(len(x)):
        matches = crop_and_flip_of(out[i], padded[i], flips=(False, True))
        assert len(matches) == 1, f"sample {i} is no crop of its padded image (or ambiguous): {matches}"
        found += matches
    assert len({(a, b) for a, b, _ in found}) >= 8  # the offsets vary from sample to sample, in both directions
    assert len({a for a, _, _ in found}) >= 4 and len({b for _, b, _ in found}) >= 4
    assert 0 < sum(f for _, _, f in found) < len(x)  # some samples flipped, some not


def test_without_padding_each_sample_is_itself_or_its_mirror_image():
    x = images()
    out = random_crop_flip(x, padding=0, generator=gen(1))
    flipped = [bool(torch.equal(out[i], torch.flip(x[i], dims=(-1,)))) for i in range(len(x))]
    same = [bool(torch.equal(out[i], x[i])) for i in range(len(x))]
    assert all(f != s for f, s in zip(flipped, same))  # exactly one of the two
    assert 8 < sum(flipped) < 24
    assert torch.equal(random_crop_flip(x, padding=0, generator=gen(1), flip=False), x)


def test_flip_false_only_shifts():
    x = images()
    out = random_crop_flip(x, padding=3, generator=gen(2), flip=False)
    padded = numpy_pad(x, 3, "zeros")
    offsets = set()
    for i in range(len(x)):
        matches = crop_and_flip_of(out[i], padded[i], flips=(False,))
        assert len(matches) == 1
        offsets.add(matches[0][:2])
    assert len(offsets) > 10


def test_crop_flip_is_reproducible_with_a_seeded_generator():
    x = images()
    assert torch.equal(random_crop_flip(x, 2, gen(7)), random_crop_flip(x, 2, gen(7)))
    assert not torch.equal(random_crop_flip(x, 2, gen(7)), random_crop_flip(x, 2, gen(8)))
    torch.manual_seed(3)
    first = random_crop_flip(x, 2)  # the global generator without one
    torch.manual_seed(3)
    assert torch.equal(first, random_crop_flip(x, 2))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (partial(random_crop_flip, torch.zeros(2, 6, 6)), r"x must be a batch of images of shape \(N, C, H, W\)"),
        (partial(random_crop_flip, torch.zeros(2, 1, 6, 6), -1), "padding must be >= 0, got -1"),
        (partial(random_crop_flip, torch.zeros(2, 1, 6, 6), 6, padding_mode="reflect"), "padding must be < 6"),
        (partial(random_crop_flip, torch.zeros(2, 1, 6, 6), padding_mode="edge"), "padding_mode must be one of"),
        (partial(cutout, torch.zeros(2, 1, 6, 6), -2), "size must be >= 0, got -2"),
    ],
)
def test_bad_arguments_of_crop_flip_and_cutout(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------------------------------------------------- cutout


@pytest.mark.parametrize("size", [1, 3, 4])
def test_cutout_zeroes_exactly_one_square_per_sample_clipped_at_the_border(size):
    x = images(n=64, c=3, h=8, w=9)
    out = cutout(x, size, generator=gen(size))
    hole = out == 0
    assert torch.equal(out[~hole], x[~hole])  # the rest is untouched
    assert torch.equal(x, images(n=64, c=3, h=8, w=9))
    assert (hole == hole[:, :1]).all()  # the same square in every channel
    full = clipped = 0
    for i in range(len(x)):
        rows = hole[i, 0].any(1).nonzero().flatten()
        cols = hole[i, 0].any(0).nonzero().flatten()
        square = torch.zeros(8, 9, dtype=torch.bool)
        square[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = True
        assert torch.equal(hole[i, 0], square)  # one solid rectangle
        height, width = len(rows), len(cols)
        assert 1 <= height <= size and 1 <= width <= size
        if height < size:
            assert rows.min() == 0 or rows.max() == 7  # smaller only where the border cuts it
        if width < size:
            assert cols.min() == 0 or cols.max() == 8
        full += (height, width) == (size, size)
        clipped += (height, width) != (size, size)
    assert full > 0 and (clipped > 0 or size == 1)


def test_cutout_of_size_zero_is_a_copy():
    x = images()
    out = cutout(x, 0, gen(0))
    assert torch.equal(out, x) and out is not x


# ----------------------------------------------------------------------------------------------------------- mixup


def test_mixup_targets_and_inputs_are_one_lam_and_permutation():
    n, num_classes = 12, 15
    x = torch.randn(n, 3, 4, 4, generator=gen(5))
    y = torch.randperm(num_classes, generator=gen(6))[:n]  # all different: a row's classes tell its partner
    mixed, soft = mixup(x, y, num_classes, alpha=1.0, generator=gen(7))
    assert soft.shape == (n, num_classes) and soft.dtype == torch.float32 and mixed.shape == x.shape
    torch.testing.assert_close(soft.sum(1), torch.ones(n))
    own = soft[torch.arange(n), y]
    partner = []  # the sample each row was mixed with: the one whose class is the row's other class
    for i in range(n):
        others = [c for c in soft[i].nonzero().flatten().tolist() if c != int(y[i])]
        partner.append(int((y == others[0]).nonzero()) if others else i)
    perm = torch.tensor(partner)
    assert sorted(partner) == list(range(n)) and not torch.equal(perm, torch.arange(n))
    lam = float(own[perm != torch.arange(n)][0])
    assert 0 < lam < 1
    onehot = F.one_hot(y, num_classes).float()
    torch.testing.assert_close(soft, lam * onehot + (1 - lam) * onehot[perm])
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x[perm])
    again = mixup(x, y, num_classes, alpha=1.0, generator=gen(7))
    assert torch.equal(again[0], mixed) and torch.equal(again[1], soft)


def test_mixup_of_soft_targets_stays_a_distribution():
    x = torch.randn(8, 1, 4, 4, generator=gen(0))
    soft = torch.softmax(torch.randn(8, 5, generator=gen(1)), dim=1)
    _, mixed = mixup(x, soft, 5, alpha=0.4, generator=gen(2))
    assert mixed.shape == (8, 5) and (mixed >= 0).all()
    torch.testing.assert_close(mixed.sum(1), torch.ones(8))


@pytest.mark.parametrize(("alpha", "beta"), [(0.2, 0.2), (1.0, 1.0), (2.0, 5.0)])
def test_sample_beta_follows_the_beta_distribution(alpha, beta):
    from scipy import stats

    g = gen(11)
    draws = np.array([sample_beta(alpha, beta, g) for _ in range(2000)])
    assert ((draws >= 0) & (draws <= 1)).all()
    assert stats.kstest(draws, stats.beta(alpha, beta).cdf).pvalue > 1e-3


@pytest.mark.parametrize(
    ("y", "kwargs", "message"),
    [
        (torch.tensor([0, 1, 10, 2]), {}, r"y must hold class indices in \[0, 10\), found 0..10"),
        (torch.zeros(4, 3), {}, r"y must be class indices of shape \(N,\) or class probabilities of shape \(N, 10\)"),
        (torch.tensor([0, 1, 2]), {}, "x and y must hold as many samples, got 4 and 3"),
        (torch.tensor([0, 1, 2, 3]), {"alpha": 0.0}, r"alpha must be > 0, got 0.0"),
    ],
)
def test_bad_arguments_of_mixup(y, kwargs, message):
    with pytest.raises(ValueError, match=message):
        mixup(torch.zeros(4, 1, 2, 2), y, 10, **kwargs)


# -------------------------------------------------------------------------------------------- BatchAugmentation


def test_batch_augmentation_augments_flat_batches_as_images():
    augmentation = BatchAugmentation((2, 6, 7), num_classes=10, augment=True, cutout=3, mixup=0.5)
    x, y = images(), torch.arange(32) % 10
    out_images, y_images = augmentation(x, y, gen(4))
    out_flat, y_flat = augmentation(x.reshape(32, -1), y, gen(4))
    assert out_flat.shape == (32, 84) and torch.equal(out_flat, out_images.reshape(32, -1))
    assert torch.equal(y_flat, y_images) and y_images.shape == (32, 10)
    off = BatchAugmentation((2, 6, 7), num_classes=10)
    assert not off.active and off(x, y)[0] is x


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_shape": (784,)}, r"image_shape must be \(channels, height, width\), got \(784,\)"),
        ({"cutout": 8}, r"cutout must be in \[0, 6\], got 8"),
        ({"augment": 1}, "augment must be true or false, got 1"),
        ({"mixup": float("nan")}, "mixup must be a number >= 0, got nan"),
        ({"augment": True, "padding": 6}, r"padding must be < 6 \(the image's smaller side\)"),
    ],
)
def test_bad_arguments_of_batch_augmentation(kwargs, message):
    kwargs = {"image_shape": (1, 6, 7), "num_classes": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        BatchAugmentation(**kwargs)


def test_batch_of_the_wrong_size_is_refused():
    with pytest.raises(ValueError, match=r"batch of shape \(2, 10\) does not hold images of shape \(1, 6, 7\)"):
        BatchAugmentation((1, 6, 7), 10, augment=True)(torch.zeros(2, 10), torch.zeros(2, dtype=torch.long))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_the_gpu_with_a_cpu_generator_the_draws_are_the_cpus():
    x = images()
    y = torch.arange(32) % 10
    assert torch.equal(random_crop_flip(x.cuda(), 2, gen(0)).cpu(), random_crop_flip(x, 2, gen(0)))
    assert torch.equal(cutout(x.cuda(), 3, gen(1)).cpu(), cutout(x, 3, gen(1)))
    mixed_gpu, soft_gpu = mixup(x.cuda(), y.cuda(), 10, 0.2, gen(2))
    mixed, soft = mixup(x, y, 10, 0.2, gen(2))
    torch.testing.assert_close(mixed_gpu.cpu(), mixed)
    torch.testing.assert_close(soft_gpu.cpu(), soft)
    augmented = BatchAugmentation((2, 6, 7), 10, augment=True, cutout=3, mixup=0.2)(x.cuda(), y.cuda())
    assert augmented[0].is_cuda and augmented[1].shape == (32, 10)


# ------------------------------------------------------------------------------ data modules: training batches only


class CaptureBatches(pl.Callback):
    """Keeps a copy of every batch the model is given, by stage."""

    def __init__(self) -> None:
        self.train: list[list[torch.Tensor]] = []
        self.val: list[list[torch.Tensor]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.train.append([t.clone() for t in batch])

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.val.append([t.clone() for t in batch])


def fit_two_steps(dm: pl.LightningDataModule, net, root_dir: Path, *callbacks: pl.Callback) -> CaptureBatches:
    """A real fit: one sanity-check batch, two training steps, one validation batch."""
    capture = CaptureBatches()
    model = Classifier(
        net=net,
        optimizer=partial(torch.optim.SGD, lr=0.05),
        input_shape=dm.input_shape,
        num_classes=dm.num_classes,
    )
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[capture, *callbacks],
        default_root_dir=root_dir,
    )
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 2
    return capture


def write_fake_idx(root: Path, n_train: int = 40, n_test: int = 10) -> None:
    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    write_idx(root / "train-images-idx3-ubyte", rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8))
    write_idx(root / "train-labels-idx1-ubyte", (np.arange(n_train) % 10).astype(np.uint8))
    write_idx(root / "t10k-images-idx3-ubyte", rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8))
    write_idx(root / "t10k-labels-idx1-ubyte", (np.arange(n_test) % 10).astype(np.uint8))


@pytest.mark.parametrize("dataset", ["fashion_mnist", "cifar10"])
def test_fit_augments_training_batches_and_leaves_validation_batches_alone(tmp_path, dataset):
    kwargs = {"batch_size": 8, "val_fraction": 0.25, "augment": True, "cutout": 8, "mixup": 0.2}
    if dataset == "cifar10":
        write_fake_cifar10(tmp_path / "cifar")
        dm = CIFAR10DataModule(root=str(tmp_path / "cifar"), **kwargs)
        net = partial(ResNet, channels=(4, 8), blocks_per_stage=1)
    else:
        write_fake_idx(tmp_path / "idx")
        dm = FashionMNISTDataModule(root=str(tmp_path / "idx"), **kwargs)
        net = partial(CNN2D, channels=(4, 8), hidden=(16,))
    capture = fit_two_steps(dm, net, tmp_path)

    assert len(capture.train) == 2
    train_x = dm.train_set.tensors[0].reshape(len(dm.train_set), -1)
    for x, y in capture.train:
        assert x.shape == (8, *dm.input_shape) and x.dtype == torch.float32
        assert y.shape == (8, 10) and y.is_floating_point()  # mixup's soft targets
        torch.testing.assert_close(y.sum(1), torch.ones(8))
        for sample in x.reshape(8, -1):  # none is a sample of the training set as it was
            assert not (train_x == sample).all(1).any()

    assert len(capture.val) == 2  # the sanity check's batch and the epoch's, both exactly as in the data
    val_x, val_y = dm.val_set.tensors
    for x, y in capture.val:
        assert torch.equal(x, val_x[:8]) and torch.equal(y, val_y[:8])


def test_mnist_augment_shifts_flat_batches_and_never_flips_them(tmp_path):
    write_fake_idx(tmp_path / "idx")
    dm = MNISTDataModule(root=str(tmp_path / "idx"), batch_size=6, val_fraction=0.25, flatten=True, augment=True)
    capture = fit_two_steps(dm, partial(CNN2D, channels=(4,), hidden=()), tmp_path)
    train_x, train_y = dm.train_set.tensors
    padded = numpy_pad(train_x.reshape(-1, 1, 28, 28), 4, "reflect")
    offsets = []
    for x, y in capture.train:
        assert x.shape == (6, 784) and y.dtype == torch.int64  # still flat, still class indices
        for sample, label in zip(x, y):
            matches = [
                (i, *m)
                for i in (train_y == label).nonzero().flatten().tolist()
                for m in crop_and_flip_of(sample.reshape(1, 28, 28), padded[i], flips=(False, True))
            ]
            assert len(matches) == 1 and matches[0][3] is False  # one training image, shifted, not mirrored
            offsets.append(matches[0][1:3])
    assert len(set(offsets)) > 1
    assert all(torch.equal(x, dm.val_set.tensors[0][:6]) for x, _ in capture.val)


def test_batches_evaluated_in_eval_mode_during_fit_are_left_alone(tmp_path):
    """As the LR range test's validation batches: the trainer trains, but the model is in eval mode."""
    write_fake_idx(tmp_path / "idx")
    dm = FashionMNISTDataModule(root=str(tmp_path / "idx"), batch_size=8, val_fraction=0.25, cutout=8, mixup=0.2)
    passed_through = []

    class Probe(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            clean = [t[:8].clone() for t in dm.val_set.tensors]
            pl_module.eval()
            passed_through.append(trainer.datamodule.on_after_batch_transfer(clean, 0) is clean)
            pl_module.train()
            passed_through.append(trainer.datamodule.on_after_batch_transfer(clean, 0) is clean)

    fit_two_steps(dm, partial(CNN2D, channels=(4,), hidden=()), tmp_path, Probe())
    assert passed_through == [True, False, True, False]


def test_fashion_mnist_flips_mnist_does_not_and_the_arguments_are_checked():
    assert FashionMNISTDataModule(root="unused", augment=True).augmentation.flip
    assert not MNISTDataModule(augment=True).augmentation.flip
    assert MNISTDataModule(cutout=4, mixup=0.4).hparams.cutout == 4
    with pytest.raises(ValueError, match=r"cutout must be in \[0, 28\], got 29"):
        MNISTDataModule(cutout=29)
    with pytest.raises(ValueError, match="mixup must be >= 0, got -1"):
        FashionMNISTDataModule(mixup=-1)


def test_hook_without_a_trainer_or_augmentation_passes_the_batch_through(tmp_path):
    batch = [torch.zeros(2, 3, 32, 32), torch.tensor([1, 2])]
    assert CIFAR10DataModule(augment=True).on_after_batch_transfer(batch, 0) is batch  # no trainer attached
    assert CIFAR10DataModule().on_after_batch_transfer(batch, 0) is batch
