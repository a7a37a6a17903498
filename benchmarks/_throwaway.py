"""Shared by the benchmarks that train through Ray and MLflow: measure inside a throwaway directory
(their stores and checkpoints land there and are removed afterwards), then print the figures and write
them to ``--json``, a path taken relative to where the benchmark was started."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def run_in_throwaway_dir(prefix: str, measure: Callable[[Path], dict], json_out: Path | None) -> dict:
    json_out = json_out.resolve() if json_out else None  # before the chdir below
    started_in = Path.cwd()
    # ignore_cleanup_errors: a Ray log file still being closed must not hide the figures measured
    with tempfile.TemporaryDirectory(prefix=prefix, ignore_cleanup_errors=True) as tmp:
        os.chdir(tmp)  # Ray and MLflow write their files under the working directory
        try:
            figures = measure(Path(tmp))
        finally:
            os.chdir(started_in)
    print(json.dumps(figures, indent=1))
    if json_out:
        json_out.write_text(json.dumps(figures, indent=1))
    return figures
