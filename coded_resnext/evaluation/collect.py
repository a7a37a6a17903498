"""One pass of a model over data, keeping what every analysis needs: logits, energies, targets."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from coded_resnext.models import CodedResNeXt


@dataclass
class Collected:
    logits: Tensor  # (S, K)
    energies: list[Tensor]  # one (S, N_l) per coded block
    targets: Tensor  # (S,)

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


@torch.no_grad()
def collect(model: CodedResNeXt, loader: Iterable, device: torch.device, limit: int | None = None) -> Collected:
    model.eval()
    logits, targets = [], []
    energies: list[list[Tensor]] = [[] for _ in model.coded_blocks]
    for x, y in take(loader, limit):
        out = model.forward_with_aux(x.to(device, non_blocking=True))
        logits.append(out.logits.float().cpu())
        targets.append(y)
        for store, e in zip(energies, out.energies, strict=True):
            store.append(e.float().cpu())
    return Collected(torch.cat(logits), [torch.cat(e) for e in energies], torch.cat(targets).long())


def mean_energy_by_class(collected: Collected, num_classes: int) -> list[Tensor]:
    """Per coded block, the (K, N) mean normalized energy of each class's samples (the paths made visible)."""
    out = []
    for energies in collected.energies:
        table = torch.zeros(num_classes, energies.shape[1])
        table.index_add_(0, collected.targets, energies)
        counts = torch.bincount(collected.targets, minlength=num_classes).clamp_min(1)
        out.append(table / counts[:, None])
    return out
