"""The light evaluation a multi-fidelity scheduler needs at a rung: every objective of a search, from one
validation pass, without the rest of the suite.

A rung compares trials part-way through training on all the sweep's objectives, so the report at a rung
epoch must carry them: validation accuracy and loss, the Eq. 7 decoding accuracy of each coded block,
the early-exit summary (compute needed for 99% of the full accuracy, from the same pass's energies) and
the architecture's binary-classifier size. Binary F1, branch removal and invariance (the costly parts of
``run_suite``) wait for the end of training.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch.utils.data import Dataset

from coded_resnext.datasets.sampling import stratified_subset
from coded_resnext.evaluation.architecture import architecture_metrics
from coded_resnext.evaluation.collect import collect
from coded_resnext.evaluation.early_exit import early_exit_curve, early_exit_summary, exit_compute_fractions
from coded_resnext.evaluation.settings import EvalSettings
from coded_resnext.evaluation.suite import basic_metrics, default_loader, first_example
from coded_resnext.models import CodedResNeXt


def rung_evaluation(
    model: CodedResNeXt,
    val: Dataset,
    device: torch.device,
    settings: EvalSettings,
    classes: Sequence[int],
    *,
    seed: int = 0,
    loader: Callable[[Dataset], Iterable] = default_loader,
) -> dict[str, float]:
    """``val/accuracy``, ``val/loss``, ``val/decode_accuracy/block_{i}``, ``early_exit/*`` and the
    architecture metrics, named and measured as ``run_suite`` measures the validation split (the same
    stratified ``limit_val`` sample for ``seed``, the same thresholds, the same classes)."""
    batches = loader(stratified_subset(val, settings.limit_val, seed))
    collected = collect(model, batches, device)
    metrics = basic_metrics(model, collected)
    if model.coded_blocks:
        fractions = exit_compute_fractions(model, first_example(batches).to(device))
        curve = early_exit_curve(model, collected, fractions, settings.early_exit_thresholds)
        metrics.update(early_exit_summary(curve, collected.accuracy))
    metrics.update(architecture_metrics(model, classes))
    return metrics
