"""The specialization diagnostic (the paper's section 7, Fig. 2a).

In one chosen coded block, remove k branches that are *active* for each input's true class (or k
*inactive* ones), chosen at random per sample, and look at the accuracy. If the branches specialise,
removing active ones hurts as k grows and removing inactive ones does not. It needs the true class,
so it is a diagnostic, not a classifier.

It lives with the model because it is model logic: keep masks for ``forward_with_branch_masks``, built
from the blocks' codewords like the model's own ``path_masks``; ``evaluation.removal`` draws the curves.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from coded_resnext.models.coded_resnext import CodedResNeXt

Which = Literal["active", "inactive"]


def removal_masks(
    model: CodedResNeXt,
    coded_block: int,
    targets: Tensor,
    k: int,
    which: Which,
    generator: torch.Generator | None = None,
) -> list[Tensor | None]:
    """Keep masks for ``forward_with_branch_masks``: in coded block ``coded_block`` (0-based, network
    order), k random branches per sample whose bit for the sample's class is 1 (``active``) or 0
    (``inactive``) are removed; other blocks are untouched."""
    if which not in ("active", "inactive"):
        raise ValueError(f"which must be 'active' or 'inactive', got {which!r}")
    if not 0 <= coded_block < len(model.coded_blocks):
        raise ValueError(f"coded_block must be in 0..{len(model.coded_blocks) - 1}, got {coded_block}")
    info = model.coded_blocks[coded_block]
    available = info.scheme.num_active if which == "active" else info.scheme.num_branches - info.scheme.num_active
    if not 0 <= k <= available:
        raise ValueError(f"block {coded_block} has {available} {which} branches per class; cannot remove {k}")
    codewords = model.blocks[info.block_index].codewords
    bits = codewords[targets.to(codewords.device)]  # (B, N)
    candidates = bits > 0.5 if which == "active" else bits < 0.5
    scores = torch.rand(bits.shape, generator=generator).to(bits.device)
    scores = scores.masked_fill(~candidates, float("inf"))
    chosen = scores.topk(k, dim=1, largest=False).indices  # k random candidates per sample
    keep = torch.ones_like(bits).scatter_(1, chosen, 0.0)
    masks: list[Tensor | None] = [None] * len(model.coded_blocks)
    masks[coded_block] = keep
    return masks


@torch.no_grad()
def removal_logits(
    model: CodedResNeXt,
    x: Tensor,
    targets: Tensor,
    coded_block: int,
    k: int,
    which: Which,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Logits with k active / inactive branches removed in one block (see ``removal_masks``)."""
    masks = removal_masks(model, coded_block, targets, k, which, generator)
    return model.forward_with_branch_masks(x, masks).logits


def removal_logits_from(
    model: CodedResNeXt,
    h: Tensor,
    targets: Tensor,
    coded_block: int,
    k: int,
    which: Which,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``removal_logits`` of an input that went through ``model.trunk(x, block_index)`` of that coded
    block: the blocks before it, which the removal does not touch, run once for every k (eval mode)."""
    masks = removal_masks(model, coded_block, targets, k, which, generator)
    return model.forward_from(h, model.coded_blocks[coded_block].block_index, masks).logits
