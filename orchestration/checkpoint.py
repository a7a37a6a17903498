"""Checkpoints of plain tensors and primitives: checksummed, written atomically, read with ``weights_only=True``.

A checkpoint file holds ``{"format", "sha256", "state"}``: the state (model, optimizer, RNG, config, ...)
and the SHA-256 of its canonical content (every key, every primitive, every tensor's dtype, shape and
bytes). Loading recomputes the digest, so a truncated or bit-flipped file is detected instead of
silently resuming from garbage; ``latest_checkpoint`` then falls back to the previous checkpoint and
says which file was bad.

Writing goes to a temporary file in the same directory, fsynced, then renamed into place: a crash or a
full disk never leaves a half-written file under a checkpoint's name, and the previous checkpoint is
untouched. Loading never unpickles arbitrary objects (``torch.load(weights_only=True)``), so a file
crafted to run code when unpickled is rejected, not executed. String values pass through
``redaction.redact`` on the way in: the config inside a checkpoint (which is also logged as an MLflow
artifact) never carries tracking credentials.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import random
import re
import struct
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from coded_resnext import checkpoint_state
from coded_resnext.orchestration.build import saved_schemes
from coded_resnext.orchestration.config import RunConfig
from coded_resnext.orchestration.errors import UserError
from coded_resnext.orchestration.redaction import redact

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^epoch-(\d{4,})\.pt$")
KEEP_LAST = 2
FORMAT = "coded-resnext-checkpoint/1"


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


# ---- content digest -----------------------------------------------------------------------------
def _feed(h: Any, obj: Any) -> None:
    """Hash ``obj`` canonically: type tags and lengths delimit every item, so no two states collide
    by concatenation."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, dict):
        h.update(b"D" + struct.pack("<q", len(obj)))
        for key, value in obj.items():
            _feed(h, key)
            _feed(h, value)
    elif isinstance(obj, list | tuple):
        h.update((b"L" if isinstance(obj, list) else b"U") + struct.pack("<q", len(obj)))
        for value in obj:
            _feed(h, value)
    elif isinstance(obj, str):
        data = obj.encode()
        h.update(b"S" + struct.pack("<q", len(data)) + data)
    elif isinstance(obj, bytes):
        h.update(b"Y" + struct.pack("<q", len(obj)) + obj)
    elif isinstance(obj, bool):  # before int: bool is an int
        h.update(b"B1" if obj else b"B0")
    elif isinstance(obj, int):
        h.update(f"I{obj};".encode())
    elif isinstance(obj, float):
        h.update(f"F{obj.hex()};".encode())
    elif obj is None:
        h.update(b"N")
    else:
        h.update(f"O{type(obj).__module__}.{type(obj).__qualname__}:{obj!r};".encode())


def state_digest(state: Any) -> str:
    """SHA-256 of a checkpoint state's canonical content (what ``load_checkpoint`` verifies)."""
    h = hashlib.sha256()
    _feed(h, state)
    return h.hexdigest()


