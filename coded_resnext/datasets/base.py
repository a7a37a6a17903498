"""Split views over raw datasets.

Every split the builders return is a ``TransformedSubset``: a raw dataset yielding ``(PIL image, label)``,
a set of indices into it, and a transform. ``train``, ``train_eval`` and ``val`` share one raw dataset (no
copy of the images): ``val`` is a class-stratified hold-out of the training split, ``train`` and
``train_eval`` the rest under two transforms. Labels come from the raw dataset's ``targets`` without
decoding an image, and every subset is drawn seeded and stratified (``sampling.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from coded_resnext.datasets.sampling import stratified_sample, stratified_split
from coded_resnext.datasets.spec import DataSpec


class ArrayImages(Dataset):
    """In-memory uint8 images, (N, H, W) grayscale or (N, H, W, 3) RGB, yielding PIL images like torchvision's."""

    def __init__(self, images: np.ndarray, targets: Sequence[int] | np.ndarray | torch.Tensor) -> None:
        if images.dtype != np.uint8 or images.ndim not in (3, 4):
            raise ValueError(f"expected uint8 images of shape (N, H, W[, 3]), got {images.dtype} {images.shape}")
        self.images = images
        self.targets = torch.as_tensor(np.asarray(targets), dtype=torch.long)
        if len(self.targets) != len(images):
            raise ValueError(f"{len(images)} images but {len(self.targets)} labels")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return Image.fromarray(self.images[index]), int(self.targets[index])


class TransformedSubset(Dataset):
    """``base[indices[i]]`` with ``transform`` applied to the image; ``targets`` are known without loading."""

    def __init__(self, base: Any, indices: torch.Tensor | Sequence[int] | None, transform: Callable | None) -> None:
        self.base = base
        base_targets = torch.as_tensor(np.asarray(base.targets), dtype=torch.long)
        self.indices = (
            torch.arange(len(base_targets)) if indices is None else torch.as_tensor(indices, dtype=torch.long)
        )
        self.targets = base_targets[self.indices]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, label = self.base[int(self.indices[index])]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(label)

    def with_transform(self, transform: Callable | None) -> TransformedSubset:
        """The same samples under another transform (shares the raw data)."""
        return TransformedSubset(self.base, self.indices, transform)

    def take(self, positions: torch.Tensor) -> TransformedSubset:
        """The samples at ``positions`` (into this subset), same transform."""
        return TransformedSubset(self.base, self.indices[positions], self.transform)

    def subset(self, limit: int | None, seed: int) -> TransformedSubset:
        """A seeded class-stratified subset of at most ``limit`` samples (all of them when ``limit`` is None)."""
        if limit is None or limit >= len(self.indices):
            return self
        return self.take(stratified_sample(self.targets, limit, seed))


class Unlabeled(Dataset):
    """Images of another dataset with label -1: out-of-distribution negatives have no class of ours.
    ``source_targets`` keeps the other dataset's own labels, so subsamples can be stratified by them."""

    def __init__(self, dataset: TransformedSubset) -> None:
        self.dataset = dataset
        self.source_targets = dataset.targets
        self.targets = torch.full((len(dataset),), -1, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.dataset[index][0], -1


class Transforms(NamedTuple):
    train: Callable  # augmentation + normalization
    eval: Callable  # normalization only (and the resize/crop of the ImageNet recipe)


class RoleViews(NamedTuple):
    train: TransformedSubset
    train_eval: TransformedSubset  # the training samples under the eval transform
    val: TransformedSubset | None
    test: TransformedSubset | None


def role_views(
    spec: DataSpec,
    transforms: Transforms,
    train_base: Any,
    test_base: Any | None = None,
    *,
    train_pool: torch.Tensor | None = None,
    test_pool: torch.Tensor | None = None,
) -> RoleViews:
    """The three roles over raw datasets. ``train_pool`` / ``test_pool``: the raw indices forming the
    training and test splits when they share one raw dataset (None: all of it).

    ``val`` is a class-stratified ``spec.val_fraction`` hold-out of the training split (seed
    ``spec.split_seed``); then ``limit_train`` / ``limit_val`` / ``limit_test`` take stratified subsets.
    """
    pool = TransformedSubset(train_base, train_pool, transforms.eval)
    kept, held = stratified_split(pool.targets, spec.val_fraction, spec.split_seed)
    seed = spec.split_seed
    train_eval = pool.take(kept).subset(spec.limit_train, seed)
    val = pool.take(held).subset(spec.limit_val, seed + 1) if len(held) else None
    test = None
    if test_base is not None:
        test = TransformedSubset(test_base, test_pool, transforms.eval).subset(spec.limit_test, seed + 2)
    return RoleViews(train_eval.with_transform(transforms.train), train_eval, val, test)
