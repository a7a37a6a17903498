"""What a run was made from, recorded with it: the software environment, the code, and the data.

- environment: tags ``python_version``, ``torch_version``, ``cuda_version`` and ``cudnn_version`` (where a GPU is
  visible), ``gpu``, ``platform``; the artifact ``environment/requirements.txt`` (every installed
  distribution, ``name==version``, as ``pip freeze`` would list it);
- code: the commit (``git_commit``, set by the tracker), ``git_dirty``, and when dirty the artifact
  ``environment/git_diff.patch`` (``git diff HEAD`` of the checkout this package runs from, plus the names
  of untracked files);
- data: one MLflow dataset input per split (``log_input``: context ``train`` / ``val``) named after the
  dataset, whose digest covers the samples' content and the indices the split used, so two runs on
  other files, another hold-out seed or another ``limit_train`` show different datasets in the UI. The
  profile holds the size, the two digests apart and how the content was digested.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mlflow.entities import Dataset, DatasetInput, InputTag

from coded_resnext.orchestration.git_checkout import git
from coded_resnext.orchestration.tracking import RunTracker

CONTENT_BUDGET = 512 * 2**20  # image files above this in total are digested by name and size, not content
MAX_DIFF = 5 * 2**20  # a larger diff is cut (and says so)


# ---- environment ------------------------------------------------------------------------------------
def environment_tags() -> dict[str, str]:
    tags = {
        "python_version": platform.python_version(),
        "torch_version": torch.__version__,
        "platform": platform.platform(terse=True),
    }
    if torch.cuda.is_available():  # the versions torch was built with matter only where they run
        tags["cuda_version"] = torch.version.cuda or torch.version.hip or "unknown"
        tags["gpu"] = torch.cuda.get_device_name(0)
        if torch.backends.cudnn.is_available():
            tags["cudnn_version"] = str(torch.backends.cudnn.version())
    return tags


def requirements() -> str:
    """Every installed distribution as ``name==version``, sorted, one a line."""
    found = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[name.lower()] = f"{name}=={dist.version}"
    return "\n".join(found[k] for k in sorted(found)) + "\n"


def git_state() -> tuple[bool | None, str]:
    """(dirty, the diff against HEAD plus untracked file names); (None, "") outside a git checkout."""
    status = git("status", "--porcelain")
    if status is None:
        return None, ""
    if not status.strip():
        return False, ""
    diff = git("diff", "HEAD", "--no-color") or ""
    untracked = [line[3:] for line in status.splitlines() if line.startswith("??")]
    if untracked:
        diff += "\n# untracked files (not in the diff):\n" + "".join(f"#   {name}\n" for name in untracked)
    if len(diff) > MAX_DIFF:
        diff = diff[:MAX_DIFF] + f"\n# ... cut at {MAX_DIFF} characters\n"
    return True, diff


# ---- data ----------------------------------------------------------------------------------------------
def _content_digest(base: Any) -> tuple[str, str]:
    """(digest, how) of a raw dataset's samples: array bytes, or image files (content, or names and
    sizes past ``CONTENT_BUDGET``); labels are always included."""
    h = hashlib.sha256()
    how = "labels only"
    arrays = [getattr(base, name, None) for name in ("images", "data")]
    array = next((a for a in arrays if isinstance(a, np.ndarray | torch.Tensor)), None)
    samples = getattr(base, "samples", None)
    if array is not None:
        data = array.numpy() if isinstance(array, torch.Tensor) else array
        h.update(f"{data.dtype}{data.shape}".encode())
        h.update(np.ascontiguousarray(data).data)
        how = "content"
    elif isinstance(samples, list) and samples and isinstance(samples[0][0], str):
        paths = [Path(p) for p, _ in samples]
        sizes = [p.stat().st_size for p in paths]
        root = Path(getattr(base, "root", "/"))
        content = sum(sizes) <= CONTENT_BUDGET
        for path, size in zip(paths, sizes, strict=True):
            h.update(f"{path.relative_to(root) if path.is_relative_to(root) else path}\0{size}\0".encode())
            if content:
                h.update(path.read_bytes())
        how = "content" if content else "file names and sizes"
    targets = getattr(base, "targets", None)
    if targets is not None:
        h.update(np.asarray(targets, dtype=np.int64).tobytes())
    return h.hexdigest(), how


def split_input(name: str, split: str, subset: Any, source: str, cache: dict[int, tuple[str, str]]) -> DatasetInput:
    """The MLflow dataset input of one split: a ``TransformedSubset`` (raw base + indices) or any dataset."""
    base = getattr(subset, "base", subset)
    if id(base) not in cache:  # train and val often share one raw dataset: digest it once
        cache[id(base)] = _content_digest(base)
    content, how = cache[id(base)]
    indices = getattr(subset, "indices", None)
    index_bytes = np.asarray(indices if indices is not None else np.arange(len(subset)), dtype=np.int64).tobytes()
    index_digest = hashlib.sha256(index_bytes).hexdigest()
    digest = hashlib.sha256(f"{content}:{index_digest}".encode()).hexdigest()[:32]
    profile = {
        "num_samples": len(subset),
        "content_digest": content,
        "content_digested_by": how,
        "indices_digest": index_digest,
    }
    dataset = Dataset(
        name=name,
        digest=digest,
        source_type="local",
        source=json.dumps({"uri": source}),
        profile=json.dumps(profile),
    )
    return DatasetInput(dataset, tags=[InputTag("mlflow.data.context", split)])


def data_inputs(data_name: str, root: str | None, splits: dict[str, Any]) -> list[DatasetInput]:
    cache: dict[int, tuple[str, str]] = {}
    source = str(Path(root).resolve()) if root else data_name
    return [
        split_input(data_name, split, subset, source, cache) for split, subset in splits.items() if subset is not None
    ]


# ---- all of it -------------------------------------------------------------------------------------------
def log_provenance(tracker: RunTracker, data_name: str, root: str | None, splits: dict[str, Any]) -> None:
    """Tags, ``environment/`` artifacts and dataset inputs of a run (rank 0, once per run)."""
    dirty, diff = git_state()
    tags = environment_tags()
    if dirty is not None:
        tags["git_dirty"] = str(dirty).lower()
    tracker.set_tags(tags)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "environment"
        folder.mkdir()
        (folder / "requirements.txt").write_text(requirements())
        if diff:
            (folder / "git_diff.patch").write_text(diff)
        tracker.log_artifacts(folder, "environment")
    tracker.log_inputs(data_inputs(data_name, root, splits))
