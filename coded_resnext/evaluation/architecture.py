"""What the architecture alone fixes, before any training: parameter counts of the model and of its
per-class binary classifiers.

Computed exactly as the evaluation suite computes ``binary/param_fraction`` (the unfused extracted
classifier's parameters over the full model's, averaged over the same classes), so a value known before
training equals the one the suite reports at the end. Works on the meta device: a configuration can be
judged without allocating its weights or loading any data.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from coded_resnext.extraction import extract_binary_classifier
from coded_resnext.models import CodedResNeXt
from coded_resnext.models.accounting import parameter_count


@torch.no_grad()
def architecture_metrics(model: CodedResNeXt, classes: Sequence[int]) -> dict[str, float]:
    """``model/params``, and ``binary/param_fraction`` / ``binary/param_fraction_paper`` over ``classes``
    (the suite's ``choose_classes``)."""
    full = parameter_count(model)
    metrics = {"model/params": float(full)}
    if not classes:
        return metrics
    full_paper = parameter_count(model, paper_accounting=True)
    fractions, paper = [], []
    for k in classes:
        binary = extract_binary_classifier(model, k, fuse=False)
        fractions.append(parameter_count(binary) / full)
        paper.append(parameter_count(binary, paper_accounting=True) / full_paper)
    metrics["binary/param_fraction"] = sum(fractions) / len(fractions)
    metrics["binary/param_fraction_paper"] = sum(paper) / len(paper)
    return metrics
