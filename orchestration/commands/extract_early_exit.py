"""``coded-resnext extract --early-exit``: the early-exit network at an operating point, to a PT2 archive,
logged to its run and optionally registered (an MLflow pyfunc model around the archive)."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from coded_resnext.orchestration.errors import UserError
from coded_resnext.orchestration.operating_point import OperatingPoint
from coded_resnext.results.schema import Role, Tag

DEFAULT_AT_ACCURACY = 0.99


def extract_early_exit(model, state: dict, args: argparse.Namespace, uri: str, threshold) -> int:
    import torch
    from mlflow.tracking import MlflowClient

    from coded_resnext import EarlyExit
    from coded_resnext.early_exit.export import export_early_exit
    from coded_resnext.extraction.fusion import fuse_for_inference
    from coded_resnext.orchestration.operating_point import check_threshold_count, operating_point, run_curve

    if not model.coded_blocks:
        raise UserError("this model has no coded blocks (a control run?): it has no early exits")
    client = MlflowClient(uri)
    run_id = args.run_id or state.get("run_id")
    in_store = run_id is not None and _run_exists(client, run_id)
    point: OperatingPoint | None = None
    if threshold is None:
        if not in_store:
            raise UserError(
                f"the checkpoint's run {run_id} is not in the tracking store {uri}, so its early-exit curve is not "
                "either; give --threshold, or --tracking-uri of the store that holds the run"
            )
        point = operating_point(run_curve(client, run_id), args.at_accuracy or DEFAULT_AT_ACCURACY)
        threshold = point.threshold
    check_threshold_count(threshold, len(model.coded_blocks))

    early = EarlyExit(fuse_for_inference(model), threshold)
    size = state["image_size"]
    example = torch.randn(2, model.config.in_chans, size, size)
    extra = {"run_id": run_id, "operating_point": point.to_dict() if point else None}
    export_early_exit(early, example, args.out, extra)
    print(f"wrote {args.out}: early exit with thresholds {_fmt(early.thresholds)}{_describe(point)}")
    if in_store:
        folder = _artifact_folder(point, early.thresholds)
        _log_to_run(uri, run_id, args.out, folder, extra)
        print(f"logged to run {run_id} as artifacts {folder}/")
    else:
        print(f"run {run_id} is not in {uri}: the file was not logged to it")
    if args.register:
        _register(uri, run_id if in_store else None, args.out, example, args.register)
        print(f"registered as {args.register!r} in the MLflow model registry at {uri}")
    return 0


def _run_exists(client, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(run_id)
    except MlflowException:
        return False
    return True


def _fmt(thresholds: list[float]) -> str:
    unique = set(thresholds)
    return f"{thresholds[0]:.4g}" if len(unique) == 1 else "[" + ", ".join(f"{t:.4g}" for t in thresholds) + "]"


def _describe(point: OperatingPoint | None) -> str:
    if point is None:
        return ""
    return (
        f" (the least-compute point keeping {point.at_accuracy:.0%} of the full validation accuracy: "
        f"accuracy {point.accuracy:.4f} vs {point.full_accuracy:.4f}, {point.compute_fraction:.1%} of the FLOPs, "
        f"{point.exit_rate:.1%} of samples exit early)"
    )


def _artifact_folder(point: OperatingPoint | None, thresholds: list[float]) -> str:
    if point is not None:
        return f"early_exit/at-accuracy-{point.at_accuracy:g}"
    return "early_exit/threshold-" + "_".join(f"{t:g}" for t in thresholds)


def _log_to_run(uri: str, run_id: str, archive: Path, folder: str, extra: dict) -> None:
    from coded_resnext.orchestration.tracking import RunTracker

    tracker = RunTracker.attach(uri, run_id)  # the run's status is left alone
    with tempfile.TemporaryDirectory() as tmp:
        info = Path(tmp) / "operating_point.json"
        info.write_text(json.dumps(extra, indent=1))
        tracker.log_artifact(archive, folder)
        tracker.log_artifact(info, folder)
        tracker.close()  # uploaded before the temporary directory goes


def _register(uri: str, run_id: str | None, archive: Path, example, name: str) -> None:
    """An MLflow pyfunc model around the archive (torch.export cannot hold the data-dependent routing as
    one program, so ``mlflow.pytorch``'s pt2 format does not fit), logged to the source run when the
    store has it, else to a run of the experiment ``coded-resnext-extracted``, and registered."""
    from coded_resnext.orchestration.early_exit_pyfunc import EarlyExitPyfunc
    from coded_resnext.orchestration.tracking import RunTracker

    output = EarlyExitPyfunc.from_archive(archive).predict(None, example.numpy())
    if run_id is None:
        tracker = RunTracker(uri, "coded-resnext-extracted", run_name="early-exit", tags={Tag.ROLE: Role.EXTRACT})
    else:
        tracker = RunTracker.attach(uri, run_id)
    tracker.log_pyfunc_model(
        EarlyExitPyfunc(),
        {"early_exit": str(archive)},
        example.numpy(),
        output,
        name="early_exit_model",
        registered_model_name=name,
    )
    if run_id is None:
        tracker.finish()
    else:
        tracker.close()
