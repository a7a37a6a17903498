"""Accuracy after removing k active vs k inactive branches in one coded block (PAPER.md Fig. 2a)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from coded_resnext.diagnostics import removal_logits
from coded_resnext.evaluation.collect import take
from coded_resnext.models import CodedResNeXt


@torch.no_grad()
def removal_curves(
    model: CodedResNeXt, loader: Iterable, device: torch.device, coded_block: int, limit: int, seed: int = 0
) -> list[dict[str, float]]:
    """Rows (which, k, accuracy) for k = 0..available branches of each kind."""
    model.eval()
    if not model.coded_blocks:
        return []
    coded_block = coded_block % len(model.coded_blocks)
    scheme = model.coded_blocks[coded_block].scheme
    batches = [(x.to(device), y.to(device)) for x, y in take(loader, limit)]
    rows = []
    for which, available in (("active", scheme.num_active), ("inactive", scheme.num_branches - scheme.num_active)):
        for k in range(available + 1):
            generator = torch.Generator().manual_seed(seed + k)
            correct = total = 0
            for x, y in batches:
                logits = removal_logits(model, x, y, coded_block, k, which, generator)
                correct += (logits.argmax(1) == y).sum().item()
                total += len(y)
            rows.append({"block": coded_block, "which": which, "k": k, "accuracy": correct / max(total, 1)})
    return rows


def removal_summary(rows: list[dict[str, float]]) -> dict[str, float]:
    """Accuracy drop (base minus removed; positive = worse) at the largest k both kinds allow."""
    if not rows:
        return {}
    acc = {(r["which"], r["k"]): r["accuracy"] for r in rows}
    k = min(max(r["k"] for r in rows if r["which"] == w) for w in ("active", "inactive"))
    base = acc[("active", 0)]
    return {
        "removal/k": float(k),
        "removal/active_drop": base - acc[("active", k)],
        "removal/inactive_drop": base - acc[("inactive", k)],
    }
