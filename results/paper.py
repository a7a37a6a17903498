"""The paper's reported numbers (Avranas & Kountouris, arXiv 2202.05343, Table 2 and Section 4.3;
``docs/method.md``, section 6) and its Table 2 beside the runs of an experiment.

Table 2 is top-1 accuracy on the test split (ImageNet's validation set) of the paper's recipes: 300 epochs
on CIFAR, 150 on ImageNet. Beside it go the runs' own test accuracy, ``test/accuracy``: the paper recipes
train with ``data.val_fraction: 0`` and measure the test split once at the end of the run; other runs get it
from ``coded-resnext evaluate``. Per configuration (the recipe's keys below, the seed aside) the figure is
the mean over its seeds with a 95% t-interval, never a maximum over runs: the best of several noisy test
figures is biased upward, more so the more runs there are, and it would be chosen on the test split. The
coded net's gain over its plain control is paired by seed, as the ablations pair (``ablation.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from coded_resnext.results.ablation import paired_difference, t_interval
from coded_resnext.results.runs import metric_values, numeric_param
from coded_resnext.results.schema import TEST_PREFIX, Metric


@dataclass(frozen=True)
class PaperRow:
    dataset: str  # how the paper names it
    coded_accuracy: float  # Table 2, top-1 %
    control_accuracy: float  # Table 2, the same net with every block N/N
    binary_param_fraction: float  # Sec. 4.3, %, projection shortcuts left out of the count
    preset: str
    epochs: int  # of the recipe behind the row (CIFAR: 300; ImageNet: 150, the paper and the authors' command)


TABLE2 = {
    "cifar10": PaperRow("CIFAR-10", 94.41, 93.66, 38.0, "coded_resnext29_10x11d", 300),
    "cifar100": PaperRow("CIFAR-100", 78.28, 76.86, 27.0, "coded_resnext29_20x6d", 300),
    "imagenet": PaperRow("ImageNet", 78.12, 78.05, 35.0, "coded_resnext50_32x4d", 150),
}

# What makes runs one configuration here, the seed aside: the keys that change what is trained. A control
# differs from its coded runs in model.control only (its coding keys are moot), so it pairs with every coded
# configuration of the same RECIPE_KEYS.
RECIPE_KEYS = (
    "model.name",
    "model.width_multiplier",
    "model.branch_merge",
    "model.mask_grads",
    "data.randaugment",
    "data.limit_train",
    "train.epochs",
    "optim.lr",
    "optim.batch_size",
)
CODING_KEYS = ("coding.c2", "coding.c3", "coding.c4", "coding.c5", "loss.mu", "loss.p_drop", "loss.power")
BINARY_PARAMS_PAPER = "binary/param_fraction_paper"

COLUMNS = [
    "dataset",
    "configuration",
    "paper_coded",
    "coded_mean",
    "coded_low",
    "coded_high",
    "coded_seeds",
    "paper_control",
    "control_mean",
    "control_low",
    "control_high",
    "control_seeds",
    "paper_gain",
    "gain_mean",
    "gain_low",
    "gain_high",
    "gain_pairs",
    "paper_binary_params",
    "binary_params",
]


def paper_dataset(runs: pd.DataFrame) -> pd.Series:
    """Each run's key into ``TABLE2`` (``imagefolder`` with 1000 classes counts as ImageNet), or NA."""
    names = runs.get("params.data.name", pd.Series(pd.NA, index=runs.index, dtype="string")).astype("string")
    names = names.str.lower().str.replace("-", "", regex=False)
    imagenet = names.isin(["imagenet", "imagefolder"]) & (numeric_param(runs, "data.num_classes") == 1000)
    names = names.where(~imagenet, "imagenet")
    return names.where(names.isin(list(TABLE2)))


def _key(runs: pd.DataFrame, keys: tuple[str, ...]) -> pd.Series:
    """Per run, its values of ``keys`` (those the frame has) as one string: runs with equal strings agree."""
    present = [k for k in keys if f"params.{k}" in runs.columns]
    if not present:
        return pd.Series("", index=runs.index, dtype="string")
    values = runs[[f"params.{k}" for k in present]].astype("string").fillna("")
    return values.apply(lambda row: "\x1f".join(row), axis=1).astype("string")


def _per_seed(values: pd.Series, runs: pd.DataFrame) -> pd.Series:
    """Values indexed by seed (runs repeating a seed averaged), for pairing."""
    seeds = runs.get("params.seed", pd.Series(runs.index.astype(str), index=runs.index)).astype(str)
    return values.groupby(seeds.loc[values.index]).mean()


def _configuration(runs: pd.DataFrame, group: pd.Index, everyone: pd.Index) -> str:
    """The keys whose values set the runs of ``group`` apart from the dataset's other coded runs, ``key=value``."""
    parts = []
    for key in RECIPE_KEYS + CODING_KEYS:
        column = f"params.{key}"
        if column in runs.columns and runs.loc[everyone, column].astype("string").nunique(dropna=False) > 1:
            parts.append(f"{key}={runs.loc[group[0], column]}")
    return ", ".join(parts)


