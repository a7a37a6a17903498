"""Datasets that need no files: scikit-learn's bundled 8x8 digits and a generated, learnable synthetic set."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from coded_resnext.datasets.base import ArrayImages, Transforms, role_views
from coded_resnext.datasets.sampling import stratified_split
from coded_resnext.datasets.spec import DatasetBundle, DataSpec
from coded_resnext.datasets.transforms import small_image_transforms

DIGITS_IMAGE_SIZE = 28  # upsampled from 8x8 to the Fashion-MNIST size, so the same small nets fit both
# digits has no official test split: a fixed stratified 20% (seed 0, whatever the run's split_seed) is
# its test split, so every run is tested on the same images; val is held out of the other 80%.
DIGITS_TEST_FRACTION = 0.2
DIGITS_TEST_SEED = 0

SYNTHETIC_CLASSES = 10
SYNTHETIC_TRAIN = 2000
SYNTHETIC_TEST = 500
SYNTHETIC_IMAGE_SIZE = 28
SYNTHETIC_GRID = 4  # each class pattern is a random 4x4 grid upsampled: low frequency, so crops keep it
SYNTHETIC_NOISE = 0.15


def upsample_to_uint8(images: np.ndarray, size: int) -> np.ndarray:
    """(N, h, w) floats in [0, 1] -> (N, size, size) uint8, bilinear."""
    x = torch.from_numpy(np.asarray(images, dtype=np.float32))[:, None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return (x[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def _stats(images: np.ndarray) -> tuple[tuple[float], tuple[float]]:
    """Mean and std of uint8 grayscale images in [0, 1] units, rounded so configs and logs stay readable."""
    x = images.astype(np.float64) / 255.0
    return (round(float(x.mean()), 4),), (round(max(float(x.std()), 1e-3), 4),)


def _small_grayscale_bundle(
    spec: DataSpec,
    train_base: ArrayImages,
    test_base: ArrayImages,
    num_classes: int,
    *,
    train_pool: torch.Tensor | None = None,
    test_pool: torch.Tensor | None = None,
) -> DatasetBundle:
    size = train_base.images.shape[1]
    train_images = train_base.images if train_pool is None else train_base.images[train_pool.numpy()]
    mean, std = _stats(train_images)
    # digits and the synthetic patterns are not mirror-symmetric classes: a small shift only, no flip
    transforms = Transforms(
        *small_image_transforms(
            size,
            mean,
            std,
            padding=2,
            flip=False,
            augment=spec.augment,
            randaugment=spec.randaugment,
            randaugment_order=spec.randaugment_order,
        )
    )
    views = role_views(spec, transforms, train_base, test_base, train_pool=train_pool, test_pool=test_pool)
    return DatasetBundle(
        **views._asdict(),
        num_classes=num_classes,
        in_chans=1,
        image_size=size,
        class_names=[str(k) for k in range(num_classes)],
        mean=mean,
        std=std,
    )


def build_digits(spec: DataSpec) -> DatasetBundle:
    """scikit-learn's 1797 bundled digits (always offline), upsampled to ``image_size``; a fixed stratified
    20% is the test split, val is held out of the rest."""
    from sklearn.datasets import load_digits  # imported here: sklearn is slow to import and only digits needs it

    digits = load_digits()
    images = upsample_to_uint8(digits.images / 16.0, spec.image_size or DIGITS_IMAGE_SIZE)
    base = ArrayImages(images, digits.target)
    train_pool, test_pool = stratified_split(base.targets, DIGITS_TEST_FRACTION, DIGITS_TEST_SEED)
    return _small_grayscale_bundle(spec, base, base, 10, train_pool=train_pool, test_pool=test_pool)


def make_synthetic(
    num_train: int = SYNTHETIC_TRAIN,
    num_test: int = SYNTHETIC_TEST,
    num_classes: int = SYNTHETIC_CLASSES,
    size: int = SYNTHETIC_IMAGE_SIZE,
    seed: int = 0,
    noise: float = SYNTHETIC_NOISE,
) -> tuple[ArrayImages, ArrayImages]:
    """(train, test): each class a fixed random low-frequency pattern, each sample that pattern plus noise.

    Everything comes from one generator seeded with ``seed``, so the same seed gives the same images; the
    classes are balanced and separable, so a small net learns them in a few epochs.
    """
    rng = np.random.default_rng(seed)
    grids = rng.random((num_classes, SYNTHETIC_GRID, SYNTHETIC_GRID))
    lo, hi = grids.min(axis=(1, 2), keepdims=True), grids.max(axis=(1, 2), keepdims=True)
    grids = 0.15 + 0.7 * (grids - lo) / np.maximum(hi - lo, 1e-6)  # full contrast, with room for the noise
    patterns = upsample_to_uint8(grids, size).astype(np.float32) / 255.0

    def draw(n: int) -> ArrayImages:
        labels = rng.permutation(np.arange(n) % num_classes)
        x = patterns[labels] + noise * rng.standard_normal((n, size, size), dtype=np.float32)
        return ArrayImages((np.clip(x, 0, 1) * 255).round().astype(np.uint8), labels)

    return draw(num_train), draw(num_test)


def build_synthetic(spec: DataSpec) -> DatasetBundle:
    """Generated data for tests and smoke runs: 10 classes, 2000 train (val held out of them) / 500 test,
    1x28x28 (``image_size``); the images depend on ``split_seed``."""
    train_base, test_base = make_synthetic(size=spec.image_size or SYNTHETIC_IMAGE_SIZE, seed=spec.split_seed)
    return _small_grayscale_bundle(spec, train_base, test_base, SYNTHETIC_CLASSES)
