"""PNG plots of one run's evaluation suite: information paths, early exit, binary classifiers, removal.

They show the suite's primary split (validation, or the test split for a run without one: the paper's
protocol) and say which. A class without figures (no sample of it where one was needed) is left out of
the binary plots with a note in the figure, never a crash.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from coded_resnext.evaluation.suite import SuiteResult

MAX_HEATMAP_CLASSES = 100  # more rows than this are unreadable; show the first ones


def energy_heatmaps(suite: SuiteResult, out_dir: Path, class_names: list[str] | None = None) -> list[Path]:
    """Per coded block: class x branch mean normalized energy beside the class codewords."""
    rows = suite.table("energy_by_class")
    return energy_heatmaps_from_table(pd.DataFrame(rows), out_dir, class_names) if rows else []


def _min_distance(bits: np.ndarray) -> int:
    """The smallest Hamming distance between two classes' codewords."""
    if len(bits) < 2:
        return 0
    distances = (bits[:, None, :] != bits[None, :, :]).sum(-1)
    return int(distances[~np.eye(len(bits), dtype=bool)].min())


def energy_heatmaps_from_table(
    table: pd.DataFrame, out_dir: Path, class_names: list[str] | None = None, prefix: str = ""
) -> list[Path]:
    """The heatmaps of ``energy_by_class`` rows (block, class, branch, energy, bit; ``class_name`` when the
    run logged it): a run's own at its end, or the report's of a search's best run, which logs only the
    table (a trial draws no plots)."""
    if class_names is None and "class_name" in table.columns:
        class_names = list(table.sort_values("class").drop_duplicates("class")["class_name"].astype(str))
    paths = []
    for i, block in table.groupby("block", sort=True):
        energy = block.pivot(index="class", columns="branch", values="energy").sort_index().to_numpy()
        bits = block.pivot(index="class", columns="branch", values="bit").sort_index().to_numpy()
        k = min(energy.shape[0], MAX_HEATMAP_CLASSES)
        fig, axes = plt.subplots(1, 2, figsize=(10, 2.5 + 0.22 * k), sharey=True)
        im = axes[0].imshow(energy[:k], aspect="auto", cmap="viridis")
        axes[0].set_title(f"coded block {i}: mean normalized energy")
        axes[1].imshow(bits[:k], aspect="auto", cmap="Greys", vmin=0, vmax=1)
        active, branches = int(bits.sum(1).max()), bits.shape[1]
        axes[1].set_title(f"codewords ({active}/{branches}, d_min={_min_distance(bits)})")
        axes[1].legend(
            handles=[
                Patch(facecolor="black", edgecolor="grey", label="active branch (bit 1)"),
                Patch(facecolor="white", edgecolor="grey", label="inactive branch (bit 0)"),
            ],
            loc="upper center",
            bbox_to_anchor=(0.5, -0.1 - 0.35 / (2.5 + 0.22 * k)),
            ncols=2,
            fontsize=8,
            frameon=False,
        )
        for ax in axes:
            ax.set_xlabel("branch")
        axes[0].set_ylabel("class")
        if class_names and k <= 20:
            axes[0].set_yticks(range(k), class_names[:k], fontsize=8)
        fig.colorbar(im, ax=axes[0], fraction=0.046, label="energy (row sums to N)")
        fig.tight_layout()
        path = out_dir / f"{prefix}energy_heatmap_block_{i}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def _split_label(suite: SuiteResult) -> str:
    return "validation" if suite.primary == "val" else "test"


def _scored(rows: list[dict]) -> tuple[list[dict], str]:
    """The binary rows with figures, and a note naming the classes without (empty when none)."""
    scored = [r for r in rows if not r.get("note")]
    skipped = [str(r["class"]) for r in rows if r.get("note")]
    note = f"no figures for class(es) {', '.join(skipped)}: no sample where one was needed" if skipped else ""
    return scored, note


