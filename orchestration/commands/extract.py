"""``coded-resnext extract``: one class's binary classifier, or the early-exit network at an operating
point, from a run or checkpoint, to a file."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from coded_resnext.orchestration.errors import UserError
from coded_resnext.results.schema import Role, Tag


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "extract",
        help="write one class's pruned binary classifier, or the early-exit network, from a run or checkpoint",
        description=(
            "Extract the binary classifier of one class (the branches on its path only) from a trained "
            "model and save it with torch.export (load with torch.export.load; its output is the class score "
            "(B,)). The model comes from an MLflow run's final checkpoint (--run-id) or a checkpoint file. "
            "With --refit, the output row is refit to the pruned network's own features of training samples "
            "(the checkpoint's data), and the score becomes the class's log-odds; same branches, same speed. "
            "With --early-exit instead of --class: the network that stops for each sample at the first coded "
            "block whose Eq. 7 confidence reaches a threshold, BatchNorms folded, saved as one PT2 archive of "
            "torch.export programs, one per segment between exits (load with "
            "coded_resnext.early_exit.export.load_early_exit; it returns prediction and exit_block). The "
            "threshold is the least-compute point of the run's validation early-exit curve that keeps "
            "--at-accuracy of the full accuracy, or --threshold. The file is also logged to the run."
        ),
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--run-id", help="MLflow run whose final checkpoint to use")
    source.add_argument("--checkpoint", type=Path, help="checkpoint file (runs/checkpoints/<hash>/epoch-NNNN.pt)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--class", dest="class_index", type=int, help="class index k of the binary classifier")
    what.add_argument("--early-exit", action="store_true", help="the early-exit network instead (see above)")
    p.add_argument(
        "--at-accuracy",
        type=float,
        default=None,
        metavar="A",
        help="--early-exit: keep this share of the full validation accuracy, in (0, 1] (default 0.99)",
    )
    p.add_argument(
        "--threshold",
        default=None,
        metavar="T",
        help="--early-exit: this confidence threshold instead (one number, inf, or one per coded block, comma-separated)",
    )
    p.add_argument("--out", type=Path, required=True, help="output file, e.g. class3.pt2 or early_exit.pt2")
    p.add_argument(
        "--refit",
        action="store_true",
        help="refit the output row on training samples of the checkpoint's data set (better F1; see refit.py)",
    )
    p.add_argument(
        "--refit-samples",
        type=int,
        default=None,
        metavar="S",
        help="training samples for --refit (default: the run's eval.binary_fit_samples)",
    )
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: sqlite file under runs/)")
    p.add_argument("--register", metavar="NAME", default=None, help="also register it in the MLflow model registry")
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    import torch

    from coded_resnext import extract_binary_classifier, parameter_count
    from coded_resnext.orchestration.build import model_from_checkpoint
    from coded_resnext.orchestration.checkpoint import load_checkpoint
    from coded_resnext.orchestration.operating_point import check_at_accuracy, load_run_checkpoint, parse_threshold
    from coded_resnext.orchestration.store import open_store
    from coded_resnext.orchestration.tracking import RunTracker

    if not args.out.parent.exists():
        raise UserError(f"output directory {args.out.parent} does not exist; create it first")
    if args.refit_samples is not None and (not args.refit or args.refit_samples < 10):
        raise UserError(f"--refit-samples {args.refit_samples}: give it with --refit, and at least 10")
    if not args.early_exit and (args.at_accuracy is not None or args.threshold is not None):
        raise UserError(
            "--at-accuracy and --threshold choose an early-exit operating point; give them with --early-exit"
        )
    if args.early_exit and args.refit:
        raise UserError("--refit is for a binary classifier (--class), not --early-exit")
    if args.at_accuracy is not None and args.threshold is not None:
        raise UserError("give --at-accuracy or --threshold, not both")
    threshold = parse_threshold(args.threshold) if args.threshold is not None else None
    if args.at_accuracy is not None:
        check_at_accuracy(args.at_accuracy)
    # the store only where the command reads or writes it: a checkpoint extracted to a file needs none
    # (opening one would create the default store in the working directory)
    uri = open_store(args.tracking_uri) if args.run_id or args.register or args.early_exit else None
    if args.run_id:
        from mlflow.tracking import MlflowClient

        state = load_run_checkpoint(MlflowClient(uri), args.run_id, uri)
        source = f"run {args.run_id}"
    else:
        state = load_checkpoint(args.checkpoint)
        source = str(args.checkpoint)
    model = model_from_checkpoint(state)
    if args.early_exit:
        from coded_resnext.orchestration.commands.extract_early_exit import extract_early_exit

        return extract_early_exit(model, state, args, uri, threshold)
    if not 0 <= args.class_index < model.num_classes:
        raise UserError(f"--class {args.class_index} out of range; the model has classes 0..{model.num_classes - 1}")
    binary = extract_binary_classifier(model, args.class_index)
    how = ""
    if args.refit:
        binary, samples = _refit(model, binary, state, args.refit_samples)
        how = f", output row refit on {samples:,} training samples"
    size = state["image_size"]
    example = torch.randn(2, model.config.in_chans, size, size)
    batch = torch.export.Dim("batch", min=1)
    exported = torch.export.export(binary, (example,), dynamic_shapes=({0: batch},))
    torch.export.save(exported, args.out)
    fraction = parameter_count(binary) / parameter_count(model)
    print(
        f"wrote {args.out}: class {args.class_index}, {parameter_count(binary):,} parameters "
        f"({fraction:.1%} of the model){how}"
    )
    if args.register:
        tracker = RunTracker(
            uri,
            "coded-resnext-extracted",
            run_name=f"binary-class-{args.class_index}",
            tags={Tag.ROLE: Role.EXTRACT, Tag.SOURCE_CHECKPOINT: source},
        )
        tracker.log_model(binary, example, name="binary_classifier", registered_model_name=args.register)
        tracker.finish()
        print(f"registered as {args.register!r} in the MLflow model registry at {uri}")
    return 0


def _refit(model, binary, state: dict, samples: int | None):
    """The classifier with its output row refit on the checkpoint's own training data (``refit.py``), as
    the run's evaluation suite refit it: the same fit samples, negatives and draws."""
    import torch
    import yaml

    from coded_resnext.datasets import build_dataset
    from coded_resnext.evaluation import collect
    from coded_resnext.evaluation.binary import fit_binary_classifiers
    from coded_resnext.evaluation.refit import with_score_row
    from coded_resnext.evaluation.suite import binary_fit_set
    from coded_resnext.orchestration.build import data_spec, eval_loader, suite_data
    from coded_resnext.orchestration.config import config_from_dict

    cfg = config_from_dict(yaml.safe_load(state["config"]))
    settings = dataclasses.replace(cfg.eval, binary_fit_samples=samples or cfg.eval.binary_fit_samples)
    bundle = build_dataset(data_spec(cfg))
    fit_set = binary_fit_set(suite_data(bundle, cfg, test=False), settings, cfg.seed)
    loader = lambda dataset: eval_loader(dataset, cfg)  # noqa: E731
    cpu = torch.device("cpu")
    (fitted,) = fit_binary_classifiers(
        model,
        binary.classes,
        fit_set,
        loader,
        collect(model, loader(fit_set), cpu),
        cpu,
        negatives_per_positive=settings.binary_fit_negatives_per_positive,
        draws=settings.binary_fit_draws,
        seed=cfg.seed,
    )
    if fitted.refit_row is None:
        raise UserError(
            f"--refit: the {len(fit_set)} training samples hold {fitted.fit_positives} of class {binary.classes[0]} "
            "and need positives and negatives; raise --refit-samples"
        )
    return with_score_row(binary, *fitted.refit_row), len(fit_set)
