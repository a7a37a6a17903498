"""``coded-resnext train``: train one Coded ResNeXt (or its control) from a YAML config."""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestration.tracking import default_tracking_uri


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train one model from a YAML config and track it in MLflow",
        description=(
            "Train one Coded ResNeXt (or its plain control) from CONFIG.yaml, run the evaluation suite "
            "(accuracy, early decoding, binary classifiers, early exit, branch removal, invariance) and "
            "log everything to MLflow. Checkpoints go to runs/checkpoints/<config hash>/ every epoch."
        ),
    )
    p.add_argument("config", type=Path, help="YAML run config (see search_spaces/quickstart_train.yaml)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config value, e.g. --set loss.mu=3 --set train.epochs=2 (repeatable)",
    )
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint of this config")
    p.add_argument("--smoke-test", action="store_true", help="tiny data, <= 2 epochs, small evaluation: about a minute")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: sqlite file under runs/)")
    p.add_argument(
        "--checkpoint-root", type=Path, default=Path("runs") / "checkpoints", help="checkpoint directory root"
    )
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    import dataclasses

    from orchestration.config import load_config, smoke_test_config
    from orchestration.training import fit

    cfg = load_config(args.config, args.overrides)
    if args.smoke_test:
        cfg = smoke_test_config(cfg)
    if args.tracking_uri:
        cfg.tracking = dataclasses.replace(cfg.tracking, uri=args.tracking_uri)
    result = fit(cfg, resume=args.resume, checkpoint_root=args.checkpoint_root)
    uri = cfg.tracking.uri or default_tracking_uri()
    print("\nfinal metrics:")
    for key in sorted(result.metrics):
        print(f"  {key:<44} {result.metrics[key]:.4f}")
    print(
        f"\nMLflow run {result.run_id} (experiment {cfg.tracking.experiment!r}); checkpoints in {result.checkpoint_dir}"
    )
    if uri.startswith("sqlite:"):
        print(f"look at it with:  mlflow ui --backend-store-uri {uri}")
    return 0
