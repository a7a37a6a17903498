"""The ``coded-resnext`` command line: one entry point, one subcommand per job.

Users' mistakes (bad files, impossible requests, unknown names) end in a one-line
``coded-resnext: error: ...`` and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from coded_resnext.orchestration.commands import (
    ablate,
    bench,
    codes,
    evaluate,
    extract,
    models,
    report,
    simulate,
    train,
    tune,
)
from coded_resnext.orchestration.errors import USER_ERRORS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coded-resnext",
        description=(
            "Coded ResNeXt: class-specific information paths in ResNeXt. Generate and check coding "
            "schemes, list model presets, benchmark the model."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (train, tune, ablate, evaluate, extract, codes, models, bench, report, simulate):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # MLflow 3 reports usage over the network by default; a research tool should not phone home.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # a run's checkpoint or curve is one small file; a progress bar per download is noise
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except USER_ERRORS as err:
        print(f"coded-resnext: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("coded-resnext: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
