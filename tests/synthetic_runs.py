"""A synthetic MLflow experiment shaped like the real ones, for tests and for timing the report (it
writes a fake store directly with MlflowClient: test data, not a tracked run).

Runs carry what ``orchestration.training`` logs (the flattened config as params, per-epoch metrics, the
suite's final metrics, ``tables/*.csv``, ``plots/energy_heatmap_block_*.png``) and the tags of the sweep
and ablation contracts (``role``, ``mlflow.parentRunId``, ``ablation_cell``). The numbers are made up
but move with mu, p_drop and width the way the paper's do, so fronts and ablations are not degenerate.

    python tests/synthetic_runs.py --tracking-uri sqlite:////tmp/s/mlflow.db --runs 200 --experiment synth
"""

from __future__ import annotations

import argparse
import io
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

Kind = Literal["sweep", "ablation", "single"]


@dataclass(frozen=True)
class SyntheticSpec:
    experiment: str = "synthetic"
    runs: int = 20  # trial runs (the parent comes on top)
    kind: Kind = "sweep"
    epochs: int = 5
    num_classes: int = 10
    dataset: str = "cifar10"
    seeds: int = 3  # ablation: seeds per cell
    tables: bool = True  # log tables/*.csv and a heatmap PNG
    missing_every: int = 0  # every n-th trial lacks the binary and early-exit metrics (0: none)
    unfinished: int = 0  # this many extra trials left RUNNING
    seed: int = 0
    quickstart: bool = False  # params as a quickstart search logs them: mu to 16 digits, generator specs
    energy_table: bool = False  # the information paths as a search's trials log them: a table, no heatmap PNG


def _png(rng: np.random.Generator) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.imshow(rng.random((10, 10)), cmap="viridis")
    ax.set_title("coded block 0: mean normalized energy", fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=60)
    plt.close(fig)
    return buf.getvalue()


def _config(i: int, spec: SyntheticSpec, rng: np.random.Generator) -> tuple[dict[str, str], dict[str, str]]:
    """(params, extra tags) of trial ``i``."""
    tags: dict[str, str] = {}
    mu = float(rng.choice([0.0, 1.0, 3.0, 6.0]))
    p_drop = float(rng.choice([0.0, 0.1, 0.2]))
    width = float(rng.choice([0.5, 1.0]))
    c3 = str(rng.choice(["paper:cifar10/5/10", "paper:cifar10/3/10"]))
    control = False
    seed = int(rng.integers(0, 1000))
    if spec.kind == "ablation":
        cells = ["control", "loss.mu=3,loss.p_drop=0.1", "loss.mu=6,loss.p_drop=0.1", "loss.mu=6,loss.p_drop=0.0"]
        cell = cells[(i // spec.seeds) % len(cells)]
        seed = i % spec.seeds
        tags["ablation_cell"] = cell
        control = cell == "control"
        mu, p_drop, width, c3 = (0.0, 0.0, 1.0, "paper:cifar10/5/10") if control else (mu, p_drop, 1.0, c3)
        for item in cell.split(","):
            if item.startswith("loss.mu="):
                mu = float(item.split("=")[1])
            if item.startswith("loss.p_drop="):
                p_drop = float(item.split("=")[1])
    c4 = None
    if spec.quickstart and spec.kind == "sweep":  # what the quickstart's searcher samples
        mu = float(np.exp(rng.uniform(np.log(1.0), np.log(12.0))))
        c3 = str(rng.choice(["paper:cifar10/5/10", "generate:active=4,min_distance=4,seed=0",
                             "generate:active=6,branches=12,min_distance=None,seed=0"]))  # fmt: skip
        c4 = str(rng.choice(["paper:cifar10/3/10", "generate:active=3,min_distance=2,seed=0"]))
        width = float(rng.choice([0.75, 1.0, 1.25]))
    params = {
        "model.name": "coded_resnext29_10x11d",
        "model.width_multiplier": str(width),
        "model.control": str(control).lower(),
        "coding.c3": c3,
        "loss.mu": str(mu),
        "loss.p_drop": str(p_drop),
        "data.name": spec.dataset,
        "train.epochs": str(spec.epochs),
        "train.num_workers": "1",
        "seed": str(seed),
    }
    if c4 is not None:
        params["coding.c4"] = c4
    return params, tags


def _metrics(params: dict[str, str], spec: SyntheticSpec, rng: np.random.Generator, missing: bool):
    """(per-epoch history, final suite metrics, binary table, early-exit table)."""
    mu, p_drop, width = float(params["loss.mu"]), float(params["loss.p_drop"]), float(params["model.width_multiplier"])
    control = params["model.control"] == "true"
    active = 3 if params["coding.c3"].endswith("3/10") else 4 if "active=4" in params["coding.c3"] else 5
    final_acc = 0.90 + 0.02 * width + 0.004 * mu - 0.0006 * mu**2 - 0.01 * p_drop + rng.normal(0, 0.004)
    history = []
    for epoch in range(spec.epochs):
        frac = (epoch + 1) / spec.epochs
        history.append(
            {
                "train/loss": 2.3 * math.exp(-3 * frac) + 0.1 + rng.normal(0, 0.01),
                "train/coding_loss": 0.0 if control else 0.5 * math.exp(-2 * frac),
                "val/loss": 2.0 * math.exp(-2.5 * frac) + 0.25,
                "val/accuracy": final_acc * (1 - 0.5 * math.exp(-4 * frac)),
            }
        )
    suite: dict[str, float] = {"val/accuracy": history[-1]["val/accuracy"]}
    binary = curve = None
    if not control and not missing:
        fraction = 0.25 + 0.04 * active * width + rng.normal(0, 0.01)
        per_class = np.clip(0.75 + 0.15 * p_drop / 0.2 + 0.01 * mu + rng.normal(0, 0.04, spec.num_classes), 0, 1)
        recall = np.clip(per_class + rng.normal(0, 0.03, spec.num_classes), 0, 1)
        binary = pd.DataFrame(
            {
                "class": range(spec.num_classes),
                "param_fraction": fraction,
                "param_fraction_paper": fraction - 0.08,
                "threshold": rng.normal(0, 1, spec.num_classes),
                "precision": per_class,
                "recall": recall,
                "f1": 2 * per_class * recall / np.maximum(per_class + recall, 1e-9),
                "full_precision": np.clip(per_class + 0.05, 0, 1),
                "full_recall": np.clip(recall + 0.05, 0, 1),
                "ood_precision": np.clip(per_class - 0.1, 0, 1),
            }
        )
        compute = np.linspace(0.35, 1.0, 12)
        accuracy = suite["val/accuracy"] * (1 - (0.25 - 0.01 * mu) * (1 - compute) ** 1.5)
        curve = pd.DataFrame(
            {
                "threshold": np.linspace(0, 1, 12),
                "accuracy": accuracy,
                "compute_fraction": compute,
                "exit_rate": 1 - compute,
            }
        )
        keep = curve.loc[curve["accuracy"] >= 0.99 * suite["val/accuracy"], "compute_fraction"]
        suite.update(
            {
                "binary/param_fraction": fraction,
                "binary/param_fraction_paper": fraction - 0.08,
                "binary/f1_mean": float(binary["f1"].mean()),
                "binary/precision_mean": float(binary["precision"].mean()),
                "binary/recall_mean": float(binary["recall"].mean()),
                "binary/ood_precision_mean": float(binary["ood_precision"].mean()),
                "early_exit/compute_at_99pct_accuracy": float(keep.min()),
                "early_exit/accuracy_at_half_compute": float(
                    curve.loc[curve["compute_fraction"] <= 0.5, "accuracy"].max()
                ),
            }
        )
    return history, suite, binary, curve


def write_synthetic_experiment(tracking_uri: str, spec: SyntheticSpec = SyntheticSpec()) -> list[str]:
    """Create ``spec.experiment`` at ``tracking_uri`` (artifacts beside a local store) and fill it;
    returns the trial run ids (finished ones first)."""
    client = MlflowClient(tracking_uri)
    rng = np.random.default_rng(spec.seed)
    location = None
    if tracking_uri.startswith("sqlite:///"):
        location = (Path(tracking_uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    exp = client.get_experiment_by_name(spec.experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(spec.experiment, artifact_location=location)
    parent_id = None
    if spec.kind != "single":
        parent = client.create_run(exp_id, run_name=f"{spec.kind}-parent", tags={"role": spec.kind})
        parent_id = parent.info.run_id
    png = _png(rng) if spec.tables else b""
    ids = []
    for i in range(spec.runs + spec.unfinished):
        params, extra = _config(i, spec, rng)
        tags = {"role": "trial", "git_commit": "synthetic", **extra}
        if parent_id:
            tags["mlflow.parentRunId"] = parent_id
        run_id = client.create_run(exp_id, run_name=f"trial-{i:04d}", tags=tags).info.run_id
        missing = bool(spec.missing_every) and i % spec.missing_every == spec.missing_every - 1
        history, suite, binary, curve = _metrics(params, spec, rng, missing)
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now + e, e) for e, row in enumerate(history) for k, v in row.items()]
        metrics += [Metric(k, float(v), now + spec.epochs, spec.epochs - 1) for k, v in suite.items()]
        client.log_batch(run_id, metrics=metrics, params=[Param(k, v) for k, v in params.items()])
        if spec.tables and binary is not None:
            with tempfile.TemporaryDirectory() as tmp:
                root = Path(tmp)
                (root / "tables").mkdir()
                (root / "plots").mkdir()
                binary.to_csv(root / "tables" / "binary_classifiers.csv", index=False)
                curve.to_csv(root / "tables" / "early_exit_curve.csv", index=False)
                pd.DataFrame({"block": [0, 1], "stage": ["c3", "c4"], "compute_fraction": [0.5, 0.8]}).to_csv(
                    root / "tables" / "exit_points.csv", index=False
                )
                if spec.energy_table:
                    codewords = (np.arange(spec.num_classes)[:, None] + np.arange(6)[None, :]) % 3 == 0
                    energy = rng.random(codewords.shape) + 2 * codewords
                    pd.DataFrame(
                        [
                            {
                                "block": 0,
                                "stage": "c3",
                                "class": k,
                                "branch": n,
                                "energy": energy[k, n],
                                "bit": int(codewords[k, n]),
                                "class_name": f"class-{k}",
                            }
                            for k in range(spec.num_classes)
                            for n in range(6)
                        ]
                    ).to_csv(root / "tables" / "energy_by_class.csv", index=False)
                else:
                    (root / "plots" / "energy_heatmap_block_0.png").write_bytes(png)
                client.log_artifacts(run_id, str(root))
        if i < spec.runs:
            client.set_terminated(run_id, "FINISHED")
        ids.append(run_id)
    if parent_id:
        client.set_terminated(parent_id, "FINISHED")
    return ids


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="write a synthetic experiment into an MLflow store")
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--experiment", default="synthetic")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--kind", choices=["sweep", "ablation", "single"], default="sweep")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args(argv)
    spec = SyntheticSpec(experiment=args.experiment, runs=args.runs, kind=args.kind, epochs=args.epochs)
    started = time.perf_counter()
    ids = write_synthetic_experiment(args.tracking_uri, spec)
    print(f"{len(ids)} runs in experiment {args.experiment!r} in {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
