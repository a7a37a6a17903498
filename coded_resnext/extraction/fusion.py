"""Inference copies with every eval-mode BatchNorm folded into the convolution before it.

In eval mode a BatchNorm is a per-channel affine map, so ``bn(conv(x))`` is one conv with rescaled
weights and a bias (``torch.nn.utils.fusion.fuse_conv_bn_eval``): one pass over the activation and
one block-sized buffer fewer per BN. Folded here: the stem's conv-BN, each block's reduce and grouped
convs with their BNs, and the projection shortcuts (kept as ``Sequential(conv, Identity)`` so the
shortcut conv is still ``shortcut[0]``).

bn_sum follows the energy-normalized branch sum, and the energies (Eq. 2) are computed from the
expand conv's weight through the Gram matrices W_n^T W_n. Folding bn_sum rescales the rows of that
weight, so a coded block first freezes its Gram matrices from the unfolded weight (``expand_gram``),
then folds: bn_sum(W (h * s)) = (a W)(h * s) + c, with the energies and the scale s unchanged.
Materialized (reference) blocks build every branch output from the expand weight, so their bn_sum
stays as it is; so does a concatenating block's (``branch_merge="concat"``), whose expand is not a
``Conv2d`` (a pruned one leaves the removed branches' channels zero, and bn_sum maps them to constants).

The result computes the same outputs and energies as the original in eval mode (within float
tolerance) and is for inference only: a fused coded block refuses to run in training mode.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from coded_resnext.layers.coded_block import CodedBlock
from coded_resnext.layers.energy import expand_gram


def fuse_for_inference(model: nn.Module, inplace: bool = False, channels_last: bool = True) -> nn.Module:
    """An eval-mode copy of ``model`` (or ``model`` itself with ``inplace``) with BatchNorms folded
    and, with ``channels_last``, conv weights in channels-last memory format.

    Channels-last weights make every conv run and return NHWC (an NCHW input is converted by the
    first conv), which oneDNN runs without reordering activations to and from its blocked layout
    around each conv. Works on a full ``CodedResNeXt`` and on the extracted classifiers alike, so
    both can be timed with the same optimizations."""
    fused = model if inplace else copy.deepcopy(model)
    fused.eval()
    with torch.no_grad():
        for module in list(fused.modules()):
            if isinstance(module, CodedBlock):
                _fuse_block(module)
            elif isinstance(module, nn.Sequential):
                _fuse_sequential(module)
    if channels_last:
        fused.to(memory_format=torch.channels_last)
    return fused


def _pair(conv: nn.Module, bn: nn.Module) -> bool:
    return isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats


def _fold(conv: nn.Conv2d, bn: nn.Module) -> nn.Conv2d:
    if not _pair(conv, bn):
        return conv
    return fuse_conv_bn_eval(conv.eval(), bn.eval())  # fresh, contiguous weight and bias


def _fuse_sequential(seq: nn.Sequential) -> None:
    """Conv2d followed by BatchNorm2d inside a Sequential (stem, projection shortcut)."""
    for i in range(len(seq) - 1):
        if _pair(seq[i], seq[i + 1]):
            seq[i] = _fold(seq[i], seq[i + 1])
            seq[i + 1] = nn.Identity()


def _fuse_block(block: CodedBlock) -> None:
    for conv_name, bn_name in (("conv_reduce", "bn_reduce"), ("conv_group", "bn_group")):
        conv, bn = getattr(block, conv_name), getattr(block, bn_name)
        if _pair(conv, bn):
            setattr(block, conv_name, _fold(conv, bn))
            setattr(block, bn_name, nn.Identity())
    if not _pair(block.conv_expand, block.bn_sum):
        return
    if block.normalize_energy:
        if block.materialize:
            return  # branch outputs are built from the expand weight: it must stay unfolded
        if block.expand_gram is None:
            block.expand_gram = expand_gram(block.conv_expand.weight, block.num_branches).detach().clone()
    block.conv_expand = _fold(block.conv_expand, block.bn_sum)
    block.bn_sum = nn.Identity()
