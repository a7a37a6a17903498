"""Two-worker DDP (Ray Train, gloo) vs one worker, same global batch and seed, on real data (Fashion-MNIST).

    python benchmarks/ddp_vs_single.py                    # about 6 minutes on 2 cores

Prints both final validation accuracies (whole validation set, summed over ranks for DDP), their gap in
points (goal: within 0.5), and the DDP run's parameter divergence across ranks (0.0: identical weights).
With several ``--seeds`` it also prints the mean gap and the single-worker runs' own seed-to-seed spread,
the noise floor a DDP gap has to be read against (local BatchNorm statistics over half the batch and a
different data order make DDP a different, equally valid, sample of the training noise).

    python benchmarks/ddp_vs_single.py --seeds 0 1        # about 8 minutes

``--sync-batchnorm`` adds, per seed, a third run: DDP with ``train.sync_batchnorm=true`` (BatchNorm statistics
over the global batch), and prints its gap to the single worker beside the per-rank BatchNorm one.

    python benchmarks/ddp_vs_single.py --seeds 0 1 2 --sync-batchnorm
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from _throwaway import run_in_throwaway_dir  # benchmarks/ itself, on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "search_spaces" / "quickstart_train.yaml"))
    parser.add_argument("--limit-train", type=int, default=12000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--sync-batchnorm", action="store_true", help="also run DDP with train.sync_batchnorm=true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    run_in_throwaway_dir("ddp-vs-single-", lambda work: _measure(args, work), args.json)


def _measure(args: argparse.Namespace, work: Path) -> dict:
    import torch

    from coded_resnext.orchestration.config import load_config
    from coded_resnext.orchestration.lineage import Lineage
    from coded_resnext.orchestration.ray_runtime import ray_session
    from coded_resnext.orchestration.ray_train import make_trainer
    from coded_resnext.orchestration.training import fit

    common = [
        f"data.limit_train={args.limit_train}",
        f"train.epochs={args.epochs}",
        "train.progress=none",
        "optim.warmup_epochs=0.25",
        "optim.warmup_step=batch",
        "eval.binary_classes=0",
        "eval.invariance_samples=0",
        "eval.removal_samples=64",
        "tracking.log_model=false",
        f"tracking.uri=sqlite:///{work / 'mlflow.db'}",
        "data.ood=null",
    ]
    torch.set_num_threads(1)  # one core, as each DDP rank gets
    per_seed = []
    with ray_session(None):
        for seed in args.seeds:
            seeded = [*common, f"seed={seed}"]
            started = time.perf_counter()
            single = fit(
                load_config(args.config, [*seeded, "tracking.experiment=single"]), checkpoint_root=work / f"ckpt-{seed}"
            )
            single_seconds = time.perf_counter() - started
            cfg = load_config(args.config, [*seeded, "train.num_workers=2", "tracking.experiment=ddp"])
            started = time.perf_counter()
            result = make_trainer(cfg, Lineage(), storage_path=str(work / "ray"), name=f"ddp-{seed}").fit()
            ddp_seconds = time.perf_counter() - started
            synced = {}
            if args.sync_batchnorm:
                synced = _ddp_sync_batchnorm(args, work, seeded, single.metrics["val/accuracy"])
            per_seed.append(
                {
                    "seed": seed,
                    "single_val_accuracy": single.metrics["val/accuracy"],
                    "ddp_val_accuracy": result.metrics["val/accuracy"],
                    "gap_points": 100 * (result.metrics["val/accuracy"] - single.metrics["val/accuracy"]),
                    "ddp_param_divergence": result.metrics["ddp/param_divergence"],
                    "single_seconds": single_seconds,
                    "ddp_seconds": ddp_seconds,
                    **synced,
                }
            )
            print(json.dumps(per_seed[-1]), flush=True)
    singles = [r["single_val_accuracy"] for r in per_seed]
    return {
        "per_seed": per_seed,
        "mean_gap_points": sum(r["gap_points"] for r in per_seed) / len(per_seed),
        "max_abs_gap_points": max(abs(r["gap_points"]) for r in per_seed),
        "single_seed_spread_points": 100 * (max(singles) - min(singles)),
        "max_param_divergence": max(r["ddp_param_divergence"] for r in per_seed),
        **_sync_summary(per_seed),
    }


def _ddp_sync_batchnorm(args: argparse.Namespace, work: Path, seeded: list[str], single_accuracy: float) -> dict:
    """The same DDP run with BatchNorm statistics over the global batch."""
    from coded_resnext.orchestration.config import load_config
    from coded_resnext.orchestration.lineage import Lineage
    from coded_resnext.orchestration.ray_train import make_trainer

    cfg = load_config(
        args.config, [*seeded, "train.num_workers=2", "train.sync_batchnorm=true", "tracking.experiment=ddp-sync"]
    )
    seed = cfg.seed
    started = time.perf_counter()
    result = make_trainer(cfg, Lineage(), storage_path=str(work / "ray"), name=f"ddp-sync-{seed}").fit()
    return {
        "ddp_sync_val_accuracy": result.metrics["val/accuracy"],
        "gap_sync_points": 100 * (result.metrics["val/accuracy"] - single_accuracy),
        "ddp_sync_param_divergence": result.metrics["ddp/param_divergence"],
        "ddp_sync_seconds": time.perf_counter() - started,
    }


def _sync_summary(per_seed: list[dict]) -> dict:
    if "gap_sync_points" not in per_seed[0]:
        return {}
    return {
        "mean_gap_sync_points": sum(r["gap_sync_points"] for r in per_seed) / len(per_seed),
        "max_abs_gap_sync_points": max(abs(r["gap_sync_points"]) for r in per_seed),
        "mean_abs_gap_points": sum(abs(r["gap_points"]) for r in per_seed) / len(per_seed),
        "mean_abs_gap_sync_points": sum(abs(r["gap_sync_points"]) for r in per_seed) / len(per_seed),
    }


if __name__ == "__main__":
    main()
