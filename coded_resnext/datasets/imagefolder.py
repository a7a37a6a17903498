"""ImageNet-style trees (``root/train/<class>/*``, optional ``root/val/<class>/*``) with the paper's ImageNet recipe.

``root/val`` is the test split (the paper reports ImageNet's validation set as its test set); the
validation split is held out of ``root/train``. Without ``root/val`` there is no test split.
"""

from __future__ import annotations

from pathlib import Path

from torchvision.datasets import ImageFolder

from coded_resnext.datasets.base import Transforms, role_views
from coded_resnext.datasets.spec import DataError, DatasetBundle, DataSpec, one_line
from coded_resnext.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD, imagenet_transforms

DEFAULT_IMAGE_SIZE = 160  # docs/method.md section 5: 160x160 random-resized crops
LAYOUT = "train/<class>/<image> (and optionally val/<class>/<image>)"


def _folder(path: Path) -> ImageFolder:
    try:
        return ImageFolder(str(path))  # images are decoded lazily, as RGB
    except (FileNotFoundError, OSError) as exc:
        raise DataError(f"imagefolder: no usable class folders in {path}: {one_line(exc)}") from exc


def build_imagefolder(spec: DataSpec) -> DatasetBundle:
    """Train and val held out of ``root/train``; test from ``root/val`` when present."""
    if spec.root is None:
        raise DataError(f"imagefolder needs data.root=DIR holding {LAYOUT}")
    root = Path(spec.root)
    train_dir, test_dir = root / "train", root / "val"
    if not train_dir.is_dir():
        problem = "does not exist" if not root.exists() else f"has no train/ folder ({train_dir})"
        raise DataError(f"imagefolder: data.root={spec.root} {problem}; it must hold {LAYOUT}")
    train_base = _folder(train_dir)
    test_base = None
    if test_dir.is_dir():
        test_base = _folder(test_dir)
        if test_base.classes != train_base.classes:
            missing = sorted(set(train_base.classes) ^ set(test_base.classes))
            raise DataError(
                f"imagefolder: {train_dir} and {test_dir} have different class folders (e.g. {missing[:3]})"
            )
    if spec.val_fraction and len(train_base) < 2:
        raise DataError(
            f"imagefolder: {train_dir} has {len(train_base)} image(s); a validation hold-out needs 2 or more"
        )
    size = spec.image_size or DEFAULT_IMAGE_SIZE
    transforms = Transforms(
        *imagenet_transforms(
            size,
            IMAGENET_MEAN,
            IMAGENET_STD,
            augment=spec.augment,
            randaugment=spec.randaugment,
            randaugment_order=spec.randaugment_order,
        )
    )
    return DatasetBundle(
        **role_views(spec, transforms, train_base, test_base)._asdict(),
        num_classes=len(train_base.classes),
        in_chans=3,
        image_size=size,
        class_names=list(train_base.classes),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )
