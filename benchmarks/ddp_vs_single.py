"""Two-worker DDP (Ray Train, gloo) vs one worker, same global batch and seed, on real data (Fashion-MNIST).

    python benchmarks/ddp_vs_single.py                    # about 6 minutes on 2 cores

Prints both final validation accuracies (whole validation set, summed over ranks for DDP), their gap in
points (goal: within 0.5), and the DDP run's parameter divergence across ranks (0.0: identical weights).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "search_spaces" / "quickstart_train.yaml"))
    parser.add_argument("--limit-train", type=int, default=12000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    import torch

    from orchestration.config import load_config
    from orchestration.lineage import Lineage
    from orchestration.ray_runtime import ray_session
    from orchestration.ray_train import make_trainer
    from orchestration.training import fit

    work = Path(tempfile.mkdtemp(prefix="ddp-vs-single-"))
    os.chdir(work)
    common = [
        f"data.limit_train={args.limit_train}", f"train.epochs={args.epochs}", "train.progress=none",
        "optim.warmup_epochs=0.25", "eval.binary_classes=0", "eval.invariance_samples=0", "eval.removal_samples=64",
        "tracking.log_model=false", f"tracking.uri=sqlite:///{work / 'mlflow.db'}", "data.ood=null",
    ]
    torch.set_num_threads(1)  # one core, as each DDP rank gets
    started = time.perf_counter()
    single = fit(load_config(args.config, [*common, "tracking.experiment=single"]), checkpoint_root=work / "ckpt")
    single_seconds = time.perf_counter() - started
    cfg = load_config(args.config, [*common, "train.num_workers=2", "tracking.experiment=ddp"])
    with ray_session(None):
        started = time.perf_counter()
        result = make_trainer(cfg, Lineage(), storage_path=str(work / "ray"), name="ddp").fit()
        ddp_seconds = time.perf_counter() - started
    figures = {
        "single_val_accuracy": single.metrics["val/accuracy"],
        "ddp_val_accuracy": result.metrics["val/accuracy"],
        "gap_points": 100 * abs(single.metrics["val/accuracy"] - result.metrics["val/accuracy"]),
        "ddp_param_divergence": result.metrics["ddp/param_divergence"],
        "single_seconds": single_seconds,
        "ddp_seconds": ddp_seconds,
    }
    print(json.dumps(figures, indent=1))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
