"""Augmentation of image batches in torch alone (no torchvision), on whatever device the batch is.

The functions take a batch ``x`` of shape ``(N, C, H, W)`` and draw their randomness from
``generator`` (on its own device; the results are moved to ``x``'s) or, with ``None``, from
torch's global generators, which ``seed_everything`` seeds. They return new tensors and
leave ``x`` as it was.

:class:`AugmentedDataModule` applies them to training batches only, in the data module's
``on_after_batch_transfer`` hook, so they run after the batch reached the device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from lightning_cyclic.data.base import TensorDataModule
from lightning_cyclic.shapes._checks import check_choice, check_number


def _check_images(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a batch of images of shape (N, C, H, W), got {shape}")


def _draw_device(x: torch.Tensor, generator: torch.Generator | None) -> torch.device:
    """Where to draw random numbers: on ``generator``'s device, or on ``x``'s with the global generator."""
    return generator.device if generator is not None else x.device


def random_crop_flip(
    x: torch.Tensor,
    padding: int = 4,
    generator: torch.Generator | None = None,
    *,
    padding_mode: str = "zeros",
    flip: bool = True,
) -> torch.Tensor:
    """Pad by ``padding`` on every side, crop back to ``H x W`` at a random place per sample, then flip
    each sample left-right with probability 1/2.

    Args:
        x: images ``(N, C, H, W)``.
        padding: pixels added on each side; each sample is shifted by up to ``padding`` pixels
            in each direction. 0 only flips.
        generator: source of the offsets and flips; ``None`` uses torch's global generator.
        padding_mode: ``"zeros"`` (zero is the channel mean in standardised data) or ``"reflect"``
            (mirrors the border, without repeating it; needs ``padding < H`` and ``padding < W``).
        flip: whether to flip; ``False`` only shifts (for data such as digits, which mirroring changes).
    """
    _check_images(x)
    check_number("padding", padding, 0, integer=True)
    check_choice("padding_mode", padding_mode, ("zeros", "reflect"))
    n, _, height, width = x.shape
    padding = int(padding)
    if padding_mode == "reflect" and padding >= min(height, width):
        raise ValueError(
            f"padding must be < {min(height, width)} (the image's smaller side) with padding_mode='reflect', "
            f"got {padding}"
        )
    if n == 0:
        return x.clone()
    device = _draw_device(x, generator)
    shift = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=device).to(x.device)
    flipped = (torch.rand(n, generator=generator, device=device) < 0.5).to(x.device) if flip else None
    if padding:
        x = F.pad(x, (padding,) * 4, mode="reflect" if padding_mode == "reflect" else "constant")
    rows = shift[0, :, None] + torch.arange(height, device=x.device)  # (N, H) rows of the padded image
    cols = torch.arange(width, device=x.device).expand(n, width)
    if flipped is not None:
        cols = torch.where(flipped[:, None], cols.flip(-1), cols)  # a flipped crop reads its columns backwards
    cols = shift[1, :, None] + cols  # (N, W)
    samples = torch.arange(n, device=x.device)[:, None, None, None]
    channels = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return x[samples, channels, rows[:, None, :, None], cols[:, None, None, :]]


def cutout(x: torch.Tensor, size: int = 8, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero one ``size x size`` square per sample, in every channel (DeVries & Taylor, 2017).

    The square's centre is uniform over the image, so near a border the square is clipped
    to the part inside the image. Zero is the channel mean in standardised data.

    Args:
        x: images ``(N, C, H, W)``.
        size: side of the square in pixels; 0 leaves ``x`` as it is.
        generator: source of the centres; ``None`` uses torch's global generator.
    """
    _check_images(x)
    check_number("size", size, 0, integer=True)
    n, _, height, width = x.shape
    if n == 0 or size == 0:
        return x.clone()
    device = _draw_device(x, generator)
    centre_y = torch.randint(0, height, (n,), generator=generator, device=device).to(x.device)
    centre_x = torch.randint(0, width, (n,), generator=generator, device=device).to(x.device)

    def inside(centre: torch.Tensor, length: int) -> torch.Tensor:
        """(N, length): which pixels of a row or column the square covers."""
        start = centre[:, None] - int(size) // 2
        pixels = torch.arange(length, device=x.device)
        return (pixels >= start) & (pixels < start + int(size))

    hole = inside(centre_y, height)[:, :, None] & inside(centre_x, width)[:, None, :]  # (N, H, W)
    return x.masked_fill(hole[:, None], 0)


