"""``coded-resnext extract``: one class's binary classifier from a run or checkpoint, to a file."""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestration.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "extract",
        help="write one class's pruned binary classifier (torch.export .pt2) from a run or checkpoint",
        description=(
            "Extract the binary classifier of one class (the branches on its path only) from a trained "
            "model and save it with torch.export (load with torch.export.load; its output is the class score "
            "(B,)). The model comes from an MLflow run's final checkpoint (--run-id) or a checkpoint file."
        ),
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-id", help="MLflow run whose final checkpoint to use")
    source.add_argument("--checkpoint", type=Path, help="checkpoint file (runs/checkpoints/<hash>/epoch-NNNN.pt)")
    p.add_argument("--class", dest="class_index", type=int, required=True, help="class index k")
    p.add_argument("--out", type=Path, required=True, help="output file, e.g. class3.pt2")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: sqlite file under runs/)")
    p.add_argument("--register", metavar="NAME", default=None, help="also register it in the MLflow model registry")
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    import torch

    from coded_resnext import extract_binary_classifier, parameter_count
    from orchestration.checkpoint import load_checkpoint
    from orchestration.tracking import RunTracker, default_tracking_uri
    from orchestration.training import model_from_checkpoint

    if not args.out.parent.exists():
        raise UserError(f"output directory {args.out.parent} does not exist; create it first")
    uri = args.tracking_uri or default_tracking_uri()
    if args.run_id:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        try:
            local = Path(client.download_artifacts(args.run_id, "checkpoint"))
        except MlflowException as err:
            raise UserError(f"run {args.run_id}: no final checkpoint found at {uri} ({err.error_code})") from None
        files = sorted(local.glob("*.pt"))
        if not files:
            raise UserError(f"run {args.run_id} has no checkpoint artifact; was it finished?")
        checkpoint = files[-1]
    else:
        checkpoint = args.checkpoint
    state = load_checkpoint(checkpoint)
    model = model_from_checkpoint(state)
    if not 0 <= args.class_index < model.num_classes:
        raise UserError(f"--class {args.class_index} out of range; the model has classes 0..{model.num_classes - 1}")
    binary = extract_binary_classifier(model, args.class_index)
    size = state["image_size"]
    example = torch.randn(2, model.config.in_chans, size, size)
    batch = torch.export.Dim("batch", min=1)
    exported = torch.export.export(binary, (example,), dynamic_shapes=({0: batch},))
    torch.export.save(exported, args.out)
    fraction = parameter_count(binary) / parameter_count(model)
    print(
        f"wrote {args.out}: class {args.class_index}, {parameter_count(binary):,} parameters ({fraction:.1%} of the model)"
    )
    if args.register:
        tracker = RunTracker(
            uri,
            "coded-resnext-extracted",
            run_name=f"binary-class-{args.class_index}",
            tags={"role": "extract", "source_checkpoint": str(checkpoint)},
        )
        tracker.log_model(binary, example, name="binary_classifier", registered_model_name=args.register)
        tracker.finish()
        print(f"registered as {args.register!r} in the MLflow model registry at {uri}")
    return 0
