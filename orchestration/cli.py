"""The ``coded-resnext`` command line: one entry point, one subcommand per job.

Users' mistakes (bad files, impossible requests, unknown names) end in a one-line
``coded-resnext: error: ...`` and exit status 2, never a traceback. Progress goes to standard error through
the ``coded_resnext`` loggers (``logs.py``; ``-v`` for more, ``-q`` for warnings only); a command's result
goes to standard output.

The CLI layer (this module and ``commands/``) imports what a command needs inside the command's ``_run``,
so ``coded-resnext --help`` and a mistyped argument do not pay for importing Ray, MLflow or matplotlib.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from coded_resnext.orchestration import logs
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
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more detail on standard error")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines; warnings and errors only")
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
    logs.configure(logs.level_for(args.verbose, args.quiet))
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