def _redact_strings(obj: Any) -> Any:
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {key: _redact_strings(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_redact_strings(value) for value in obj]
    if isinstance(obj, tuple):
        return tuple(_redact_strings(value) for value in obj)
    return obj


# ---- writing ------------------------------------------------------------------------------------
def _write_failure(final: Path, err: BaseException) -> CheckpointError:
    reason = getattr(err, "strerror", None) or (str(err).splitlines() or [type(err).__name__])[0]
    disk_full = getattr(err, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
    fix = (
        f"free space on the disk holding {final.parent} (or pass --checkpoint-root on another disk), then rerun with --resume"
        if disk_full
        else f"check that {final.parent} is writable, then rerun with --resume"
    )
    problem = "disk full" if disk_full else reason
    return CheckpointError(f"could not write checkpoint {final} ({problem}); the previous checkpoint is intact; {fix}")


def save_checkpoint(directory: Path, epoch: int, state: dict[str, Any]) -> Path:
    """Write ``state`` as ``epoch-NNNN.pt`` in ``directory`` atomically; keep the last ``KEEP_LAST``."""
    directory.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(directory, epoch)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    state = _redact_strings(state)
    _remove_stale_temporaries(directory)
    try:
        # Through a Python file object: a full disk then surfaces as OSError(ENOSPC), where torch's
        # own path writer reports only "unexpected pos".
        with open(tmp, "wb") as fh:
            torch.save({"format": FORMAT, "sha256": state_digest(state), "state": state}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        _fsync_directory(directory)
    except (OSError, RuntimeError) as err:
        tmp.unlink(missing_ok=True)
        raise _write_failure(final, err) from None
    for old in list_checkpoints(directory)[:-KEEP_LAST]:
        old.unlink(missing_ok=True)
    return final


def _remove_stale_temporaries(directory: Path) -> None:
    """Delete temporaries left by writers that were killed mid-write (their process is gone)."""
    for leftover in directory.glob(".epoch-*.pt.tmp-*"):
        try:
            os.kill(int(leftover.name.rsplit("-", 1)[1]), 0)
        except (ValueError, ProcessLookupError):
            leftover.unlink(missing_ok=True)
        except PermissionError:  # alive, another user's
            pass


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---- reading ------------------------------------------------------------------------------------
def load_checkpoint(path: Path) -> dict[str, Any]:
    """The verified state in ``path``; a ``CheckpointError`` naming the file if it is missing,
    unreadable, not a checkpoint, holds anything but tensors and primitives, or fails its checksum."""
    path = Path(path)
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols; the error says enough
            warnings.simplefilter("ignore")
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint; check the path") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a directory, expected a checkpoint file (epoch-NNNN.pt)") from None
    except Exception as err:  # truncated zip, garbage, or a pickle asking for a forbidden global
        kind = "holds pickled objects other than tensors" if "weights_only" in str(err) else "unreadable"
        raise CheckpointError(
            f"{path}: corrupt or not a checkpoint ({kind}: {type(err).__name__}); "
            "use the previous checkpoint or retrain"
        ) from None
    if not isinstance(blob, dict):
        raise CheckpointError(f"{path}: not a checkpoint (holds a {type(blob).__name__}, expected a mapping)")
    if blob.get("format") != FORMAT:
        if "format" in blob or "sha256" in blob:
            raise CheckpointError(f"{path}: unknown checkpoint format {blob.get('format')!r}; expected {FORMAT!r}")
        return blob  # written before checksums existed: readable (weights only) but unverified
    state = blob.get("state")
    if not isinstance(state, dict) or state_digest(state) != blob.get("sha256"):
        raise CheckpointError(
            f"{path}: checksum mismatch (the file is corrupt); use the previous checkpoint or retrain"
        )
    return state


def load_latest_checkpoint(directory: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint in ``directory`` that loads and verifies, with its state. Corrupt newer
    ones are skipped, a warning each. None when there is no checkpoint; when every one
    is corrupt, a single ``CheckpointError`` naming them and the fix (nothing is said before it)."""
    found = list_checkpoints(directory)
    skipped: list[str] = []
    bad: list[str] = []
    for i in range(len(found) - 1, -1, -1):
        path = found[i]
        try:
            state = load_checkpoint(path)
        except CheckpointError as err:
            bad.append(path.name)
            if i > 0:
                skipped.append(f"{err}; falling back to {found[i - 1].name}")
            continue
        for line in skipped:
            logger.warning(line)
        return path, state
    if bad:
        raise CheckpointError(
            f"every checkpoint in {directory} is corrupt ({', '.join(reversed(bad))}); "
            "delete the directory to start over"
        )
    return None


def latest_checkpoint(directory: Path) -> Path | None:
    """The newest checkpoint in ``directory`` that verifies, or None when there is none. A corrupt newer
    one is skipped, and said so, so ``load_checkpoint(latest_checkpoint(d))`` resumes from the last good
    state; a ``CheckpointError`` when every checkpoint there is corrupt."""
    found = load_latest_checkpoint(directory)
    return found[0] if found else None


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "python": json.dumps(random.getstate()),
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    version, internal, gauss = json.loads(state["python"])
    random.setstate((version, tuple(internal), gauss))


def training_state(model, opt, scheduler, epoch: int, run_id: str, cfg: RunConfig, image_size: int) -> dict[str, Any]:
    return {
        **checkpoint_state(model),  # the weights and the model's own config: the library loads it alone
        "optimizer": opt.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,
        "run_id": run_id,
        "rng": rng_state(),
        "config": cfg.to_yaml(),
        "experiment_hash": cfg.experiment_hash,
        "num_classes": model.num_classes,
        "in_chans": model.config.in_chans,
        "image_size": image_size,
        "schemes": json.dumps(saved_schemes(model)),
    }
