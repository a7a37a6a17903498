"""``coded-resnext ablate``: a grid of settings x seeds with the plain control, summarized per cell."""

from __future__ import annotations

import argparse
from pathlib import Path

from coded_resnext.orchestration.commands.options import add_overrides


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ablate",
        help="run an ablation (grid or variants x seeds, control included) and summarize it per cell",
        description=(
            "Run ABLATION.yaml as one batch on Ray Tune: every cell (a grid of settings such as mu x p_drop, "
            "or named variants such as one coded stage off) for every seed, plus the plain-ResNeXt control "
            "on the same seeds. Prints and logs (to the ablation's parent MLflow run) a table with the mean, "
            "std and 95% interval per cell and the paired difference to the control on the same seed, on the "
            "held-out validation split; the test split's figures come once, after it ends, from "
            "'coded-resnext evaluate --sweep NAME --all'."
        ),
    )
    p.add_argument("ablation", type=Path, help="ablation YAML (see search_spaces/ablation_mu_pdrop.yaml)")
    add_overrides(p, "override a base-config value for every run (repeatable)")
    p.add_argument("--resume", action="store_true", help="finish an interrupted ablation")
    p.add_argument(
        "--smoke-test",
        action="store_true",
        help="a few runs (the control and the first cell, two seeds) on tiny data, <= 2 epochs each",
    )
    p.add_argument("--address", help="an existing Ray cluster; default: start a local one")
    p.add_argument("--storage-path", help="Tune storage: a shared directory or an object-store URI (default runs/ray)")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: sqlite file under runs/)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    import dataclasses
    import tempfile

    import pandas as pd

    from coded_resnext.orchestration.ablation import load_ablation, smoke_test_ablation, summarize
    from coded_resnext.orchestration.ray_runtime import ray_session
    from coded_resnext.orchestration.search_space import CELL_KEY
    from coded_resnext.orchestration.sweep import Sweep
    from coded_resnext.orchestration.sweep_summary import print_outcome
    from coded_resnext.orchestration.tracking import RunTracker

    space, metrics = load_ablation(args.ablation, args.overrides)
    if args.storage_path:
        space.tune = dataclasses.replace(space.tune, storage_path=args.storage_path)
    if args.smoke_test:
        smoke_test_ablation(space)
    cells, seeds = space.domains[CELL_KEY].values, space.domains["seed"].values
    print(
        f"ablation {space.name!r}: {len(cells)} cells (control included) x {len(seeds)} seeds = {len(cells) * len(seeds)} runs"
    )
    sweep = Sweep(space, args.tracking_uri, smoke_test=args.smoke_test)
    sweep.check(resume=args.resume)  # before Ray starts: a wrong flag fails fast
    with ray_session(args.address, num_cpus=args.num_cpus):
        outcome = sweep.run(resume=args.resume)
    if outcome.interrupted:  # no summary over a partial batch
        print_outcome(outcome, sweep._objectives(), sweep.tracking_uri, sweep.base_cfg.tracking.experiment)
        return 130
    table = summarize(space, metrics, outcome.parent_run_id, sweep.tracking_uri)
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.float_format", "{:.4f}".format):
        print("\n" + table.to_string(index=False))
    parent = RunTracker(sweep.tracking_uri, sweep.base_cfg.tracking.experiment, run_id=outcome.parent_run_id)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ablation_summary.csv"
        table.to_csv(path, index=False)
        parent.log_artifact(path)
    parent.finish("FINISHED" if not outcome.failed else "FAILED")  # reattaching marked it RUNNING
    print_outcome(outcome, sweep._objectives(), sweep.tracking_uri, sweep.base_cfg.tracking.experiment)
    return 1 if outcome.failed else 0