def _log_gamma_sample(shape: float, generator: torch.Generator | None) -> float:
    """``log`` of one Gamma(``shape``, 1) draw (Marsaglia & Tsang, 2000), from uniforms and normals of
    ``generator`` (torch's own Gamma sampler takes no generator). Logs keep tiny shapes from underflowing."""
    device = generator.device if generator is not None else None

    def uniform() -> float:
        return 1.0 - float(torch.rand((), generator=generator, device=device))  # in (0, 1]

    log_boost = 0.0
    if shape < 1:  # Gamma(a) = Gamma(a + 1) * U ** (1 / a)
        log_boost = math.log(uniform()) / shape
        shape += 1
    d = shape - 1 / 3
    c = 1 / math.sqrt(9 * d)
    while True:
        z = float(torch.randn((), generator=generator, device=device))
        v = (1 + c * z) ** 3
        if v <= 0:
            continue
        u = uniform()
        if math.log(u) < 0.5 * z * z + d - d * v + d * math.log(v):
            return math.log(d * v) + log_boost


def sample_beta(alpha: float, beta: float, generator: torch.Generator | None = None) -> float:
    """One draw of Beta(``alpha``, ``beta``) from ``generator`` (``None``: torch's global CPU generator)."""
    check_number("alpha", alpha, 0, low_open=True)
    check_number("beta", beta, 0, low_open=True)
    log_a, log_b = _log_gamma_sample(alpha, generator), _log_gamma_sample(beta, generator)
    return 1 / (1 + math.exp(min(log_b - log_a, 700.0)))  # a / (a + b), safe when both are tiny


