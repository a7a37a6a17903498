"""Checkpoints of plain tensors and primitives: written atomically, read with ``weights_only=True``.

A checkpoint is written to a temporary file in the same directory and renamed into place, so a crash
or a full disk never leaves a half-written file under a checkpoint's name. Loading never unpickles
arbitrary objects.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from orchestration.errors import UserError

_NAME = re.compile(r"^epoch-(\d{4,})\.pt$")
KEEP_LAST = 2


class CheckpointError(UserError):
    pass


def checkpoint_path(directory: Path, epoch: int) -> Path:
    return directory / f"epoch-{epoch:04d}.pt"


def list_checkpoints(directory: Path) -> list[Path]:
    """Checkpoints in ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def save_checkpoint(directory: Path, epoch: int, state: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(directory, epoch)
    tmp = final.with_suffix(f".tmp-{os.getpid()}")
    try:
        torch.save(state, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(
            f"could not write checkpoint {final} ({err.strerror or err}); the previous checkpoint is intact"
        ) from None
    for old in list_checkpoints(directory)[:-KEEP_LAST]:
        old.unlink(missing_ok=True)
    return final


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as err:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__})") from None


def latest_checkpoint(directory: Path) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1] if found else None
