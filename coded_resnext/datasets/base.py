"""Split views over raw datasets.

Every split the builders return is a ``TransformedSubset``: a raw dataset yielding ``(PIL image, label)``,
a set of indices into it, and a transform. ``train`` and ``train_eval`` share one raw dataset (no copy of the
images) and differ only in the transform, and labels come from the raw dataset's ``targets`` without
decoding an image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset


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

    def subset(self, limit: int | None, seed: int) -> TransformedSubset:
        """A seeded random subset of at most ``limit`` samples (all of them when ``limit`` is None)."""
        if limit is None or limit >= len(self.indices):
            return self
        generator = torch.Generator().manual_seed(seed)
        keep = torch.randperm(len(self.indices), generator=generator)[:limit].sort().values
        return TransformedSubset(self.base, self.indices[keep], self.transform)


class Unlabeled(Dataset):
    """Images of another dataset with label -1: out-of-distribution negatives have no class of ours."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.targets = torch.full((len(dataset),), -1, dtype=torch.long)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.dataset[index][0], -1


def seeded_split(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint sorted (train, val) index tensors covering ``range(n)``; at least one sample on each side."""
    if n < 2:
        raise ValueError(f"cannot split {n} sample(s) into train and val")
    n_val = min(max(1, round(n * val_fraction)), n - 1)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    return order[n_val:].sort().values, order[:n_val].sort().values


def split_views(
    train_base: Any,
    val_base: Any,
    train_indices: torch.Tensor | None,
    val_indices: torch.Tensor | None,
    train_transform: Callable,
    eval_transform: Callable,
    limit_train: int | None,
    limit_val: int | None,
    seed: int,
) -> tuple[TransformedSubset, TransformedSubset, TransformedSubset]:
    """(train, train_eval, val) views, limited to seeded subsets; train and train_eval hold the same samples."""
    train_eval = TransformedSubset(train_base, train_indices, eval_transform).subset(limit_train, seed)
    val = TransformedSubset(val_base, val_indices, eval_transform).subset(limit_val, seed + 1)
    return train_eval.with_transform(train_transform), train_eval, val
