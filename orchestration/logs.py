"""Where progress and diagnostics go: the ``coded_resnext`` loggers, configured once by the CLI.

Every module logs through ``logging.getLogger(__name__)`` (the library's modules too: they are all under
``coded_resnext``); nothing threads a print callback through its call chain. ``configure`` gives that
logger tree one handler on standard error: progress (INFO) as plain lines, warnings and errors prefixed
``coded-resnext: warning:``; ``-v`` adds DEBUG lines, ``-q`` keeps warnings and errors only. A command's
result (a table, the paths it wrote) is its standard output, printed by the command itself.

Processes the CLI did not start (Ray Train workers, Tune trials) configure themselves the same way where
their output is wanted (``ray_train.worker_loop``); a library user configures ``logging`` as they like.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

ROOT = "coded_resnext"
QUIET, NORMAL, VERBOSE = logging.WARNING, logging.INFO, logging.DEBUG


class _Format(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"coded-resnext: {record.levelname.lower()}: {message}"
        return message


def level_for(verbose: int = 0, quiet: bool = False) -> int:
    """The level of ``-v`` (repeatable) and ``-q``."""
    if quiet:
        return QUIET
    return VERBOSE if verbose else NORMAL


def configure(level: int = NORMAL, stream: TextIO | None = None) -> None:
    """One handler on the ``coded_resnext`` loggers, writing to ``stream`` (standard error as it is now, so a
    test capturing it sees the lines); a second call replaces the first's handler."""
    logger = logging.getLogger(ROOT)
    for handler in [h for h in logger.handlers if getattr(h, "_coded_resnext", False)]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_Format("%(message)s"))
    handler._coded_resnext = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False  # Ray and MLflow configure the root logger their own way
