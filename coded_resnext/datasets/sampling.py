"""Seeded, class-stratified index draws: hold-out splits and every subsample the evaluation takes.

Why not scikit-learn's ``train_test_split(stratify=...)`` / ``StratifiedShuffleSplit``: they refuse a
class with a single member and a sample smaller than the number of classes (256 evaluation images of a
1000-class ImageNet folder), and their allocation of the rounding remainder depends on the class
counts in ways that are not documented as stable. The evaluation needs any size on any label vector,
the same indices for the same (labels, size, seed) forever, and no class left out when there is room
for it, so this allocates per class by the largest-remainder rule and draws inside each class with a
seeded numpy generator.

"The first N in file order" is what these replace: a class-sorted folder (torchvision's ``ImageFolder``
lists files by class) would otherwise give most classes no sample at all.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset


def _labels(targets: Tensor | np.ndarray | list[int]) -> np.ndarray:
    return np.asarray(targets.cpu() if isinstance(targets, Tensor) else targets).reshape(-1)


def class_quota(labels: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(classes, how many of each to take) for ``n`` of ``labels``: proportional shares rounded down,
    the remainder one by one to the largest fractional parts (ties broken by ``rng``, so no class is
    favoured by its index); when ``n`` is at least the number of classes, every class gets one."""
    classes, counts = np.unique(labels, return_counts=True)
    n = min(n, len(labels))
    quota = counts * (n / max(len(labels), 1))
    take = np.floor(quota).astype(np.int64)
    if n >= len(classes):
        take = np.maximum(take, 1)
    order = np.lexsort((rng.permutation(len(classes)), -(quota - take)))  # largest fraction first
    while take.sum() > n:  # the minimum of one overshot: give back where the share was rounded up most
        i = next(i for i in order[::-1] if take[i] > 1)
        take[i] -= 1
    while take.sum() < n:  # terminates: the classes' room adds up to at least what is missing
        for i in order:
            if take.sum() == n:
                break
            if take[i] < counts[i]:
                take[i] += 1
    return classes, take


def stratified_sample(targets: Tensor | np.ndarray | list[int], n: int | None, seed: int) -> Tensor:
    """Sorted positions of ``n`` samples of ``targets`` (all when ``n`` is None or too large), each
    class in proportion to its share, drawn at random inside the class with ``seed``."""
    labels = _labels(targets)
    if n is None or n >= len(labels):
        return torch.arange(len(labels))
    if n <= 0:
        return torch.zeros(0, dtype=torch.long)
    rng = np.random.default_rng(seed)
    classes, take = class_quota(labels, n, rng)
    picked = [
        rng.choice(np.flatnonzero(labels == c), size=int(t), replace=False) for c, t in zip(classes, take, strict=True)
    ]
    return torch.from_numpy(np.sort(np.concatenate(picked)).astype(np.int64))


def stratified_split(targets: Tensor | np.ndarray | list[int], fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """(kept, held out): sorted, disjoint positions covering ``targets``; the held-out share is
    ``fraction`` of the samples (at least one when ``fraction`` > 0), stratified by class."""
    labels = _labels(targets)
    n = len(labels)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"hold-out fraction must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return torch.arange(n), torch.zeros(0, dtype=torch.long)
    if n < 2:
        raise ValueError(f"cannot hold out a share of {n} sample(s)")
    n_out = min(max(1, round(n * fraction)), n - 1)
    held = stratified_sample(labels, n_out, seed)
    mask = np.ones(n, dtype=bool)
    mask[held.numpy()] = False
    return torch.from_numpy(np.flatnonzero(mask).astype(np.int64)), held


def dataset_targets(dataset: Dataset) -> Tensor:
    """A dataset's labels without loading images (its ``targets``), else read one sample at a time."""
    labels = getattr(dataset, "targets", None)
    if labels is None:
        return torch.tensor([int(dataset[i][1]) for i in range(len(dataset))], dtype=torch.long)  # type: ignore[arg-type]
    return torch.as_tensor(np.asarray(labels), dtype=torch.long)


class LabelledSubset(Subset):
    """``torch.utils.data.Subset`` that keeps ``targets`` (and ``source_targets``), so it can be sampled again."""

    def __init__(self, dataset: Dataset, indices: Tensor) -> None:
        super().__init__(dataset, indices.tolist())
        self.targets = dataset_targets(dataset)[indices]
        source = getattr(dataset, "source_targets", None)
        if source is not None:
            self.source_targets = torch.as_tensor(source)[indices]


def stratified_subset(dataset: Dataset, n: int | None, seed: int, *, by: str = "targets") -> Dataset:
    """At most ``n`` samples of ``dataset``, seeded and stratified by its ``targets`` (or ``by``, e.g.
    ``source_targets`` of out-of-distribution images); the dataset itself when it is small enough."""
    if n is None or n >= len(dataset):  # type: ignore[arg-type]
        return dataset
    labels = getattr(dataset, by, None) if by != "targets" else dataset_targets(dataset)
    if labels is None:
        raise ValueError(f"{type(dataset).__name__} has no {by!r} to stratify by")
    return LabelledSubset(dataset, stratified_sample(labels, n, seed))
