"""``coded-resnext train``: train one Coded ResNeXt (or its control) from a YAML config."""

from __future__ import annotations

import argparse
from pathlib import Path

from coded_resnext.orchestration.commands.options import add_overrides
from coded_resnext.results.schema import Tag


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
    add_overrides(p, "override a config value, e.g. --set loss.mu=3 --set train.epochs=2 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint of this config")
    p.add_argument("--smoke-test", action="store_true", help="tiny data, <= 2 epochs, small evaluation: about a minute")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: sqlite file under runs/)")
    p.add_argument(
        "--checkpoint-root", type=Path, default=Path("runs") / "checkpoints", help="checkpoint directory root"
    )
    p.add_argument(
        "--address", help="train.num_workers > 1 runs on Ray Train: an existing cluster (default: a local Ray)"
    )
    p.add_argument(
        "--storage-path",
        help="Ray Train storage for train.num_workers > 1: shared dir or object-store URI (default runs/ray)",
    )
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    import dataclasses

    from coded_resnext.orchestration.config import load_config, smoke_test_config
    from coded_resnext.orchestration.store import open_store
    from coded_resnext.orchestration.training import fit

    cfg = load_config(args.config, args.overrides)
    if args.smoke_test:
        cfg = smoke_test_config(cfg)
    uri = open_store(args.tracking_uri or cfg.tracking.uri)
    cfg.tracking = dataclasses.replace(cfg.tracking, uri=uri)
    if cfg.train.num_workers > 1:
        return _run_distributed(cfg, args, uri)
    result = fit(cfg, resume=args.resume, checkpoint_root=args.checkpoint_root)
    print("\nfinal metrics:")
    for key in sorted(result.metrics):
        print(f"  {key:<44} {result.metrics[key]:.4f}")
    print(
        f"\nMLflow run {result.run_id} (experiment {cfg.tracking.experiment!r}); checkpoints in {result.checkpoint_dir}"
    )
    if uri.startswith("sqlite:"):
        print(f"look at it with:  mlflow ui --backend-store-uri {uri}")
    return 0


def _run_distributed(cfg, args: argparse.Namespace, uri: str) -> int:
    """``train.num_workers`` ranks on a Ray Train ``TorchTrainer``; ``--resume`` continues its Ray run."""
    import dataclasses

    from ray.train import Checkpoint  # noqa: F401  (fail early if Ray Train is missing)

    from coded_resnext.orchestration.errors import UserError
    from coded_resnext.orchestration.lineage import Lineage
    from coded_resnext.orchestration.ray_runtime import check_storage, ray_session, storage_uri
    from coded_resnext.orchestration.ray_train import make_trainer

    cfg.tracking = dataclasses.replace(cfg.tracking, uri=uri)
    storage = storage_uri(args.storage_path, Path("runs") / "ray")
    check_storage(storage)
    name = f"train-{cfg.experiment_hash}"
    exists = "://" not in storage and (Path(storage) / name).exists()
    if exists and not args.resume:
        raise UserError(
            f"a Ray Train run for this config already exists in {storage}/{name}; pass --resume to continue it, "
            "or delete that directory to start over"
        )
    if args.resume and not exists and "://" not in storage:
        raise UserError(f"--resume: no Ray Train run for this config in {storage}/{name}; run without --resume")
    # The run is found again by its run_key: across worker-group restarts (make_trainer draws one), and on
    # --resume by the key of this Ray Train run's earlier MLflow run (it may have died before a checkpoint).
    lineage = Lineage(tracking_uri=uri, tags={Tag.RAY_TRAIN_RUN: f"{storage}/{name}"})
    if args.resume:
        from coded_resnext.orchestration.store import find_runs

        earlier = find_runs(uri, cfg.tracking.experiment, {Tag.RAY_TRAIN_RUN: f"{storage}/{name}"})
        lineage.run_key = earlier[0].data.tags.get(Tag.RUN_KEY) if earlier else None
    with ray_session(args.address, log_to_driver=True):
        trainer = make_trainer(cfg, lineage, storage_path=storage, name=name, measure_test=True)
        result = trainer.fit()
    print("\nfinal metrics:")
    for key in sorted(result.metrics):
        if isinstance(result.metrics[key], int | float):
            print(f"  {key:<44} {result.metrics[key]:.4f}")
    print(f"\nRay Train run {storage}/{name} ({cfg.train.num_workers} workers); MLflow at {uri}")
    return 0
