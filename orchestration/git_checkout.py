"""The git checkout this code runs from (not the caller's working directory): its commit and state, for a
run's provenance tags and artifacts."""

from __future__ import annotations

import subprocess
from pathlib import Path

_SOURCE = Path(__file__).resolve().parents[1]  # the checkout this code runs from, not the caller's cwd


def git(*args: str) -> str | None:
    """``git ARGS`` in the source checkout of this package; None outside a git checkout or without git."""
    try:
        out = subprocess.run(["git", *args], cwd=_SOURCE, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_commit() -> str:
    return (git("rev-parse", "HEAD") or "").strip() or "unknown"
