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


ROLES = ("train", "train_eval", "val", "test")


@dataclass(frozen=True)
class DataSpec:
    """The ``data`` section of a training config, as the dataset builders need it.

    Three roles (docs/architecture.md, Data): ``train``; ``val``, a class-stratified hold-out of the training split
    (``val_fraction`` of it, drawn with ``split_seed``; 0: none, the paper's protocol); ``test``, the
    dataset's own test split, which nothing selects or fits on.
    """

    name: str
    root: str | None = None  # data dir as the user named it (never replaced by another copy); None: defaults
    download: bool = False  # let torchvision download CIFAR / Fashion-MNIST when online
    val_fraction: float = 0.1  # share of the training split held out for validation
    split_seed: int = 0  # the hold-out and every data-level subset; not the training seed, so trials share them
    randaugment: tuple[int, int] | None = None  # (N ops, magnitude M on timm's 0-10 scale); None: off
    randaugment_order: str = "after_crop"  # after_crop (paper text) | before_crop (the authors' CIFAR code)
    augment: bool = True  # crop (+ flip where it makes sense) on the training split
    image_size: int | None = None  # imagefolder / digits / synthetic input size
    limit_train: int | None = None  # stratified seeded subset of the training split (quick runs)
    limit_val: int | None = None  # ... of the validation split
    limit_test: int | None = None  # ... of the test split

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
        if not 0.0 <= self.val_fraction < 1.0:
            raise DataError(f"data.val_fraction: must be in [0, 1), got {self.val_fraction}")
        for key in ("limit_train", "limit_val", "limit_test"):
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
    val: Dataset | None  # eval transform; held out of the training split (None: val_fraction 0)
    test: Dataset | None  # eval transform; the dataset's own test split (None: it has none)
    num_classes: int
    in_chans: int
    image_size: int
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def split(self, which: str) -> Dataset:
        """One role's dataset; a one-line ``DataError`` for an unknown role or one this dataset lacks."""
        if which not in ROLES:
            raise DataError(f"split: must be one of {', '.join(ROLES)}, got {which!r}")
        dataset = getattr(self, which)
        if dataset is None:
            reason = "data.val_fraction is 0" if which == "val" else "the dataset has no test split"
            raise DataError(f"no {which} split: {reason}")
        return dataset

    def sizes(self) -> dict[str, int]:
        """Samples per role (0 for a role this dataset lacks): ``train``, ``val``, ``test``."""
        return {
            role: 0 if getattr(self, role) is None else len(getattr(self, role)) for role in ("train", "val", "test")
        }

    def targets(self, which: str = "train") -> torch.Tensor:
        """Labels of one role as a long tensor, without loading any image."""
        dataset = self.split(which)
        labels = getattr(dataset, "targets", None)
        if labels is None:  # a dataset swapped in by the caller: fall back to reading it
            return torch.tensor([int(dataset[i][1]) for i in range(len(dataset))], dtype=torch.long)
        return torch.as_tensor(labels, dtype=torch.long)
