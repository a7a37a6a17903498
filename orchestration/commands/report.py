"""``coded-resnext report``: Parquet tables, Pareto front, figures and an HTML/Markdown report of an experiment."""

from __future__ import annotations

import argparse
from pathlib import Path

from coded_resnext.orchestration.commands.options import check_option
from coded_resnext.orchestration.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="tables, Pareto front, plots and a report of an experiment's runs",
        description=(
            "Read the finished runs of an MLflow experiment (a sweep, an ablation, or single runs) and write, "
            "under --out: Parquet tables (runs, per-class binary classifiers, early-exit curves, per-epoch "
            "histories; re-running appends only new runs), the Pareto front, PNG figures, report.md and a "
            "self-contained report.html. The report is also attached to the sweep's parent run."
        ),
    )
    p.add_argument("experiment", help="MLflow experiment name (or id)")
    p.add_argument("--out", type=Path, required=True, help="output directory (created if missing)")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: sqlite file under runs/)")
    p.add_argument("--parent", default=None, metavar="RUN_ID", help="only the trials of this sweep or ablation")
    p.add_argument(
        "--objective",
        dest="objectives",
        action="append",
        default=[],
        metavar="METRIC:max|min",
        help="a Pareto objective (repeatable; default: val/accuracy:max binary/param_fraction:min "
        "early_exit/compute_at_99pct_accuracy:min)",
    )
    p.add_argument("--top", type=int, default=10, help="rows in the best-runs table (default 10)")
    p.add_argument("--no-attach", action="store_true", help="do not log the report to the parent run")
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from coded_resnext.orchestration.store import open_store
    from coded_resnext.results.pareto import DEFAULT_OBJECTIVES, parse_objective
    from coded_resnext.results.report import ReportOptions, build_report

    try:
        objectives = tuple(parse_objective(o) for o in args.objectives) or DEFAULT_OBJECTIVES
    except ValueError as err:
        raise UserError(str(err)) from err
    check_option("--top", args.top)
    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out {args.out}: exists and is not a directory")
    options = ReportOptions(
        tracking_uri=open_store(args.tracking_uri),
        parent_run_id=args.parent,
        objectives=objectives,
        top=args.top,
    )
    report = build_report(args.experiment, args.out, options)
    attached = attach_report(report, options.tracking_uri) if not args.no_attach else []
    for note in report.notes:
        print(f"note: {note}")
    written = ", ".join(f"{name} +{w.rows_written}" for name, w in report.parquet.items())
    print(f"{report.runs} runs; {len(report.figures)} figures; Parquet rows appended: {written}")
    print(f"report: {report.html}  (and {report.markdown.name})")
    if attached:
        print(f"attached to parent run(s): {', '.join(attached)}")
    return 0


def attach_report(report, tracking_uri: str) -> list[str]:
    """Log the report (Markdown, HTML, figures) to the parent run of its runs, through the tracker
    (retries, buffering); the parent's status is left as it is. Returns the runs it was attached to; a
    report over several parents is attached to none (and says so in its notes)."""
    from coded_resnext.orchestration.store import TrackingError
    from coded_resnext.orchestration.tracking import RunTracker

    targets = report.parent_runs
    if len(targets) > 1:
        report.notes.append(f"not attached: runs come from {len(targets)} parent runs; pass --parent RUN_ID")
        return []
    attached = []
    for parent in targets:
        try:
            writer = RunTracker.attach(tracking_uri, parent, flush_timeout=120)
            writer.log_artifact(report.markdown, "report")
            writer.log_artifact(report.html, "report")
            writer.log_artifacts(report.out_dir / "plots", "report/plots")
            writer.close()
            attached.append(parent)
        except (TrackingError, OSError) as err:
            report.notes.append(f"could not attach the report to parent run {parent}: {err}")
    return attached
