"""Accuracy after removing k active vs k inactive branches in a coded block (docs/method.md Fig. 2a).

The curves are measured in every coded block by default. One block alone can be a poor witness: in
the small CPU nets the network's last block adds little to its identity shortcut, so removing any of
its branches barely moves the accuracy, while the blocks before it show the paper's picture (active
removal hurts, inactive removal does not). The summary is therefore the mean over the measured
blocks, with each block's own drops logged beside it.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from coded_resnext.evaluation.collect import take
from coded_resnext.models import CodedResNeXt
from coded_resnext.models.branch_removal import removal_logits


@torch.no_grad()
def removal_curves(
    model: CodedResNeXt,
    loader: Iterable,
    device: torch.device,
    coded_block: int | None,
    limit: int | None,
    seed: int = 0,
) -> list[dict[str, float]]:
    """Rows (block, which, k, accuracy) for k = 0..available branches of each kind, in coded block
    ``coded_block`` (network order, negative from the end) or, with None, in every coded block; on at most
    ``limit`` samples of ``loader`` (None: all)."""
    model.eval()
    if not model.coded_blocks:
        return []
    count = len(model.coded_blocks)
    if coded_block is not None and not -count <= coded_block < count:
        raise ValueError(f"removal block {coded_block} out of range: the model has coded blocks 0..{count - 1}")
    blocks = range(count) if coded_block is None else [coded_block % count]
    batches = [(x.to(device), y.to(device)) for x, y in take(loader, limit)]
    rows = []
    for block in blocks:
        scheme = model.coded_blocks[block].scheme
        for which, available in (("active", scheme.num_active), ("inactive", scheme.num_branches - scheme.num_active)):
            for k in range(available + 1):
                generator = torch.Generator().manual_seed(seed + k)
                correct = total = 0
                for x, y in batches:
                    logits = removal_logits(model, x, y, block, k, which, generator)
                    correct += (logits.argmax(1) == y).sum().item()
                    total += len(y)
                rows.append(
                    {"block": block, "which": which, "k": k, "accuracy": correct / max(total, 1), "samples": total}
                )
    return rows


def removal_summary(rows: list[dict[str, float]]) -> dict[str, float]:
    """Accuracy drop (base minus removed; positive = worse) in each block at the largest k both kinds
    allow there (``removal/active_drop/block_{i}``), and the mean over blocks (``removal/active_drop``)."""
    if not rows:
        return {}
    out: dict[str, float] = {}
    drops: dict[str, list[float]] = {"active": [], "inactive": []}
    for block in sorted({int(r["block"]) for r in rows}):
        acc = {(r["which"], r["k"]): r["accuracy"] for r in rows if r["block"] == block}
        k = min(max(kk for which, kk in acc if which == w) for w in ("active", "inactive"))
        base = acc[("active", 0)]
        out[f"removal/k/block_{block}"] = float(k)
        for which in ("active", "inactive"):
            drop = base - acc[(which, k)]
            out[f"removal/{which}_drop/block_{block}"] = drop
            drops[which].append(drop)
    out["removal/active_drop"] = sum(drops["active"]) / len(drops["active"])
    out["removal/inactive_drop"] = sum(drops["inactive"]) / len(drops["inactive"])
    return out
