"""One pass of a model over data, keeping what every analysis needs: logits, energies, targets, and the
outputs of any networks that share the model's trunk (the per-class binary classifiers).

A pass reads each batch once and runs the model's trunk (the stem and the blocks before the first coded
block, ``CodedResNeXt.trunk``) once; the model's own rest and every extra *head* (a function of the trunk's
output: a pruned classifier's remaining blocks and its score rows) run on that. Evaluating ten binary
classifiers used to read and decode the split's images ten times more and run ten trunks more; the
figures are the same (the same modules on the same batches).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from coded_resnext.models import CodedResNeXt


@dataclass
class Collected:
    logits: Tensor  # (S, K)
    energies: list[Tensor]  # one (S, N_l) per coded block
    targets: Tensor  # (S,)
    outputs: dict[Hashable, Tensor] = field(default_factory=dict)  # per head: its (S, ...) output, float, on CPU

    @property
    def accuracy(self) -> float:
        return (self.logits.argmax(1) == self.targets).float().mean().item()


def take(loader: Iterable, limit: int | None) -> Iterable[tuple[Tensor, Tensor]]:
    """Batches from ``loader`` until ``limit`` samples (None: all)."""
    seen = 0
    for x, y in loader:
        if limit is not None and seen + len(y) > limit:
            x, y = x[: limit - seen], y[: limit - seen]
        if len(y) == 0:
            return
        seen += len(y)
        yield x, y
        if limit is not None and seen >= limit:
            return


@torch.no_grad()
def outputs_and_targets(
    fn: Callable[[Tensor], Tensor], loader: Iterable, device: torch.device, limit: int | None = None
) -> tuple[Tensor, Tensor]:
    """``fn`` of every batch (concatenated, float, on CPU) and the targets, for at most ``limit`` samples."""
    out, targets = [], []
    for x, y in take(loader, limit):
        out.append(fn(x.to(device, non_blocking=True)).float().cpu())
        targets.append(y)
    return torch.cat(out), torch.cat(targets)


Head = Callable[[Tensor], Tensor]  # the trunk's output (B, C, H, W) -> (B, ...)


@torch.no_grad()
def collect(
    model: CodedResNeXt,
    loader: Iterable,
    device: torch.device,
    limit: int | None = None,
    heads: Mapping[Hashable, Head] | None = None,
) -> Collected:
    """The model's logits and energies on ``loader`` (at most ``limit`` samples), and each head's output
    on the same batches' trunk output (``heads``: see the module docstring)."""
    model.eval()
    heads = heads or {}
    logits, targets = [], []
    energies: list[list[Tensor]] = [[] for _ in model.coded_blocks]
    outputs: dict[Hashable, list[Tensor]] = {key: [] for key in heads}
    depth = model.trunk_depth
    for x, y in take(loader, limit):
        x = x.to(device, non_blocking=True)
        if heads:
            h = model.trunk(x, depth)
            out = model.forward_from(h, depth)
            for key, head in heads.items():
                outputs[key].append(head(h).float().cpu())
        else:
            out = model.forward_with_aux(x)
        logits.append(out.logits.float().cpu())
        targets.append(y)
        for store, e in zip(energies, out.energies, strict=True):
            store.append(e.float().cpu())
    return Collected(
        torch.cat(logits),
        [torch.cat(e) for e in energies],
        torch.cat(targets).long(),
        {key: torch.cat(chunks) for key, chunks in outputs.items()},
    )


@torch.no_grad()
def head_outputs(
    model: CodedResNeXt, heads: Mapping[Hashable, Head], loader: Iterable, device: torch.device
) -> tuple[dict[Hashable, Tensor], Tensor]:
    """Each head's output on ``loader`` (one trunk pass, the model's own rest not run) and the targets:
    for data only the heads read (out-of-distribution negatives of the binary classifiers)."""
    model.eval()
    outputs: dict[Hashable, list[Tensor]] = {key: [] for key in heads}
    targets = []
    for x, y in loader:
        h = model.trunk(x.to(device, non_blocking=True))
        for key, head in heads.items():
            outputs[key].append(head(h).float().cpu())
        targets.append(y)
    return {key: torch.cat(chunks) for key, chunks in outputs.items()}, torch.cat(targets)


def mean_energy_by_class(collected: Collected, num_classes: int) -> list[Tensor]:
    """Per coded block, the (K, N) mean normalized energy of each class's samples (the paths made visible)."""
    out = []
    for energies in collected.energies:
        table = torch.zeros(num_classes, energies.shape[1])
        table.index_add_(0, collected.targets, energies)
        counts = torch.bincount(collected.targets, minlength=num_classes).clamp_min(1)
        out.append(table / counts[:, None])
    return out
