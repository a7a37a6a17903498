"""Pruning a coded block to some of its branches: the weights of the others cut out, outputs unchanged.

For a set of classes, every coded block keeps only the branches on the union of their paths
(codeword bit 1 for at least one of them): the reduce rows, grouped-conv groups, BN channels and
expand columns of the other branches are cut out of the weights. Energy normalization still divides
by the block's full N, so the pruned block computes exactly what the full block computes with the
other branches removed (``forward_with_aux(keep_paths_of=...)``).

In a concatenating block (``branch_merge="concat"``) each branch owns some of the C_out output
channels: the expand rows of the kept branches survive and write their channels; the other channels
are zero before the block's BatchNorm, as in the full net with those branches removed, so after it
they are that BatchNorm's constant.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from coded_resnext.layers.coded_block import CodedBlock
from coded_resnext.layers.concat_expand import ConcatExpand
from coded_resnext.models.coded_resnext import CodedResNeXt


def kept_branches(model: CodedResNeXt, classes: Sequence[int]) -> list[list[int]]:
    """Per coded block, the branch indices on the union of the classes' paths."""
    out = []
    for info in model.coded_blocks:
        words = info.scheme.codewords[list(classes)]
        out.append([int(n) for n in words.any(axis=0).nonzero()[0]])
    return out


@torch.no_grad()
def prune_block(block: CodedBlock, branches: Sequence[int]) -> CodedBlock:
    """A coded block with only ``branches`` (sorted indices) left; same outputs as the full block
    with the other branches removed."""
    if not block.normalize_energy:
        raise ValueError("only coded (energy-normalized) blocks can be pruned: a plain block's branches are shared")
    d = block.branch_width
    channels = torch.cat([torch.arange(n * d, (n + 1) * d) for n in branches])
    expand = block.conv_expand
    pruned = CodedBlock(
        block.conv_reduce.in_channels,
        expand.out_channels,
        d,
        len(branches),
        stride=block.conv_group.stride[0],
        normalize_energy=True,
        normalizer_branches=block.normalizer_branches,
        zero_init_last=False,
        merge=block.merge,
    ).to(device=expand.weight.device, dtype=expand.weight.dtype)
    pruned.conv_reduce.weight.copy_(block.conv_reduce.weight[channels])
    pruned.conv_group.weight.copy_(block.conv_group.weight[channels])
    if isinstance(expand, ConcatExpand):
        pruned.conv_expand = _prune_concat_expand(expand, branches)
    else:
        pruned.conv_expand.weight.copy_(expand.weight[:, channels])
    for name in ("bn_reduce", "bn_group"):
        src, dst = getattr(block, name), getattr(pruned, name)
        for key, value in src.state_dict().items():
            dst_value = dst.state_dict()[key]
            dst_value.copy_(value if value.dim() == 0 else value[channels])
    pruned.bn_sum.load_state_dict(block.bn_sum.state_dict())
    pruned.shortcut = copy.deepcopy(block.shortcut)
    return pruned


def _prune_concat_expand(expand: ConcatExpand, branches: Sequence[int]) -> ConcatExpand:
    """The rows (output channels) of ``branches`` only, written back at their channels of C_out."""
    if expand.channels is not None:
        raise ValueError("extract from the full model, not from an extracted one")
    owner = expand.owner_onehot.argmax(dim=1)  # (C_out,) branch of each row
    rows = torch.cat([(owner == n).nonzero()[:, 0] for n in branches])
    position = {n: i for i, n in enumerate(branches)}
    new_owner = torch.tensor([position[int(n)] for n in owner[rows]], dtype=torch.long)
    pruned = ConcatExpand(len(branches), expand.branch_width, new_owner, rows.cpu(), expand.out_channels)
    pruned = pruned.to(device=expand.weight.device, dtype=expand.weight.dtype)
    pruned.weight.copy_(expand.weight[rows])
    return pruned
