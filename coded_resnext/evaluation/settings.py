"""What the evaluation suite measures and how much data it uses."""

from __future__ import annotations

from dataclasses import dataclass

from coded_resnext.validation import bounded, check_bounds


@dataclass
class EvalSettings:
    every: int = bounded(0, ge=0)  # (training) also run the suite every E epochs; 0: only at the end
    binary_classes: int = bounded(
        10, ge=0
    )  # binary classifiers evaluated: all classes, or a seeded sample of this many
    # training samples (stratified sample) fitting each threshold (max F1) and refit row
    binary_fit_samples: int = bounded(5000, ge=10)
    binary_refit: bool = True  # also score each classifier with its output row refit to its features (refit.py)
    negatives_per_positive: int = bounded(
        9, ge=1
    )  # validation negatives subsampled to this many per positive (paper: 9)
    early_exit_thresholds: int = bounded(41, ge=2)  # confidence thresholds swept for the early-exit curve
    removal_block: int | None = None  # coded block (network order, -1 the last) of the removal diagnostic; None: all
    removal_samples: int = bounded(
        2000, ge=1
    )  # images (stratified sample) of each evaluated split for the removal curves
    # images (stratified sample) of each evaluated split for the invariance checks
    invariance_samples: int = bounded(512, ge=0)
    # evaluate on a stratified sample of this many validation images (per epoch too)
    limit_val: int | None = bounded(None, ge=1, nullable=True)

    def __post_init__(self) -> None:
        check_bounds(self)
