"""Physically smaller networks for a subset of classes (the paper's section 7, binary classifiers).

For a set of classes, every coded block keeps only the branches on the union of their paths
(``extraction.pruning``), so the pruned net computes exactly what the full net computes with the other
branches removed (``forward_with_aux(keep_paths_of=...)``). Uncoded blocks, projection shortcuts and
the stem stay whole; the final layer keeps the rows of the chosen classes.

The extracted network is then made ready for inference (``extraction.fusion``): BatchNorms are
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

from coded_resnext.extraction.fusion import fuse_for_inference
from coded_resnext.extraction.pruning import kept_branches, prune_block
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
        return self.features_from(self.stem(x), 0)

    def features_from(self, x: Tensor, start: int) -> Tensor:
        """``features`` of an input that went through the stem and ``blocks[:start]``. Extraction leaves
        the stem and the blocks before the first coded block as they are (unfused: the same modules'
        copies), so up to ``CodedResNeXt.trunk_depth`` the model's ``trunk`` gives that input: an
        evaluation runs the trunk once for the model and all its classifiers."""
        for block in self.blocks[start:]:
            x = block(x).out
        return torch.flatten(self.pool(x), 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


class BinaryClassifier(PrunedCodedResNeXt):
    """One class's detector: the score (B,) of ``classes[0]``; threshold it for a yes/no."""

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))[:, 0]


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
