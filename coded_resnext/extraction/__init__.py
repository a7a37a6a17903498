"""Extracting per-class binary classifiers: a Coded ResNeXt pruned to the paths of some classes
(``pruning``: one block; ``classifiers``: the network), then folded for inference (``fusion``)."""

from coded_resnext.extraction.classifiers import (
    BinaryClassifier,
    PrunedCodedResNeXt,
    extract_binary_classifier,
    extract_submodel,
)
from coded_resnext.extraction.fusion import fuse_for_inference
from coded_resnext.extraction.pruning import kept_branches, prune_block

__all__ = [
    "BinaryClassifier",
    "PrunedCodedResNeXt",
    "extract_binary_classifier",
    "extract_submodel",
    "fuse_for_inference",
    "kept_branches",
    "prune_block",
]
