"""What the evaluation suite measures and how much data it uses."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EvalSettings:
    every: int = 0  # (training) also run the suite every E epochs; 0: only at the end
    binary_classes: int = 10  # binary classifiers evaluated: all classes, or a seeded sample of this many
    binary_fit_samples: int = 5000  # training samples (stratified sample) fitting each threshold (max F1) and refit row
    binary_refit: bool = True  # also score each classifier with its output row refit to its features (refit.py)
    negatives_per_positive: int = 9  # validation negatives subsampled to this many per positive (paper: 9)
    early_exit_thresholds: int = 41  # confidence thresholds swept for the early-exit curve
    removal_block: int | None = None  # coded block (network order, -1 the last) of the removal diagnostic; None: all
    removal_samples: int = 2000  # images (stratified sample) of each evaluated split for the removal curves
    invariance_samples: int = 512  # images (stratified sample) of each evaluated split for the invariance checks
    limit_val: int | None = None  # evaluate on a stratified sample of this many validation images (per epoch too)

    def __post_init__(self) -> None:
        checks = {
            "every": self.every >= 0,
            "binary_classes": self.binary_classes >= 0,
            "binary_fit_samples": self.binary_fit_samples >= 10,
            "negatives_per_positive": self.negatives_per_positive >= 1,
            "early_exit_thresholds": self.early_exit_thresholds >= 2,
            "removal_samples": self.removal_samples >= 1,
            "invariance_samples": self.invariance_samples >= 0,
            "limit_val": self.limit_val is None or self.limit_val >= 1,
        }
        minimum = {"binary_fit_samples": 10, "early_exit_thresholds": 2, "removal_samples": 1, "limit_val": 1}
        for key, ok in checks.items():
            if not ok:
                raise ValueError(f"{key}: must be >= {minimum.get(key, 0)}, got {getattr(self, key)}")
