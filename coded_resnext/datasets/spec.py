"""What a run asks for (``DataSpec``), what it gets back (``DatasetBundle``), and the one error type."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset


class DataError(ValueError):
    """Missing, corrupt or misconfigured data; the message is one line saying where we looked and what to do."""


def one_line(text: object) -> str:
    """Collapse an exception's text to one line so it can be embedded in a DataError."""
    return " ".join(str(text).split())


@dataclass(frozen=True)
class DataSpec:
    """The ``data`` section of a training config, as the dataset builders need it."""

    name: str
    root: str | None = None  # data dir; None -> ./data (and the system dirs for fashion-mnist)
    download: bool = False  # let torchvision download CIFAR / Fashion-MNIST when online
    val_fraction: float = 0.1  # only when the dataset has no validation / test split
    split_seed: int = 0
    randaugment: tuple[int, int] | None = None  # (N ops, magnitude M on timm's 0-10 scale); None: off
    randaugment_order: str = "after_crop"  # after_crop (paper text) | before_crop (the authors' CIFAR code)
    augment: bool = True  # crop (+ flip where it makes sense) on the training split
    image_size: int | None = None  # imagefolder / digits / synthetic input size
    limit_train: int | None = None  # seeded subset of the training split (quick runs)
    limit_val: int | None = None

    def __post_init__(self) -> None:
        if self.randaugment is not None:
            ra = tuple(self.randaugment)  # YAML gives a list; keep the spec hashable
            if len(ra) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ra):
                raise DataError(f"data.randaugment: expected [N, M] with integers >= 0, got {self.randaugment!r}")
            if ra[1] > 10:
                raise DataError(f"data.randaugment: magnitude M must be in 0..10 (timm's scale), got {ra[1]}")
            object.__setattr__(self, "randaugment", ra)
        if self.randaugment_order not in ("after_crop", "before_crop"):
            raise DataError(
                f"data.randaugment_order: must be 'after_crop' or 'before_crop', got {self.randaugment_order!r}"
            )
        if not 0.0 < self.val_fraction < 1.0:
            raise DataError(f"data.val_fraction: must be in (0, 1), got {self.val_fraction}")
        for key in ("limit_train", "limit_val"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise DataError(f"data.{key}: must be >= 1, got {value}")
        if self.image_size is not None and self.image_size < 8:
            raise DataError(f"data.image_size: must be >= 8, got {self.image_size}")


@dataclass
class DatasetBundle:
    """The splits of one dataset plus what a model and the evaluation suite need to know about it."""

    train: Dataset  # augmented
    train_eval: Dataset  # the same training samples with the eval transform (threshold fitting)
    val: Dataset  # eval transform; the official test split where there is one
    num_classes: int
    in_chans: int
    image_size: int
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def targets(self, which: str = "train") -> torch.Tensor:
        """Labels of ``"train"``, ``"train_eval"`` or ``"val"`` as a long tensor, without loading any image."""
        if which not in ("train", "train_eval", "val"):
            raise DataError(f"targets: which must be 'train', 'train_eval' or 'val', got {which!r}")
        dataset = getattr(self, which)
        labels = getattr(dataset, "targets", None)
        if labels is None:  # a dataset swapped in by the caller: fall back to reading it
            return torch.tensor([int(dataset[i][1]) for i in range(len(dataset))], dtype=torch.long)
        return torch.as_tensor(labels, dtype=torch.long)
