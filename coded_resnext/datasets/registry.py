"""Datasets by name: one dict from name to builder, and out-of-distribution sets shaped like another dataset."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import Dataset

from coded_resnext.datasets.base import TransformedSubset, Unlabeled
from coded_resnext.datasets.cifar import build_cifar10, build_cifar100
from coded_resnext.datasets.fashion_mnist import build_fashion_mnist
from coded_resnext.datasets.generated import build_digits, build_synthetic
from coded_resnext.datasets.imagefolder import build_imagefolder
from coded_resnext.datasets.spec import DataError, DatasetBundle, DataSpec
from coded_resnext.datasets.transforms import matching_transform

Builder = Callable[[DataSpec], DatasetBundle]

_DATASETS: dict[str, Builder] = {
    "cifar10": build_cifar10,
    "cifar100": build_cifar100,
    "fashion-mnist": build_fashion_mnist,
    "imagefolder": build_imagefolder,
    "digits": build_digits,
    "synthetic": build_synthetic,
}


def list_datasets() -> list[str]:
    return sorted(_DATASETS)


def build_dataset(spec: DataSpec) -> DatasetBundle:
    """The bundle (train, train_eval, val and their metadata) of the dataset ``spec.name``."""
    builder = _DATASETS.get(spec.name)
    if builder is None:
        raise DataError(f"unknown dataset {spec.name!r}; choose one of: {', '.join(list_datasets())}")
    return builder(spec)


def build_ood_dataset(
    name: str,
    like: DatasetBundle,
    root: str | None = None,
    limit: int | None = None,
    download: bool = False,
    seed: int = 0,
) -> Dataset:
    """Out-of-distribution negatives for the binary classifiers, transformed to look like ``like``'s inputs.

    Images get ``like``'s channels, size and normalization; labels are -1. The paper pairs CIFAR-10 with
    CIFAR-100 and vice versa; for Fashion-MNIST use ``digits``. A dataset with an official test split
    contributes that split; one without (digits, imagefolder without val/) contributes all its samples,
    since none of them was seen by ``like``'s model. ``limit`` takes a seeded subset.
    """
    bundle = build_dataset(DataSpec(name=name, root=root, download=download, augment=False, image_size=like.image_size))
    pool = bundle.val
    if not isinstance(pool, TransformedSubset) or not isinstance(bundle.train_eval, TransformedSubset):
        raise DataError(f"dataset {name!r} cannot serve as out-of-distribution data")
    if pool.base is bundle.train_eval.base:  # val is a split of train: use every sample
        indices = torch.cat([bundle.train_eval.indices, pool.indices]).sort().values
        pool = TransformedSubset(pool.base, indices, None)
    transform = matching_transform(like.in_chans, like.image_size, like.mean, like.std)
    return Unlabeled(pool.with_transform(transform).subset(limit, seed))
