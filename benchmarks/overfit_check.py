"""Did a run over-fit? Per run of an experiment, where its validation loss bottomed out and how far it rose after.

    python benchmarks/overfit_check.py ablation-data-limited-overfit --tracking-uri sqlite:////tmp/x/runs/mlflow.db

A data-limited study is only about over-fitting if the plain control over-fits: its validation loss turns up
before the end of training (and its training accuracy ends above its validation accuracy). This prints, per
run (cell and seed for an ablation), the epoch of the lowest ``val/loss``, that loss, the last one and the
rise, with the final ``train/accuracy`` (under the training transform) and ``val/accuracy``; a run counts as
over-fitted when its last validation loss is above its lowest by more than 2% of it. Reads MLflow only.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
RISE = 0.02  # the last val/loss above the lowest by more than this share of it: over-fitted


def overfit_table(experiment: str, tracking_uri: str | None):
    import pandas as pd

    from coded_resnext.results.artifacts import load_histories
    from coded_resnext.results.runs import load_runs, metric_values
    from coded_resnext.results.schema import Metric, Tag, tag_column

    runs = load_runs(experiment, tracking_uri, statuses=None)  # a stopped pilot's curve counts too
    history = load_histories(runs, tracking_uri, keys=(Metric.VAL_LOSS,))
    rows = []
    for run_id, curve in history.groupby("run_id"):
        curve = curve.sort_values("step")
        best = curve.loc[curve["value"].idxmin()]
        last = curve.iloc[-1]
        run = runs.loc[runs["run_id"] == run_id].iloc[0]
        rows.append(
            {
                "cell": run.get(tag_column(Tag.ABLATION_CELL), "") or "",
                "seed": run.get("params.seed", ""),
                "control": run.get("params.model.control", ""),
                "best_epoch": int(best["step"]) + 1,
                "epochs": int(last["step"]) + 1,
                "best_val_loss": best["value"],
                "last_val_loss": last["value"],
                "rise": last["value"] - best["value"],
                "overfitted": last["value"] > best["value"] * (1 + RISE),
                "train_accuracy": metric_values(runs, "train/accuracy")[run.name],
                "val_accuracy": metric_values(runs, Metric.VAL_ACCURACY)[run.name],
            }
        )
    if not rows:
        raise SystemExit(f"no run of {experiment!r} has a val/loss history")
    return pd.DataFrame(rows).sort_values(["cell", "seed"]).reset_index(drop=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment")
    parser.add_argument("--tracking-uri", default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    table = overfit_table(args.experiment, args.tracking_uri)
    print(table.round(4).to_string(index=False))


if __name__ == "__main__":
    main()
