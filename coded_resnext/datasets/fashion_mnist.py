"""Fashion-MNIST from IDX files: the data dir, torchvision's layout under it, Debian's package, or a download."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torchvision import datasets as tvd

from coded_resnext.datasets.base import ArrayImages, Transforms, role_views
from coded_resnext.datasets.idx import read_idx
from coded_resnext.datasets.spec import DataError, DatasetBundle, DataSpec, one_line
from coded_resnext.datasets.transforms import FASHION_MNIST_MEAN, FASHION_MNIST_STD, small_image_transforms

DEFAULT_ROOT = "./data"
# Debian's `dataset-fashion-mnist` installs the four .gz files here; a module constant so tests can move it.
SYSTEM_DIRS: tuple[str, ...] = ("/usr/share/datasets/fashion-mnist",)
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
CLASS_NAMES = list(tvd.FashionMNIST.classes)


def search_dirs(root: str | None) -> list[Path]:
    """Where the IDX files are looked for, in order: a root the user named and nothing else (its files,
    or torchvision's layout under it); with no root, ``./data`` and then the system copy."""
    base = Path(root or DEFAULT_ROOT).absolute()
    named = [base, base / "FashionMNIST" / "raw"]
    return named if root is not None else [*named, *(Path(d) for d in SYSTEM_DIRS)]


def _files_in(directory: Path) -> dict[str, Path] | None:
    """The four IDX files (plain preferred over .gz) if all are in ``directory``."""
    found = {}
    for key, stem in FILES.items():
        candidates = [directory / stem, directory / f"{stem}.gz"]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            return None
        found[key] = path
    return found


def find_files(root: str | None) -> dict[str, Path] | None:
    """The IDX files of the first search dir that holds all four, or None."""
    return next((files for d in search_dirs(root) if (files := _files_in(d)) is not None), None)


def read_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, H) uint8 and labels (N,) of one split's IDX pair; a one-line DataError naming the file."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise DataError(f"{images_path}: expected uint8 images (N, H, H), got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(f"{labels_path}: expected uint8 labels (N,), got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels")
    if len(labels) and labels.max() >= len(CLASS_NAMES):
        raise DataError(f"{labels_path}: label {labels.max()} out of range 0..{len(CLASS_NAMES) - 1} (wrong file?)")
    return images, labels


def build_fashion_mnist(spec: DataSpec) -> DatasetBundle:
    """Fashion-MNIST: 60000 train / 10000 test 28x28 grayscale images; val is held out of the 60000."""
    files = find_files(spec.root)
    if files is None and spec.download:
        root = spec.root or DEFAULT_ROOT
        try:  # writes root/FashionMNIST/raw, the second search dir
            tvd.FashionMNIST(root, train=True, download=True)
        except (OSError, RuntimeError) as exc:  # URLError is an OSError
            raise DataError(f"Fashion-MNIST download into {root} failed: {one_line(exc)}") from exc
        files = _files_in(Path(root) / "FashionMNIST" / "raw")
    if files is None and spec.root is not None:
        root = Path(spec.root).absolute()
        problem = "does not exist" if not root.exists() else "holds no Fashion-MNIST IDX files"
        raise DataError(
            f"data.root={spec.root} {problem} (looked in {root} and {root / 'FashionMNIST' / 'raw'}); fix the path, "
            "or leave data.root out to use ./data or the system copy (apt-get install dataset-fashion-mnist)"
        )
    if files is None:
        where = ", ".join(str(d) for d in search_dirs(spec.root))
        raise DataError(
            f"Fashion-MNIST IDX files (train-images-idx3-ubyte[.gz], ...) not found in {where}; "
            f"apt-get install dataset-fashion-mnist, or set data.download=true, or data.root=DIR with the IDX files"
        )
    train_images, train_labels = read_split(files["train_images"], files["train_labels"])
    test_images, test_labels = read_split(files["test_images"], files["test_labels"])
    size = train_images.shape[1]
    transforms = Transforms(
        *small_image_transforms(
            size,
            FASHION_MNIST_MEAN,
            FASHION_MNIST_STD,
            padding=2,
            flip=True,
            augment=spec.augment,
            randaugment=spec.randaugment,
            randaugment_order=spec.randaugment_order,
        )
    )
    views = role_views(spec, transforms, ArrayImages(train_images, train_labels), ArrayImages(test_images, test_labels))
    return DatasetBundle(
        **views._asdict(),
        num_classes=len(CLASS_NAMES),
        in_chans=1,
        image_size=size,
        class_names=list(CLASS_NAMES),
        mean=FASHION_MNIST_MEAN,
        std=FASHION_MNIST_STD,
    )
