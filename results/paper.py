"""The paper's reported numbers (Avranas & Kountouris, arXiv 2202.05343; ``docs/method.md``, section 6), and a
side-by-side of the best tracked runs with its Table 2 for the datasets it reports on."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from coded_resnext.results.runs import metric_values, numeric_param


@dataclass(frozen=True)
class PaperRow:
    dataset: str  # how the paper names it
    coded_accuracy: float  # Table 2, top-1 %
    control_accuracy: float  # Table 2, the same net with every block N/N
    binary_param_fraction: float  # Sec. 4.3, %, projection shortcuts left out of the count
    preset: str


TABLE2 = {
    "cifar10": PaperRow("CIFAR-10", 94.41, 93.66, 38.0, "coded_resnext29_10x11d"),
    "cifar100": PaperRow("CIFAR-100", 78.28, 76.86, 27.0, "coded_resnext29_20x6d"),
    "imagenet": PaperRow("ImageNet", 78.12, 78.05, 35.0, "coded_resnext50_32x4d"),
}


def paper_dataset(runs: pd.DataFrame) -> pd.Series:
    """Each run's key into ``TABLE2`` (``imagefolder`` with 1000 classes counts as ImageNet), or NA."""
    names = runs.get("params.data.name", pd.Series(pd.NA, index=runs.index, dtype="string")).astype("string")
    names = names.str.lower().str.replace("-", "", regex=False)
    imagenet = names.isin(["imagenet", "imagefolder"]) & (numeric_param(runs, "data.num_classes") == 1000)
    names = names.where(~imagenet, "imagenet")
    return names.where(names.isin(list(TABLE2)))


def compare_table2(runs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset of the paper's Table 2 that the runs used: the paper's coded and control accuracy and
    binary-classifier size beside the best of ours (and how many runs that best is over)."""
    datasets = paper_dataset(runs)
    control = numeric_param(runs, "model.control") == 1
    accuracy = metric_values(runs, "val/accuracy") * 100
    fraction = metric_values(runs, "binary/param_fraction_paper") * 100
    rows = []
    for key in [k for k in TABLE2 if (datasets == k).any()]:
        paper = TABLE2[key]
        mine = datasets == key
        coded_acc = accuracy[mine & ~control]
        best = coded_acc.idxmax() if coded_acc.notna().any() else None
        control_acc = accuracy[mine & control]
        rows.append(
            {
                "dataset": paper.dataset,
                "paper: Coded ResNeXt (%)": paper.coded_accuracy,
                "ours: best coded (%)": coded_acc.max() if best is not None else math.nan,
                "coded runs": int(coded_acc.notna().sum()),
                "paper: ResNeXt control (%)": paper.control_accuracy,
                "ours: best control (%)": control_acc.max() if control_acc.notna().any() else math.nan,
                "control runs": int(control_acc.notna().sum()),
                "paper: binary params (%)": paper.binary_param_fraction,
                "ours: binary params, best coded run (%)": fraction[best] if best is not None else math.nan,
            }
        )
    return pd.DataFrame(rows)
