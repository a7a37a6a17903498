"""``coded-resnext tune``: run a search space on Ray Tune, every trial tracked as a nested MLflow run."""

from __future__ import annotations

import argparse
from pathlib import Path

from coded_resnext.orchestration.commands.options import add_overrides, check_option


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune",
        help="search coding schemes, mu, p_drop, widths... on Ray Tune (one MLflow child run per trial)",
        description=(
            "Run the search in SEARCH_SPACE.yaml on Ray Tune: each trial trains one Coded ResNeXt (data-parallel "
            "on Ray Train when train.num_workers > 1), runs the evaluation suite and logs to MLflow as a child of "
            "the sweep's parent run. Searchers: random, grid, Optuna TPE, multi-objective NSGA-II (accuracy vs "
            "binary-classifier size vs early-exit compute); ASHA or multi-objective MO-ASHA early stopping, constraints "
            "checked before training, a reference-control trial. Starts a local Ray unless "
            "--address names a cluster."
        ),
    )
    p.add_argument("space", type=Path, help="search-space YAML (see search_spaces/quickstart.yaml)")
    add_overrides(p, "override a base-config value for every trial, e.g. --set train.epochs=2 (repeatable)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="finish an interrupted sweep: finished trials are kept, unfinished ones continue",
    )
    p.add_argument(
        "--extend", type=int, metavar="N", help="add N trials to a finished sweep (the searcher keeps its history)"
    )
    p.add_argument("--name", help="the sweep's name (default: tune.name, else the file's stem)")
    p.add_argument(
        "--smoke-test",
        action="store_true",
        help="the same search with 2-3 tiny trials (few hundred images, <= 2 epochs): a few minutes",
    )
    p.add_argument(
        "--address", help="an existing Ray cluster (e.g. ray://head:10001 or auto); default: start a local one"
    )
    p.add_argument(
        "--storage-path", help="Tune/Train storage: a shared directory or an object-store URI (default runs/ray)"
    )
    p.add_argument(
        "--searcher-storage",
        metavar="URL",
        help="keep the Optuna study in this database (e.g. postgresql+psycopg2://user@db/optuna) rather than "
        "with the sweep's Tune experiment in --storage-path (the default; --resume/--extend find it either way)",
    )
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: sqlite file under runs/)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    import dataclasses

    from coded_resnext.orchestration.errors import UserError
    from coded_resnext.orchestration.ray_runtime import ray_session
    from coded_resnext.orchestration.search_space import load_search_space
    from coded_resnext.orchestration.sweep import Sweep
    from coded_resnext.orchestration.sweep_summary import print_outcome

    if args.resume and args.extend:
        raise UserError("--resume and --extend: pick one (resume an interrupted sweep, or extend a finished one)")
    check_option("--extend", args.extend)
    space = load_search_space(args.space, args.overrides)
    changes = {}
    if args.name:
        changes["name"] = args.name
    if args.storage_path:
        changes["storage_path"] = args.storage_path
    if args.searcher_storage:
        from coded_resnext.orchestration.searcher import check_url

        check_url(args.searcher_storage)
        changes["searcher_storage"] = args.searcher_storage
    if args.smoke_test:
        changes["num_samples"] = min(space.tune.num_samples, 3) if space.tune.algorithm != "grid" else 1  # grid: once
    if changes:
        space.tune = dataclasses.replace(space.tune, **changes)
    sweep = Sweep(space, args.tracking_uri, smoke_test=args.smoke_test)
    sweep.check(resume=args.resume, extend=args.extend)  # before Ray starts: a wrong flag fails fast
    with ray_session(args.address, num_cpus=args.num_cpus):
        outcome = sweep.run(resume=args.resume, extend=args.extend)
    print_outcome(outcome, sweep._objectives(), sweep.tracking_uri, sweep.base_cfg.tracking.experiment)
    if outcome.interrupted:
        return 130
    return 1 if outcome.failed else 0
