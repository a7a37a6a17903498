"""``coded-resnext evaluate``: measure a finished run, or a finished sweep's Pareto front, on the test split."""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from coded_resnext.orchestration.errors import UserError

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="measure a finished run or a sweep's Pareto front on the test split, once (logs test/... metrics)",
        description=(
            "The test split, used once. Searches select on the validation split; this measures what they "
            "chose on the dataset's own test split: it rebuilds each run's model from its final checkpoint, "
            "refits the binary classifiers' thresholds on training samples and the early-exit operating "
            "points on the validation split, exactly as the run did, then logs the test figures to the run "
            "(test/accuracy, test/decode_accuracy/block_i, test/binary/..., test/early_exit/..., ...) and "
            "its tables (tables/test_*.csv). A run that already has test figures is refused unless --force."
        ),
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--run-id", help="a finished run (a single run, a trial or an ablation cell)")
    which.add_argument(
        "--sweep", metavar="NAME", help="a finished sweep or ablation (its tune.name); needs --front or --all"
    )
    runs = p.add_mutually_exclusive_group()
    runs.add_argument("--front", action="store_true", help="with --sweep: every run on the sweep's Pareto front")
    runs.add_argument(
        "--all",
        action="store_true",
        help="with --sweep: every finished run (for an ablation: every cell and seed, and a paired test summary)",
    )
    p.add_argument("--force", action="store_true", help="measure again runs that already have test figures")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to run the model")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: sqlite file under runs/)")
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    import os

    import pandas as pd

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one line per step is ours to print
    from coded_resnext.orchestration.final_test import (
        ablation_test_summary,
        front_table,
        measure,
        plan_run,
        sweep_front,
        sweep_trials,
    )
    from coded_resnext.orchestration.store import open_store
    from coded_resnext.orchestration.tracking import RunTracker

    if args.sweep and not (args.front or args.all):
        raise UserError("--sweep NAME needs --front (the runs on its Pareto front) or --all (every finished run)")
    if (args.front or args.all) and not args.sweep:
        raise UserError(f"--{'front' if args.front else 'all'} goes with --sweep NAME")
    uri = open_store(args.tracking_uri)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    with tempfile.TemporaryDirectory(prefix="coded-resnext-evaluate-") as tmp:
        work, cache = Path(tmp), {}
        if args.run_id:
            plan = plan_run(client, args.run_id, work, force=args.force, data_cache=cache)
            metrics = measure(plan, uri, args.device)
            print(f"\nrun {args.run_id}: test figures logged")
            for key in sorted(metrics):
                print(f"  {key:<48} {metrics[key]:.4f}")
            return 0
        front = sweep_front(client, args.sweep) if args.front else sweep_trials(client, args.sweep)
        ids = list(front.front["run_id"])
        which = f"on the front over {', '.join(front.objectives)}" if args.front else "finished"
        logger.info("%r: %d run(s) %s", args.sweep, len(ids), which)
        plans = [plan_run(client, run_id, work / run_id, force=args.force, data_cache=cache) for run_id in ids]
        measured = {plan.run_id: measure(plan, uri, args.device) for plan in plans}
        table = front_table(front, measured)
        summary = ablation_test_summary(client, front)
        parent = RunTracker.attach(uri, front.parent.info.run_id)  # the parent's status stays as it is
        name = "front_test.csv" if args.front else "runs_test.csv"
        try:
            table.to_csv(work / name, index=False)
            parent.log_artifact(work / name)
            if summary is not None:
                summary.to_csv(work / "ablation_summary_test.csv", index=False)
                parent.log_artifact(work / "ablation_summary_test.csv")
        finally:
            parent.close()
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.4f}".format):
        print("\n" + table.drop(columns=["run_name"]).to_string(index=False))
        if summary is not None:
            print("\n" + summary.to_string(index=False))
    attached = name + (" and ablation_summary_test.csv" if summary is not None else "")
    print(f"\n{attached} attached to the parent run {front.parent.info.run_id}")
    return 0
