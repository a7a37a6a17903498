"""The evaluation suite: everything the paper measures on a trained model, as plain values and tables.

``evaluate`` is the cheap per-epoch part (accuracy, loss, early-decoding accuracy per coded block);
``run_suite`` adds binary classifiers, early exit, branch removal and invariance. Nothing here logs:
the caller decides where the numbers go.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from coded_resnext.coding import CodingScheme
from coded_resnext.decoding import decode
from coded_resnext.evaluation.binary import binary_summary, choose_classes, evaluate_binary_classifiers
from coded_resnext.evaluation.collect import Collected, collect, mean_energy_by_class
from coded_resnext.evaluation.early_exit import early_exit_curve, early_exit_summary, exit_compute_fractions
from coded_resnext.evaluation.invariance import invariance_rows, invariance_summary
from coded_resnext.evaluation.removal import removal_curves, removal_summary
from coded_resnext.evaluation.settings import EvalSettings


@dataclass
class SuiteResult:
    metrics: dict[str, float]
    tables: dict[str, list[dict]] = field(default_factory=dict)  # name -> rows
    energy_by_class: list[Tensor] = field(default_factory=list)  # per coded block, (K, N) mean energies
    schemes: list[CodingScheme] = field(default_factory=list)  # per coded block


def decode_accuracies(model, collected: Collected) -> dict[str, float]:
    out = {}
    for i, (energies, info) in enumerate(zip(collected.energies, model.coded_blocks, strict=True)):
        pred = decode(energies, info.scheme).prediction
        out[f"val/decode_accuracy/block_{i}"] = (pred == collected.targets).float().mean().item()
    return out


def basic_metrics(model, collected: Collected) -> dict[str, float]:
    metrics = {
        "val/accuracy": collected.accuracy,
        "val/loss": F.cross_entropy(collected.logits, collected.targets).item(),
    }
    metrics.update(decode_accuracies(model, collected))
    return metrics


def evaluate(model, loader: Iterable, device: torch.device, limit: int | None = None) -> dict[str, float]:
    """Per-epoch validation: accuracy, cross-entropy, and Eq. 7 decoding accuracy of each coded block."""
    return basic_metrics(model, collect(model, loader, device, limit))


def run_suite(
    model,
    *,
    val_loader: Iterable,
    fit_loader: Iterable,
    device: torch.device,
    settings: EvalSettings,
    ood_loader: Iterable | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> SuiteResult:
    say = progress or (lambda _msg: None)
    say("evaluation: validation pass")
    collected = collect(model, val_loader, device, settings.limit_val)
    metrics = basic_metrics(model, collected)
    result = SuiteResult(metrics, schemes=[info.scheme for info in model.coded_blocks])
    result.tables["decode_accuracy"] = [
        {"block": i, "stage": info.stage, "accuracy": metrics[f"val/decode_accuracy/block_{i}"]}
        for i, info in enumerate(model.coded_blocks)
    ]
    result.energy_by_class = mean_energy_by_class(collected, model.num_classes)

    classes = choose_classes(model.num_classes, settings.binary_classes, seed)
    if classes:
        say(f"evaluation: binary classifiers for {len(classes)} classes")
        rows = evaluate_binary_classifiers(
            model,
            classes,
            fit_loader,
            settings.binary_fit_samples,
            val_loader,
            settings.limit_val,
            device,
            ood_loader=ood_loader,
            negatives_per_positive=settings.negatives_per_positive,
            seed=seed,
            refit=settings.binary_refit,
        )
        result.tables["binary_classifiers"] = rows
        metrics.update(binary_summary(rows))

    if model.coded_blocks:
        say("evaluation: early exit")
        example = first_example(val_loader)
        fractions = exit_compute_fractions(model, example.to(device))
        curve = early_exit_curve(model, collected, fractions, settings.early_exit_thresholds)
        result.tables["early_exit_curve"] = curve
        result.tables["exit_points"] = [
            {"block": i, "stage": info.stage, "compute_fraction": f}
            for i, (info, f) in enumerate(zip(model.coded_blocks, fractions, strict=True))
        ]
        metrics.update(early_exit_summary(curve, collected.accuracy))

        say("evaluation: branch removal")
        rows = removal_curves(model, val_loader, device, settings.removal_block, settings.removal_samples, seed)
        result.tables["removal_curve"] = rows
        metrics.update(removal_summary(rows))

        if settings.invariance_samples:
            say("evaluation: invariance of the paths")
            rows = invariance_rows(model, val_loader, device, settings.invariance_samples)
            result.tables["invariance"] = rows
            metrics.update(invariance_summary(rows))
    return result


def first_example(loader: Iterable) -> Tensor:
    x, _ = next(iter(loader))
    return x[:1]