def mixup(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    alpha: float = 0.2,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix the batch with a shuffled copy of itself (Zhang et al., 2018).

    With ``lam ~ Beta(alpha, alpha)`` (one per batch) and a random permutation ``perm``,
    returns ``lam * x + (1 - lam) * x[perm]`` and the soft targets
    ``lam * onehot(y) + (1 - lam) * onehot(y[perm])``: float class probabilities of shape
    ``(N, num_classes)``, each row summing to 1.

    Args:
        x: a batch of any shape ``(N, ...)``.
        y: class indices ``(N,)``, or class probabilities ``(N, num_classes)`` (mixed alike).
        num_classes: width of the soft targets.
        alpha: concentration of the Beta distribution, > 0; small values keep most mixes near one sample.
        generator: source of ``lam`` and ``perm``; with ``None``, ``lam`` comes from the global CPU
            generator and ``perm`` from the global generator of ``x``'s device.
    """
    check_number("num_classes", num_classes, 1, integer=True)
    check_number("alpha", alpha, 0, low_open=True)
    n = len(x)
    if y.ndim == 1 and not y.is_floating_point():
        if n and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise ValueError(f"y must hold class indices in [0, {num_classes}), found {int(y.min())}..{int(y.max())}")
        targets = F.one_hot(y, num_classes).to(x.dtype if x.is_floating_point() else torch.float32)
    elif y.ndim == 2 and y.shape[1] == num_classes and y.is_floating_point():
        targets = y
    else:
        raise ValueError(
            f"y must be class indices of shape (N,) or class probabilities of shape (N, {num_classes}), "
            f"got {y.dtype} {tuple(y.shape)}"
        )
    if len(targets) != n:
        raise ValueError(f"x and y must hold as many samples, got {n} and {len(targets)}")
    lam = sample_beta(alpha, alpha, generator)
    perm = torch.randperm(n, generator=generator, device=_draw_device(x, generator)).to(x.device)
    return lam * x + (1 - lam) * x[perm], lam * targets + (1 - lam) * targets[perm]


class BatchAugmentation:
    """Crop+flip, cutout and mixup of a batch of images, in that order, each off by default.

    Batches may come as images or flat (``(N, prod(image_shape))``): flat ones are reshaped to
    ``image_shape`` for the augmentation and flattened back.

    Args:
        image_shape: ``(channels, height, width)`` of one sample.
        num_classes: classes of the targets (for mixup's soft targets).
        augment: random crop after padding by ``padding`` pixels, and random horizontal flips.
        cutout: side of the square zeroed per sample; 0 is off.
        mixup: alpha of mixup's Beta distribution; 0.0 is off. Targets become class probabilities.
        padding: of :func:`random_crop_flip`.
        padding_mode: of :func:`random_crop_flip`.
        flip: of :func:`random_crop_flip`.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        num_classes: int,
        augment: bool = False,
        cutout: int = 0,
        mixup: float = 0.0,
        padding: int = 4,
        padding_mode: str = "reflect",
        flip: bool = True,
    ) -> None:
        image_shape = tuple(int(s) for s in image_shape)
        if len(image_shape) != 3 or min(image_shape) < 1:
            raise ValueError(f"image_shape must be (channels, height, width), got {image_shape}")
        check_number("num_classes", num_classes, 1, integer=True)
        if not isinstance(augment, bool):
            raise ValueError(f"augment must be true or false, got {augment!r}")
        side = min(image_shape[1:])
        check_number("cutout", cutout, 0, side, integer=True)
        check_number("mixup", mixup, 0)
        check_number("padding", padding, 0, integer=True)
        check_choice("padding_mode", padding_mode, ("zeros", "reflect"))
        if augment and padding_mode == "reflect" and padding >= side:
            raise ValueError(f"padding must be < {side} (the image's smaller side) with reflection, got {padding}")
        self.image_shape = image_shape
        self.num_classes = int(num_classes)
        self.augment, self.cutout, self.mixup = augment, int(cutout), float(mixup)
        self.padding, self.padding_mode, self.flip = int(padding), padding_mode, bool(flip)

    @property
    def active(self) -> bool:
        """Whether any augmentation is on."""
        return self.augment or self.cutout > 0 or self.mixup > 0

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.active:
            return x, y
        shape = x.shape
        if math.prod(shape[1:]) != math.prod(self.image_shape):
            raise ValueError(f"batch of shape {tuple(shape)} does not hold images of shape {self.image_shape}")
        x = x.reshape(len(x), *self.image_shape)
        if self.augment:
            x = random_crop_flip(x, self.padding, generator, padding_mode=self.padding_mode, flip=self.flip)
        if self.cutout:
            x = cutout(x, self.cutout, generator)
        if self.mixup:
            x, y = mixup(x, y, self.num_classes, self.mixup, generator)
        return x.reshape(shape), y

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(augment={self.augment}, cutout={self.cutout}, mixup={self.mixup}, "
            f"padding={self.padding}, padding_mode={self.padding_mode!r}, flip={self.flip})"
        )


class AugmentedDataModule(TensorDataModule):
    """A :class:`TensorDataModule` whose ``augmentation`` (set by the subclass) changes training batches.

    It runs in ``on_after_batch_transfer``, on the device, while the trainer trains and the
    model is in training mode: validation, test and prediction batches, the sanity check's, and
    batches evaluated in eval mode during ``fit`` (the LR range test's validation batches) are
    left as they are. Its random numbers come from torch's global generators (seeded by the
    run's seed).
    """

    augmentation: BatchAugmentation | None = None

    def _augments_now(self) -> bool:
        trainer = self.trainer
        if self.augmentation is None or not self.augmentation.active or trainer is None or not trainer.training:
            return False
        module = trainer.lightning_module
        return module is None or module.training

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        augmentation = self.augmentation
        if augmentation is None or not self._augments_now():
            return batch
        x, y = batch
        return list(augmentation(x, y))
