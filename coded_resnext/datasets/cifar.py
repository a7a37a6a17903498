"""CIFAR-10 / CIFAR-100 through torchvision's loaders, with the paper's augmentation (docs/method.md section 5)."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

from torchvision import datasets as tvd

from coded_resnext.datasets.base import Transforms, role_views
from coded_resnext.datasets.spec import DataError, DatasetBundle, DataSpec, one_line
from coded_resnext.datasets.transforms import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    small_image_transforms,
)

DEFAULT_ROOT = "./data"
CIFAR_SIZE = 32


@dataclass(frozen=True)
class _Cifar:
    title: str
    loader: type[tvd.CIFAR10]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def folder(self) -> str:
        return self.loader.base_folder


CIFAR10 = _Cifar("CIFAR-10", tvd.CIFAR10, CIFAR10_MEAN, CIFAR10_STD)
CIFAR100 = _Cifar("CIFAR-100", tvd.CIFAR100, CIFAR100_MEAN, CIFAR100_STD)


def _load(which: _Cifar, root: str, train: bool, download: bool) -> tvd.CIFAR10:
    """One split as a raw torchvision dataset (PIL images), every failure turned into a one-line DataError."""
    folder = Path(root).absolute() / which.folder
    if download:  # torchvision skips the download when the files are already there and intact
        try:
            return which.loader(root, train=train, download=True)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:  # URLError is an OSError
            raise DataError(f"{which.title} download into {folder.parent} failed: {one_line(exc)}") from exc
    if not folder.is_dir():
        raise DataError(
            f"{which.title} not found in {folder.parent} (expected {which.folder}/); set data.download=true on a machine "
            f"with internet, or copy the extracted archive there"
        )
    try:
        return which.loader(root, train=train, download=False)
    except RuntimeError as exc:  # torchvision's md5 check: a missing or modified batch file
        raise DataError(
            f"{which.title} files in {folder} are missing or corrupt ({one_line(exc)}); "
            f"delete the folder and set data.download=true, or copy a fresh extracted archive there"
        ) from exc
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, ValueError, TypeError) as exc:
        raise DataError(
            f"{which.title} files in {folder} are unreadable ({type(exc).__name__}: {one_line(exc)}); "
            f"delete the folder and set data.download=true, or copy a fresh extracted archive there"
        ) from exc


def _build(which: _Cifar, spec: DataSpec) -> DatasetBundle:
    root = spec.root or DEFAULT_ROOT
    train_base = _load(which, root, train=True, download=spec.download)
    test_base = _load(which, root, train=False, download=False)
    transforms = Transforms(
        *small_image_transforms(
            CIFAR_SIZE,
            which.mean,
            which.std,
            padding=4,
            flip=True,
            augment=spec.augment,
            randaugment=spec.randaugment,
            randaugment_order=spec.randaugment_order,
        )
    )
    return DatasetBundle(
        **role_views(spec, transforms, train_base, test_base)._asdict(),
        num_classes=len(train_base.classes),
        in_chans=3,
        image_size=CIFAR_SIZE,
        class_names=list(train_base.classes),
        mean=which.mean,
        std=which.std,
    )


def build_cifar10(spec: DataSpec) -> DatasetBundle:
    """CIFAR-10: 50000 train / 10000 test images; val is held out of the 50000."""
    return _build(CIFAR10, spec)


def build_cifar100(spec: DataSpec) -> DatasetBundle:
    """CIFAR-100 (fine labels): 50000 train / 10000 test images; val is held out of the 50000."""
    return _build(CIFAR100, spec)