def early_exit_plot(suite: SuiteResult, out_dir: Path) -> list[Path]:
    rows = suite.table("early_exit_curve")
    if not rows:
        return []
    rows = sorted(rows, key=lambda r: r["compute_fraction"])
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["compute_fraction"] * 100 for r in rows], [r["accuracy"] * 100 for r in rows], marker=".")
    full = suite.metric("val/accuracy") * 100
    ax.axhline(full, color="grey", ls="--", lw=1, label=f"full network {full:.2f}%")
    ax.axhline(0.99 * full, color="grey", ls=":", lw=1, label="99% of full accuracy")
    for p in suite.table("exit_points"):
        ax.axvline(p["compute_fraction"] * 100, color="tab:orange", lw=0.8, alpha=0.6)
    ax.set_xlabel("mean compute (% of the full network's FLOPs)")
    ax.set_ylabel(f"{_split_label(suite)} accuracy (%)")
    ax.set_title("early exit at the first confident coded block (exit points in orange)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out_dir / "early_exit_curve.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def binary_scatter(suite: SuiteResult, out_dir: Path) -> list[Path]:
    rows, note = _scored(suite.table("binary_classifiers"))
    if not rows:
        return []
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter([r["recall"] for r in rows], [r["precision"] for r in rows], label="in-distribution negatives")
    if "ood_precision" in rows[0]:
        ax.scatter([r["recall"] for r in rows], [r["ood_precision"] for r in rows], marker="x", label="OOD negatives")
    if any(r.get("refit_f1") == r.get("refit_f1") for r in rows):  # a refit row with figures (NaN != NaN)
        ax.scatter(
            [r["refit_recall"] for r in rows],
            [r["refit_precision"] for r in rows],
            marker="^",
            facecolors="none",
            edgecolors="tab:green",
            label="output row refit (in-distribution)",
        )
    ax.scatter(
        [r["full_recall"] for r in rows],
        [r["full_precision"] for r in rows],
        marker="+",
        c="grey",
        label="full network, one-vs-rest",
    )
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    frac = rows[0]["param_fraction"] * 100
    ax.set_title(f"binary classifiers ({frac:.0f}% of the parameters each), {_split_label(suite)}")
    if note:
        fig.text(0.01, 0.01, note, fontsize=7, color="dimgray")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out_dir / "binary_precision_recall.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def removal_plot(suite: SuiteResult, out_dir: Path) -> list[Path]:
    rows = suite.table("removal_curve")
    if not rows:
        return []
    blocks = sorted({int(r["block"]) for r in rows})
    cols = min(4, len(blocks))
    rows_of_panels = -(-len(blocks) // cols)
    fig, axes = plt.subplots(
        rows_of_panels, cols, figsize=(4.2 * cols, 3.8 * rows_of_panels), sharey=True, squeeze=False
    )
    for ax in axes.flat[len(blocks) :]:
        ax.set_visible(False)
    for ax, block in zip(axes.flat, blocks, strict=False):
        for which, style in (("active", "o-"), ("inactive", "s--")):
            mine = sorted((r for r in rows if r["block"] == block and r["which"] == which), key=lambda r: r["k"])
            ax.plot([r["k"] for r in mine], [r["accuracy"] * 100 for r in mine], style, label=f"remove k {which}")
        ax.set_title(f"coded block {block}")
        ax.set_xlabel("branches removed for the true class, k")
        ax.grid(alpha=0.3)
    for row in axes:
        row[0].set_ylabel(f"{_split_label(suite)} accuracy (%)")
    axes[0][0].legend()
    fig.suptitle("specialization: branch removal")
    fig.tight_layout()
    path = out_dir / "removal_curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


MAX_HISTOGRAM_PANELS = 20  # Fig. 3 shows a few classes; a 100-class grid is unreadable: the first 20 scored


def binary_histograms(suite: SuiteResult, out_dir: Path, class_names: list[str] | None = None) -> list[Path]:
    """Fig. 3 / Fig. 7: per class, the binary classifier's score on positives, negatives and OOD negatives,
    with its threshold (fitted on training samples)."""
    rows = suite.table("binary_score_histograms")
    if not rows:
        return []
    scored, note = _scored(suite.table("binary_classifiers"))
    classes = [int(r["class"]) for r in scored][:MAX_HISTOGRAM_PANELS]
    if not classes:
        return []
    cols = min(5, len(classes))
    nrows = -(-len(classes) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.6 * nrows + 0.6), squeeze=False)
    for ax in axes.flat[len(classes) :]:
        ax.set_visible(False)
    colors = {"positive": "tab:green", "negative": "tab:red", "ood": "tab:purple"}
    for ax, k in zip(axes.flat, classes, strict=False):
        mine = [r for r in rows if r["class"] == k]
        for kind, color in colors.items():
            bins = [r for r in mine if r["kind"] == kind]
            total = sum(r["count"] for r in bins)
            if not total:
                continue
            ax.stairs(
                [r["count"] / total for r in bins],
                [bins[0]["bin_left"]] + [r["bin_right"] for r in bins],
                color=color,
                fill=True,
                alpha=0.35,
                label=kind,
            )
        ax.axvline(mine[0]["threshold"], color="black", lw=1, ls="--")
        ax.set_title(class_names[k] if class_names and k < len(class_names) else f"class {k}", fontsize=9)
        ax.tick_params(labelsize=7)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, [f"{label} samples" for label in labels], loc="lower center", ncol=4, fontsize=8)
    fig.suptitle(f"binary classifier scores ({_split_label(suite)}; dashed: threshold fitted on training samples)")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    if note:
        fig.text(0.01, 0.005, note, fontsize=7, color="dimgray")
    path = out_dir / "binary_score_histograms.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def write_run_plots(suite: SuiteResult, out_dir: Path, class_names: list[str] | None = None) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        *energy_heatmaps(suite, out_dir, class_names),
        *early_exit_plot(suite, out_dir),
        *binary_scatter(suite, out_dir),
        *binary_histograms(suite, out_dir, class_names),
        *removal_plot(suite, out_dir),
    ]
