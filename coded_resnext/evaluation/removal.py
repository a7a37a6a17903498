"""Accuracy after removing k active vs k inactive branches in a coded block (docs/method.md Fig. 2a).

The curves are measured in every coded block by default. One block alone can be a poor witness: in
the small CPU nets the network's last block adds little to its identity shortcut, so removing any of
its branches barely moves the accuracy, while the blocks before it show the paper's picture (active
removal hurts, inactive removal does not). The summary is therefore the mean over the measured
blocks, with each block's own drops logged beside it.

Per block, the blocks before it run once per batch for every point (``CodedResNeXt.trunk``), k = 0 (no
branch removed) once for both kinds, and ``summary_only`` measures the points the summary reads (k = 0
and the largest k both kinds allow) instead of the whole curves: a search's trial logs the same summary
for a quarter of the passes.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from coded_resnext.evaluation.collect import take
from coded_resnext.models import CodedResNeXt
from coded_resnext.models.branch_removal import removal_logits_from


@torch.no_grad()
def removal_curves(
    model: CodedResNeXt,
    loader: Iterable,
    device: torch.device,
    coded_block: int | None,
    limit: int | None,
    seed: int = 0,
    summary_only: bool = False,
) -> list[dict[str, float]]:
    """Rows (block, which, k, accuracy) for k = 0..available branches of each kind (``summary_only``: k = 0
    and the largest k both kinds allow), in coded block ``coded_block`` (network order, negative from the
    end) or, with None, in every coded block; on at most ``limit`` samples of ``loader`` (None: all).
    The rows of the points both measure are the same either way (each point's draws are its own)."""
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
        info = model.coded_blocks[block]
        scheme = info.scheme
        counts = (("active", scheme.num_active), ("inactive", scheme.num_branches - scheme.num_active))
        points = [(which, k) for which, available in counts for k in range(available + 1)]
        if summary_only:
            largest = min(available for _, available in counts)
            points = [(which, k) for which, k in points if k in (0, largest)]
        # one generator per point, advanced batch by batch: the draws do not depend on the loop order
        generators = {(which, k): torch.Generator().manual_seed(seed + k) for which, k in points}
        correct = dict.fromkeys(points, 0)
        total = 0
        for x, y in batches:
            h = model.trunk(x, info.block_index)  # what the removal does not touch: once for every point
            for which, k in points:
                if (which, k) == ("inactive", 0):  # removes nothing, like ("active", 0): measured there
                    correct[(which, k)] = correct[("active", 0)]
                    continue
                logits = removal_logits_from(model, h, y, block, k, which, generators[(which, k)])
                correct[(which, k)] += (logits.argmax(1) == y).sum().item()
            total += len(y)
        rows += [
            {"block": block, "which": which, "k": k, "accuracy": correct[(which, k)] / max(total, 1), "samples": total}
            for which, k in points
        ]
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
