"""Physically smaller networks for a subset of classes (PAPER.md section 7, binary classifiers).

For a set of classes, every coded block keeps only the branches on the union of their paths
(codeword bit 1 for at least one of them): the reduce rows, grouped-conv groups, BN channels and
expand columns of the other branches are cut out of the weights. Energy normalization still divides
by the block's full N, so the pruned net computes exactly what the full net computes with the other
branches removed (``forward_with_aux(keep_paths_of=...)``). Uncoded blocks, projection shortcuts and
the stem stay whole; the final layer keeps the rows of the chosen classes.

In a concatenating block (``branch_merge="concat"``) each branch owns some of the C_out output
channels: the expand rows of the kept branches survive and write their channels; the other channels
are zero before the block's BatchNorm, as in the full net with those branches removed, so after it
they are that BatchNorm's constant.

The extracted network is then made ready for inference (``coded_resnext.fusion``): BatchNorms are
folded into the convs before them and conv weights go channels-last. Pruning alone leaves the
unpruned stem, first stage and projection shortcuts as they were; these are memory-bound, so they
take a larger share of the time than of the FLOPs, and folding plus channels-last cut that share.
``fuse=False`` gives the pruned network with its BatchNorms (e.g. to fine-tune it).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from coded_resnext.fusion import fuse_for_inference
from coded_resnext.layers.coded_block import CodedBlock
from coded_resnext.layers.concat_expand import ConcatExpand
from coded_resnext.models.coded_resnext import CodedResNeXt


class PrunedCodedResNeXt(nn.Module):
    """Logits (B, len(classes)) of the classes it was extracted for."""

    def __init__(self, stem: nn.Module, blocks: nn.ModuleList, fc: nn.Linear, classes: Sequence[int]) -> None:
        super().__init__()
        self.stem = stem
        self.blocks = blocks
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = fc
        self.classes: list[int] = [int(c) for c in classes]

    def features(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x).out
        return torch.flatten(self.pool(x), 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


class BinaryClassifier(PrunedCodedResNeXt):
    """One class's detector: the score (B,) of ``classes[0]``; threshold it for a yes/no."""

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))[:, 0]


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


def extract_submodel(model: CodedResNeXt, classes: Sequence[int], *, fuse: bool = True) -> PrunedCodedResNeXt:
    """The union of ``classes``'s paths as a standalone, smaller network (eval mode); with ``fuse``
    (default) BatchNorms folded and channels-last, for inference only."""
    return _extract(model, classes, PrunedCodedResNeXt, fuse)


def extract_binary_classifier(model: CodedResNeXt, class_index: int, *, fuse: bool = True) -> BinaryClassifier:
    """Class ``class_index``'s binary classifier: output (B,) equals
    ``model.forward_with_aux(x, keep_paths_of=class_index).logits[:, class_index]`` in eval mode.

    With ``fuse`` (default) its BatchNorms are folded and its weights channels-last, for inference
    only; ``fuse=False`` keeps them (same outputs, slower)."""
    return _extract(model, [class_index], BinaryClassifier, fuse)


def _extract(
    model: CodedResNeXt, classes: Sequence[int], cls: type[PrunedCodedResNeXt], fuse: bool
) -> PrunedCodedResNeXt:
    if any(isinstance(m, nn.Conv2d) and m.bias is not None for m in model.modules()):
        raise ValueError(
            "extract from the trained model as it is, not from a fuse_for_inference copy: "
            "extraction folds the BatchNorms itself (fuse=True)"
        )
    classes = [int(c) for c in classes]
    if not classes:
        raise ValueError("extract needs at least one class")
    bad = [c for c in classes if not 0 <= c < model.num_classes]
    if bad:
        raise ValueError(f"classes {bad} out of range; the model has classes 0..{model.num_classes - 1}")
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct, got {classes}")
    kept = iter(kept_branches(model, classes))
    blocks = nn.ModuleList()
    for block in model.blocks:
        if block.normalize_energy:
            branches = next(kept)
            blocks.append(prune_block(block, branches))
        else:
            blocks.append(copy.deepcopy(block))
    fc = nn.Linear(model.fc.in_features, len(classes), bias=False).to(model.fc.weight.device)
    with torch.no_grad():
        fc.weight.copy_(model.fc.weight[classes])
    pruned = cls(copy.deepcopy(model.stem), blocks, fc, classes).eval()
    return fuse_for_inference(pruned, inplace=True) if fuse else pruned