def compare_table2(runs: pd.DataFrame) -> pd.DataFrame:
    """Per dataset of the paper's Table 2 that the runs used, and per coded configuration of it, the paper's
    coded and control accuracy, gain and binary-classifier size beside the runs' own (``COLUMNS``; accuracies
    and fractions in %): test accuracy as the mean and 95% t-interval over seeds, the gain paired by seed.
    A dataset whose runs have no test figure keeps one row, its figures NaN with 0 seeds."""
    datasets = paper_dataset(runs)
    control = numeric_param(runs, "model.control") == 1
    accuracy = metric_values(runs, Metric.TEST_ACCURACY) * 100
    fraction = metric_values(runs, BINARY_PARAMS_PAPER).combine_first(
        metric_values(runs, TEST_PREFIX + BINARY_PARAMS_PAPER)  # a run without a val split logs test/binary/...
    )
    tested = accuracy.notna()
    recipe = _key(runs, RECIPE_KEYS)
    coding = recipe + "\x1e" + _key(runs, CODING_KEYS)
    rows = []
    for name in [k for k in TABLE2 if (datasets == k).any()]:
        paper = TABLE2[name]
        mine = (datasets == name) & tested
        coded_runs, control_runs = runs.index[mine & ~control], runs.index[mine & control]
        groups = [coded_runs[coding[coded_runs] == g] for g in pd.unique(coding[coded_runs])] or [coded_runs]
        for group in groups:
            same_recipe = control_runs[recipe[control_runs] == recipe[group[0]]] if len(group) else control_runs
            coded = t_interval(accuracy[group].to_numpy())
            plain = t_interval(accuracy[same_recipe].to_numpy())
            gain = (math.nan, math.nan, math.nan, 0)
            if len(group) and len(same_recipe):
                gain = paired_difference(_per_seed(accuracy[group], runs), _per_seed(accuracy[same_recipe], runs))
            rows.append(
                {
                    "dataset": paper.dataset,
                    "configuration": _configuration(runs, group, coded_runs) if len(group) else "",
                    "paper_coded": paper.coded_accuracy,
                    "coded_mean": coded[0],
                    "coded_low": coded[2],
                    "coded_high": coded[3],
                    "coded_seeds": len(group),
                    "paper_control": paper.control_accuracy,
                    "control_mean": plain[0],
                    "control_low": plain[2],
                    "control_high": plain[3],
                    "control_seeds": len(same_recipe),
                    "paper_gain": round(paper.coded_accuracy - paper.control_accuracy, 2),
                    "gain_mean": gain[0],
                    "gain_low": gain[1],
                    "gain_high": gain[2],
                    "gain_pairs": gain[3],
                    "paper_binary_params": paper.binary_param_fraction,
                    "binary_params": float(fraction[group].mean() * 100) if len(group) else math.nan,
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def _interval(mean: float, low: float, high: float, signed: bool = False) -> str:
    """``94.10 [93.52, 94.68]`` (``+0.45 [+0.28, +0.62]`` when ``signed``); the mean alone without an interval."""
    if pd.isna(mean):
        return "–"
    fmt = "{:+.2f}" if signed else "{:.2f}"
    return f"{fmt.format(mean)} [{fmt.format(low)}, {fmt.format(high)}]" if pd.notna(low) else fmt.format(mean)


def table2_display(table: pd.DataFrame) -> pd.DataFrame:
    """``compare_table2``'s frame as the report shows it: one column per figure, intervals in brackets."""
    out = pd.DataFrame(
        {
            "dataset": table["dataset"],
            "paper: Coded ResNeXt (%)": table["paper_coded"],
            "ours: coded, test (%) [95% CI]": [
                _interval(r.coded_mean, r.coded_low, r.coded_high) for r in table.itertuples()
            ],
            "coded seeds": table["coded_seeds"],
            "paper: ResNeXt control (%)": table["paper_control"],
            "ours: control, test (%) [95% CI]": [
                _interval(r.control_mean, r.control_low, r.control_high) for r in table.itertuples()
            ],
            "control seeds": table["control_seeds"],
            "paper: gain (points)": table["paper_gain"],
            "ours: gain paired by seed [95% CI]": [
                _interval(r.gain_mean, r.gain_low, r.gain_high, signed=True) for r in table.itertuples()
            ],
            "pairs": table["gain_pairs"],
            "paper: binary params (%)": table["paper_binary_params"],
            "ours: binary params (%)": table["binary_params"].round(1),
        }
    )
    if table["configuration"].astype(bool).any():
        out.insert(1, "configuration", table["configuration"])
    return out
