"""ImageNet-style trees (``root/train/<class>/*``, optional ``root/val/<class>/*``) with the paper's ImageNet recipe."""

from __future__ import annotations

from pathlib import Path

from torchvision.datasets import ImageFolder

from coded_resnext.datasets.base import seeded_split, split_views
from coded_resnext.datasets.spec import DataError, DatasetBundle, DataSpec, one_line
from coded_resnext.datasets.transforms import IMAGENET_MEAN, IMAGENET_STD, imagenet_transforms

DEFAULT_IMAGE_SIZE = 160  # PAPER.md section 5: 160x160 random-resized crops
LAYOUT = "train/<class>/<image> (and optionally val/<class>/<image>)"


def _folder(path: Path) -> ImageFolder:
    try:
        return ImageFolder(str(path))  # images are decoded lazily, as RGB
    except (FileNotFoundError, OSError) as exc:
        raise DataError(f"imagefolder: no usable class folders in {path}: {one_line(exc)}") from exc


def build_imagefolder(spec: DataSpec) -> DatasetBundle:
    """``root/val`` is the validation set when present, else a seeded ``val_fraction`` split of ``root/train``."""
    if spec.root is None:
        raise DataError(f"imagefolder needs data.root=DIR holding {LAYOUT}")
    root = Path(spec.root)
    train_dir, val_dir = root / "train", root / "val"
    if not train_dir.is_dir():
        raise DataError(f"imagefolder: {train_dir} not found; data.root must hold {LAYOUT}")
    train_base = _folder(train_dir)
    if val_dir.is_dir():
        val_base = _folder(val_dir)
        if val_base.classes != train_base.classes:
            missing = sorted(set(train_base.classes) ^ set(val_base.classes))
            raise DataError(f"imagefolder: {train_dir} and {val_dir} have different class folders (e.g. {missing[:3]})")
        train_idx = val_idx = None
    else:
        val_base = train_base
        try:
            train_idx, val_idx = seeded_split(len(train_base), spec.val_fraction, spec.split_seed)
        except ValueError as exc:
            raise DataError(f"imagefolder: {train_dir}: {exc}") from exc
    size = spec.image_size or DEFAULT_IMAGE_SIZE
    train_tf, eval_tf = imagenet_transforms(
        size,
        IMAGENET_MEAN,
        IMAGENET_STD,
        augment=spec.augment,
        randaugment=spec.randaugment,
        randaugment_order=spec.randaugment_order,
    )
    train, train_eval, val = split_views(
        train_base, val_base, train_idx, val_idx, train_tf, eval_tf, spec.limit_train, spec.limit_val, spec.split_seed
    )
    return DatasetBundle(
        train=train,
        train_eval=train_eval,
        val=val,
        num_classes=len(train_base.classes),
        in_chans=3,
        image_size=size,
        class_names=list(train_base.classes),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )
