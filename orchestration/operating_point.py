"""An early-exit operating point from a run: the threshold its validation curve (the suite's
``tables/early_exit_curve.csv``: threshold, accuracy, compute_fraction, exit_rate) gives for keeping a
share of the full network's accuracy, and the thresholds a user types on the command line.

Thresholds are chosen on the validation curve, never on test data (docs/architecture.md, Data).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
from mlflow.exceptions import MlflowException

from coded_resnext.orchestration.checkpoint import load_checkpoint
from coded_resnext.orchestration.commands.options import check_option
from coded_resnext.orchestration.errors import UserError

CURVE_ARTIFACT = "tables/early_exit_curve.csv"


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    at_accuracy: float  # the share of the full accuracy asked for
    accuracy: float  # validation accuracy of early exit at this threshold
    full_accuracy: float  # the full network's (threshold inf)
    compute_fraction: float  # mean FLOPs per sample / the full network's
    exit_rate: float  # share of samples that leave before the head

    def to_dict(self) -> dict:
        return asdict(self)


def check_at_accuracy(value: float) -> float:
    """The share of the full accuracy to keep (e.g. 0.99), in (0, 1]."""
    return check_option("--at-accuracy", value)


def parse_threshold(text: str) -> float | list[float]:
    """``--threshold``: one number (``inf``: never exit) or comma-separated numbers, one per coded block."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise UserError(
            f"--threshold {text!r}: not a number; give one (e.g. 0.4, or inf for never) or one per coded block, "
            "comma-separated (e.g. 0.3,0.3,0.2,0.2)"
        ) from None
    if any(math.isnan(v) for v in values):
        raise UserError(f"--threshold {text!r}: nan is not a threshold; give a number (inf: never exit)")
    return values[0] if len(values) == 1 else values


def check_threshold_count(threshold: float | list[float], num_coded_blocks: int) -> None:
    if isinstance(threshold, list) and len(threshold) != num_coded_blocks:
        raise UserError(
            f"--threshold: {len(threshold)} per-block values but the model has {num_coded_blocks} coded blocks; "
            f"give one number or {num_coded_blocks} comma-separated"
        )


def operating_point(rows: list[dict], at_accuracy: float) -> OperatingPoint:
    """The least-compute row of the curve whose accuracy is at least ``at_accuracy`` times the full
    network's (the row at threshold inf); among equals the higher threshold, which exits less."""
    check_at_accuracy(at_accuracy)
    full = [r for r in rows if math.isinf(float(r["threshold"]))]
    if not full:
        raise UserError(
            "the run's early-exit curve has no row at threshold inf (the full network); rerun its evaluation"
        )
    full_accuracy = float(full[0]["accuracy"])
    keep = [r for r in rows if float(r["accuracy"]) >= at_accuracy * full_accuracy]
    best = min(keep, key=lambda r: (float(r["compute_fraction"]), -float(r["threshold"])))
    return OperatingPoint(
        float(best["threshold"]),
        at_accuracy,
        float(best["accuracy"]),
        full_accuracy,
        float(best["compute_fraction"]),
        float(best["exit_rate"]),
    )


def run_curve(client, run_id: str) -> list[dict]:
    """The run's validation early-exit curve, as rows."""
    missing = UserError(
        f"run {run_id} has no {CURVE_ARTIFACT} (a run of a coded model logs it at its end); give --threshold instead"
    )
    try:  # listed first: a download of a missing file would draw a progress bar before failing
        if CURVE_ARTIFACT not in {f.path for f in client.list_artifacts(run_id, "tables")}:
            raise missing
        with tempfile.TemporaryDirectory() as tmp:
            return pd.read_csv(client.download_artifacts(run_id, CURVE_ARTIFACT, tmp)).to_dict("records")
    except (MlflowException, OSError):
        raise missing from None


def load_run_checkpoint(client, run_id: str, uri: str) -> dict:
    """The state of the final checkpoint a finished run logged (artifact ``checkpoint/*.pt``), verified;
    the download goes to a temporary directory that is removed afterwards."""

    with tempfile.TemporaryDirectory(prefix="coded-resnext-checkpoint-") as tmp:
        try:
            local = Path(client.download_artifacts(run_id, "checkpoint", tmp))
        except MlflowException as err:
            raise UserError(f"run {run_id}: no final checkpoint found at {uri} ({err.error_code})") from None
        files = sorted(local.glob("*.pt"))
        if not files:
            raise UserError(f"run {run_id} has no checkpoint artifact; was it finished?")
        return load_checkpoint(files[-1])
