"""Orchestration overhead: the quickstart's trials run by Tune vs the same trials run one after another by
the plain single-process trainer (same data, epochs, seeds), at concurrency 1 with all cores per trial.

    python benchmarks/tune_overhead.py --trials 3 --epochs 2      # about 10 minutes on 2 cores

Prints the wall-time ratio (Tune / plain; goal <= 1.15), Ray's start-up, and the per-trial start-up of a
one-worker trial (Tune) and of a two-worker trial (Ray Train) against the same work in-process.
Everything runs in throwaway directories; nothing is added to runs/.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

from _throwaway import run_in_throwaway_dir  # benchmarks/ itself, on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default=str(ROOT / "search_spaces" / "quickstart.yaml"))
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="cores per trial (all: concurrency 1)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    run_in_throwaway_dir("tune-overhead-", lambda work: _measure(args, work), args.json)


def _measure(args: argparse.Namespace, work: Path) -> dict:
    from coded_resnext.orchestration.ray_runtime import ray_session
    from coded_resnext.orchestration.search_space import load_search_space
    from coded_resnext.orchestration.sweep import Sweep
    from coded_resnext.orchestration.training import fit

    overrides = [f"train.epochs={args.epochs}", f"train.cpus_per_worker={args.cpus}"]
    space = load_search_space(args.space, overrides)
    space.tune = dataclasses.replace(space.tune, num_samples=args.trials, max_concurrent_trials=1, name="overhead")
    uri = f"sqlite:///{work / 'mlflow.db'}"

    started = time.perf_counter()
    with ray_session(None):
        ray_up = time.perf_counter() - started
        outcome = Sweep(space, uri).run()
    tune_seconds = time.perf_counter() - started
    print(f"tune: {args.trials} trials in {tune_seconds:.1f}s (Ray start {ray_up:.1f}s)", flush=True)

    import torch

    torch.set_num_threads(args.cpus)
    sampled = [{k: v for k, v in row.items() if k in space.domains} for row in outcome.trials]
    started = time.perf_counter()
    for i, values in enumerate(sampled):
        cfg = space.trial_config(values)
        cfg.train = dataclasses.replace(cfg.train, progress="none")
        cfg.tracking = dataclasses.replace(cfg.tracking, uri=uri, experiment="overhead-plain", run_name=f"plain-{i}")
        fit(cfg, checkpoint_root=work / "plain-checkpoints")
    plain_seconds = time.perf_counter() - started
    print(f"plain: {args.trials} trials in {plain_seconds:.1f}s", flush=True)

    startup = startup_costs(work)
    return {
        "trials": args.trials,
        "epochs": args.epochs,
        "tune_seconds": tune_seconds,
        "plain_seconds": plain_seconds,
        "ratio_tune_over_plain": tune_seconds / plain_seconds,
        "ray_start_seconds": ray_up,
        "overhead_per_trial_seconds": (tune_seconds - plain_seconds) / args.trials,
        **startup,
    }


def startup_costs(work: Path) -> dict[str, float]:
    """A one-epoch tiny run in-process, as a one-worker Tune trial, and as a two-worker Ray Train run:
    the differences are each path's start-up cost (process start, imports, data, process group)."""
    from ray import tune

    from coded_resnext.orchestration.config import load_config
    from coded_resnext.orchestration.lineage import Lineage
    from coded_resnext.orchestration.ray_runtime import ray_session
    from coded_resnext.orchestration.ray_train import make_trainer
    from coded_resnext.orchestration.sessions import TuneSession
    from coded_resnext.orchestration.training import Progress, fit, train_loop

    base = [
        "data.name=synthetic",
        "data.ood=null",
        "data.limit_train=256",
        "data.limit_val=128",
        "train.epochs=1",
        "train.progress=none",
        "eval.binary_classes=0",
        "eval.invariance_samples=0",
        "eval.removal_samples=32",
        "tracking.log_model=false",
        f"tracking.uri=sqlite:///{work / 'startup.db'}",
    ]
    started = time.perf_counter()
    fit(load_config(None, [*base, "tracking.experiment=startup-plain"]), checkpoint_root=work / "startup")
    plain = time.perf_counter() - started

    def one_trial(_config):
        cfg = load_config(None, [*base, "tracking.experiment=startup-tune"])
        train_loop(cfg, TuneSession(), Lineage(), Progress("none", 1))

    with ray_session(None):
        started = time.perf_counter()
        tune.Tuner(one_trial, run_config=tune.RunConfig(storage_path=str(work / "ray"), verbose=0)).fit()
        one_worker = time.perf_counter() - started
        cfg = load_config(
            None, [*base, "train.num_workers=2", "optim.batch_size=64", "tracking.experiment=startup-ddp"]
        )
        started = time.perf_counter()
        make_trainer(cfg, Lineage(), storage_path=str(work / "ray"), name="startup-ddp").fit()
        two_workers = time.perf_counter() - started
    return {
        "tiny_run_in_process_seconds": plain,
        "startup_one_worker_trial_seconds": one_worker - plain,
        "startup_two_worker_trial_seconds": two_workers - plain,
    }


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
