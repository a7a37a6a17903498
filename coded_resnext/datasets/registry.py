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


# (num_classes, in_chans) of the datasets whose shape is fixed by their name, known without reading the data
# (a search is validated on the driver, which on a cluster may not hold the dataset); an imagefolder's
# shape is its folder's. A new dataset adds its builder above and, if its shape is fixed, a line here.
_SHAPES: dict[str, tuple[int, int]] = {
    "cifar10": (10, 3),
    "cifar100": (100, 3),
    "fashion-mnist": (10, 1),
    "digits": (10, 1),
    "synthetic": (10, 1),
}


def dataset_shape(name: str) -> tuple[int, int] | None:
    """(num_classes, in_chans) of dataset ``name`` without reading it; None when only its data can tell."""
    return _SHAPES.get(name)


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
    """Out-of-distribution negatives for the binary classifiers, shaped like ``like``'s inputs.

    Images get ``like``'s channels and size, and are normalized with their own dataset's statistics where
    they keep their channels, as the authors' evaluation reads CIFAR-100 for a CIFAR-10 model through
    CIFAR-100's own loader (with ``like``'s where the channels are converted, since their own statistics
    no longer apply); labels are -1 (``source_targets`` keeps the dataset's own classes, for stratified
    subsamples). The paper pairs CIFAR-10 with CIFAR-100 and vice versa; for Fashion-MNIST use ``digits``.
    A dataset with an official test split (a raw dataset of its own) contributes that split (CIFAR-100's
    10,000 test images); one whose splits are carved from one raw dataset (digits, imagefolder without
    val/) contributes all its samples, since none of them was seen by ``like``'s model. ``limit`` takes a
    seeded class-stratified subset.
    """
    bundle = build_dataset(
        DataSpec(name=name, root=root, download=download, augment=False, image_size=like.image_size, val_fraction=0.0)
    )
    pool = bundle.test
    train = bundle.train_eval
    if not isinstance(train, TransformedSubset) or not isinstance(pool, TransformedSubset | None):
        raise DataError(f"dataset {name!r} cannot serve as out-of-distribution data")
    if pool is None or pool.base is train.base:  # no test split of its own: use every sample
        indices = train.indices if pool is None else torch.cat([train.indices, pool.indices]).sort().values
        pool = TransformedSubset(train.base, indices, None)
    own = bundle.in_chans == like.in_chans
    transform = matching_transform(
        like.in_chans, like.image_size, *((bundle.mean, bundle.std) if own else (like.mean, like.std))
    )
    return Unlabeled(pool.with_transform(transform).subset(limit, seed))
