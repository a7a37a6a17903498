"""Save an ``EarlyExit`` as one deployable file, and load it back.

Why segments and not one program: ``torch.export`` traces one static graph, and an early exit's batch
shrinks by an amount the data decides. Exported whole, the exit decision (``if any sample leaves``) is
a guard on a data-dependent value, and without that branch every later op (the decoder's ``cdist``,
the energy code's layout checks, every conv) would have to run on a batch of unbacked size, which
export cannot guard on; ``torch.cond`` does not help, since its branches must return the same shapes.
So each segment (``ExitSegment``: blocks up to a coded block and its decoder; ``ExitTail``: the rest and
the head) is exported on its own with a dynamic batch dimension, and the routing between them (about
twenty lines, ``early_exit.routing.route``) stays in Python, the same function ``EarlyExit`` runs.

The file is one PT2 archive (``torch.export.pt2_archive``, the format ``torch.export.save`` and
AOTInductor packages use) holding every segment's program and a JSON manifest (thresholds, classes,
input shape). ``load_early_exit`` needs only torch and this package; no pickled code is loaded.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.export import Dim

from coded_resnext.early_exit.network import EarlyExit
from coded_resnext.early_exit.routing import EarlyExitOutput, SegmentOutput, route
from coded_resnext.early_exit.thresholds import EarlyExitError, check_thresholds

FORMAT = "coded-resnext-early-exit"
FORMAT_VERSION = 1
MANIFEST = "early_exit.json"


def export_early_exit(early_exit: EarlyExit, example: Tensor, path: str | Path, extra: dict | None = None) -> Path:
    """Write ``early_exit`` to ``path`` (a ``.pt2`` archive); ``example`` is one input batch (any size >= 2,
    so the batch dimension is traced as dynamic, not specialized to 1). ``extra`` goes into the manifest
    (e.g. where the threshold came from)."""
    from torch.export.pt2_archive._package import package_pt2

    if example.shape[0] < 2:
        example = example.expand(2, *example.shape[1:]).contiguous(memory_format=_layout(example))
    batch = Dim("batch", min=1)
    programs = {}
    x = example
    with torch.no_grad():
        for i, segment in enumerate(early_exit.segments):
            programs[f"segment_{i}"] = torch.export.export(_AsTuple(segment), (x,), dynamic_shapes=({0: batch},))
            x = segment(x).features
        programs["tail"] = torch.export.export(early_exit.tail, (x,), dynamic_shapes=({0: batch},))
    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "segments": len(early_exit.segments),
        "thresholds": early_exit.thresholds,
        "num_classes": early_exit.num_classes,
        "input_shape": list(example.shape[1:]),
        **(extra or {}),
    }
    path = Path(path)
    package_pt2(path, exported_programs=programs, extra_files={MANIFEST: json.dumps(manifest)})
    return path


class ExportedEarlyExit(nn.Module):
    """An early exit loaded from its archive: the exported segments under ``EarlyExit``'s routing.
    ``forward`` returns ``EarlyExitOutput(prediction, exit_block)``, as ``EarlyExit`` does."""

    def __init__(self, segments: Sequence[nn.Module], tail: nn.Module, thresholds: list[float], manifest: dict):
        super().__init__()
        self.segments = nn.ModuleList(segments)
        self.tail = tail
        self.thresholds = thresholds
        self.manifest = manifest

    @torch.no_grad()
    def forward(self, x: Tensor) -> EarlyExitOutput:
        return route(self.segments, self.tail, self.thresholds, x)

    def extra_repr(self) -> str:
        return f"thresholds={self.thresholds}"


def load_early_exit(path: str | Path, threshold: float | Sequence[float] | None = None) -> ExportedEarlyExit:
    """The early exit saved at ``path``; ``threshold`` replaces the saved one (another operating point,
    same programs)."""
    from torch.export.pt2_archive._package import load_pt2

    contents = load_pt2(Path(path))
    raw = contents.extra_files.get(MANIFEST)
    manifest = json.loads(raw) if raw else {}
    if manifest.get("format") != FORMAT:
        raise EarlyExitError(
            f"{path} is not an early-exit archive (no {MANIFEST} manifest); write one with export_early_exit"
        )
    if manifest["version"] > FORMAT_VERSION:
        raise EarlyExitError(
            f"{path} is format version {manifest['version']}; this coded_resnext reads up to {FORMAT_VERSION}"
        )
    programs = contents.exported_programs
    segments = [_AsSegmentOutput(programs[f"segment_{i}"].module()) for i in range(manifest["segments"])]
    thresholds = check_thresholds(manifest["thresholds"] if threshold is None else threshold, len(segments))
    return ExportedEarlyExit(segments, programs["tail"].module(), thresholds, manifest)


class _AsTuple(nn.Module):
    """A segment whose output is a plain tuple: the archive stores no Python classes (a named tuple's
    type would have to be registered with pytree under a name to be serialized)."""

    def __init__(self, segment: nn.Module) -> None:
        super().__init__()
        self.segment = segment

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return tuple(self.segment(x))


class _AsSegmentOutput(nn.Module):
    """A loaded segment program, its tuple turned back into ``SegmentOutput`` for ``route``."""

    def __init__(self, program: nn.Module) -> None:
        super().__init__()
        self.program = program

    def forward(self, x: Tensor) -> SegmentOutput:
        return SegmentOutput(*self.program(x))


def _layout(x: Tensor) -> torch.memory_format:
    channels_last = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if channels_last else torch.contiguous_format
