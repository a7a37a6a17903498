"""Where a quickstart trial's time goes: training against its end-of-trial evaluation, part by part.

    python benchmarks/evaluation_cost.py --trials 3 --threads 1 --clock thread-cpu [--json cost.json]

Runs quickstart trials in this process, as a Tune trial runs them (``train_loop``, no test split, one torch
thread like the quickstart's 1-CPU trials), each with a throwaway MLflow store and checkpoints: the
reference control and coded configurations from ``search_spaces/quickstart.yaml``. Every part of a trial
is timed by wrapping the function that does it (``PARTS``: module and name, as the caller looks it up), so
the same script measures an older checkout, whose parts have other names (a part it does not have is
left out). Prints per trial and part the seconds, and the share of the trial's time that is evaluation:
the end-of-run suite and what the run records after it (tables, plots, checkpoint), against training
(every epoch's train pass and per-epoch validation).

``--clock thread-cpu`` (with ``--threads 1``) counts the CPU time of this thread, which other jobs on a
shared machine do not inflate; ``wall`` is what a user waits.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import logging
import os
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# (label, "module:function"): the caller's module, so the wrapper is what the caller calls. Nested parts
# (indented labels) are inside the part above them.
PARTS = [
    ("trial", "coded_resnext.orchestration.training:train_loop"),
    ("train epochs", "coded_resnext.orchestration.training:train_epoch"),
    ("per-epoch validation", "coded_resnext.orchestration.training:distributed_evaluate"),
    ("suite", "coded_resnext.orchestration.training:run_evaluation"),
    ("  data (OOD set)", "coded_resnext.orchestration.build:build_ood_dataset"),
    ("  forward passes (collect)", "coded_resnext.evaluation.suite:collect"),
    ("  OOD pass (classifier heads)", "coded_resnext.evaluation.suite:head_outputs"),
    ("  binary: extract", "coded_resnext.evaluation.suite:extract_classifiers"),
    ("  binary: fit", "coded_resnext.evaluation.suite:fit_binary_classifiers"),
    ("  binary: measure", "coded_resnext.evaluation.suite:measure_binary_classifiers"),
    ("  early exit: FLOPs", "coded_resnext.evaluation.suite:exit_compute_fractions"),
    ("  early exit: curve", "coded_resnext.evaluation.suite:early_exit_curve"),
    ("  branch removal", "coded_resnext.evaluation.suite:removal_curves"),
    ("  invariance", "coded_resnext.evaluation.suite:invariance_rows"),
    ("records", "coded_resnext.orchestration.training:finish_run"),
    ("  tables and plots", "coded_resnext.orchestration.run_records:log_suite_artifacts"),
    ("    plots", "coded_resnext.orchestration.run_records:write_run_plots"),
    ("  checkpoint", "coded_resnext.orchestration.run_records:save_checkpoint"),
]
TRAINING = ("train epochs", "per-epoch validation")
EVALUATION = ("suite", "records")

# The trials: the reference control and two coded configurations the quickstart's search can sample.
TRIALS = [
    {"reference_control": True},
    {
        "coding.c3": "paper:cifar10/5/10",
        "coding.c4": "paper:cifar10/3/10",
        "loss.mu": 6.0,
        "loss.p_drop": 0.1,
        "model.width_multiplier": 1.0,
    },
    {
        "coding.c3": {"active": 4, "min_distance": 4},
        "coding.c4": {"active": 2, "min_distance": 2},
        "loss.mu": 3.0,
        "loss.p_drop": 0.2,
        "model.width_multiplier": 1.25,
    },
]


def install_timers(clock, seconds: dict[str, float], calls: dict[str, int]) -> list[str]:
    """Wrap every part this checkout has; returns the labels of those it has."""
    found = []
    for label, target in PARTS:
        module_name, name = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        fn = getattr(module, name, None)
        if fn is None:
            continue

        def timed(*args, __fn=fn, __label=label, **kwargs):
            start = clock()
            try:
                return __fn(*args, **kwargs)
            finally:
                seconds[__label] += clock() - start
                calls[__label] += 1

        setattr(module, name, functools.wraps(fn)(timed))
        found.append(label)
    return found


def run_trial(sampled: dict, tmp: Path, index: int, smoke: bool) -> None:
    import dataclasses

    from coded_resnext.orchestration.config import smoke_test_config
    from coded_resnext.orchestration.lineage import Lineage
    from coded_resnext.orchestration.search_space import encode, load_search_space
    from coded_resnext.orchestration.sessions import LocalSession
    from coded_resnext.orchestration.training import Progress, train_loop
    from coded_resnext.orchestration.trial import reference_control_config

    space = load_search_space(REPO / "search_spaces" / "quickstart.yaml")
    if sampled.get("reference_control"):
        cfg = reference_control_config(space)
    else:
        cfg = space.trial_config({k: encode(v) for k, v in sampled.items()})
    if smoke:
        cfg = smoke_test_config(cfg)
    cfg.train = dataclasses.replace(cfg.train, progress="none")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    cfg.tracking = dataclasses.replace(cfg.tracking, uri=uri, run_name=f"cost-{index}")
    session = LocalSession(tmp / "checkpoints" / str(index), False, cfg.train.epochs)
    train_loop(cfg, session, Lineage(tracking_uri=uri), Progress("none", cfg.train.epochs))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=3, help=f"trials to run, at most {len(TRIALS)} (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1, as a trial)")
    parser.add_argument("--clock", choices=("wall", "thread-cpu"), default="thread-cpu")
    parser.add_argument("--smoke", action="store_true", help="the smoke-test sizes (checks the script, not figures)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.clock == "thread-cpu" and args.threads != 1:
        parser.error("--clock thread-cpu counts one thread's CPU time; give --threads 1 with it")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    logging.basicConfig(level=logging.WARNING)

    import torch

    torch.set_num_threads(args.threads)
    clock = time.thread_time if args.clock == "thread-cpu" else time.perf_counter
    results = []
    for index, sampled in enumerate(TRIALS[: args.trials]):
        seconds: dict[str, float] = defaultdict(float)
        calls: dict[str, int] = defaultdict(int)
        found = install_timers(clock, seconds, calls)
        with tempfile.TemporaryDirectory(prefix="evaluation-cost-") as tmp:
            run_trial(sampled, Path(tmp), index, args.smoke)
        importlib.invalidate_caches()
        for label, target in PARTS:  # unwrap for the next trial
            module_name, name = target.split(":")
            if label in found:
                module = importlib.import_module(module_name)
                setattr(module, name, getattr(module, name).__wrapped__)
        train = sum(seconds[k] for k in TRAINING)
        evaluation = sum(seconds[k] for k in EVALUATION)
        results.append(
            {
                "trial": sampled,
                "seconds": {k: round(seconds[k], 3) for k in found},
                "calls": {k: calls[k] for k in found},
                "train_s": round(train, 3),
                "evaluation_s": round(evaluation, 3),
                "suite_s": round(seconds["suite"], 3),
                "evaluation_share": round(evaluation / seconds["trial"], 4),
                "suite_share_of_train_plus_suite": round(seconds["suite"] / (train + seconds["suite"]), 4),
            }
        )
    labels = [label for label, _ in PARTS if any(label in r["seconds"] for r in results)]
    print(f"seconds per part ({args.clock} clock, {args.threads} thread(s); load before: {os.getloadavg()[0]:.1f})")
    print(f"{'part':<30}" + "".join(f"{'trial ' + str(i):>10}" for i in range(len(results))) + f"{'median':>10}")
    for label in labels:
        values = [r["seconds"].get(label, 0.0) for r in results]
        cells = "".join(f"{v:>10.2f}" for v in values)
        print(f"{label:<30}{cells}{statistics.median(values):>10.2f}")
    shares = [r["evaluation_share"] for r in results]
    print(f"{'evaluation share of the trial':<30}" + "".join(f"{s:>10.3f}" for s in shares))
    print("(evaluation: the end-of-run suite and the records after it; trial 0 is the reference control)")
    if args.json:
        args.json.write_text(json.dumps({"clock": args.clock, "threads": args.threads, "trials": results}, indent=1))


if __name__ == "__main__":
    main()
