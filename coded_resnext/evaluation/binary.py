"""Per-class binary classifiers (PAPER.md section 7): extracted, thresholded, scored.

For class k: the extracted (pruned) classifier scores samples; the threshold maximising F1 on training
samples is fixed; precision, recall and F1 are measured on validation samples (negatives subsampled
to ``negatives_per_positive`` per positive when there are more, as the paper does for many classes),
and precision again with out-of-distribution images as the negatives. The full network's one-vs-rest
decision (softmax probability of k, threshold fitted the same way) is scored beside it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from sklearn.metrics import f1_score, precision_recall_curve, precision_score, recall_score
from torch import Tensor

from coded_resnext.accounting import parameter_count
from coded_resnext.evaluation.collect import take
from coded_resnext.extraction import extract_binary_classifier
from coded_resnext.models import CodedResNeXt


def best_f1_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold with the highest F1 (predict positive when score >= threshold)."""
    if labels.sum() == 0:
        return float(np.inf)
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    f1 = 2 * precision[:-1] * recall[:-1] / np.clip(precision[:-1] + recall[:-1], 1e-12, None)
    return float(thresholds[int(np.argmax(f1))])


def subsample_negatives(labels: np.ndarray, ratio: int, rng: np.random.Generator) -> np.ndarray:
    """Indices keeping every positive and at most ``ratio`` negatives per positive."""
    pos = np.flatnonzero(labels)
    neg = np.flatnonzero(~labels)
    limit = ratio * max(len(pos), 1)
    if len(neg) > limit:
        neg = np.sort(rng.choice(neg, size=limit, replace=False))
    return np.concatenate([pos, neg])


def _scores_and_targets(
    module: torch.nn.Module, loader: Iterable, device: torch.device, limit: int | None
) -> tuple[Tensor, Tensor]:
    out, targets = [], []
    with torch.no_grad():
        for x, y in take(loader, limit):
            out.append(module(x.to(device, non_blocking=True)).float().cpu())
            targets.append(y)
    return torch.cat(out), torch.cat(targets)


def _scores(module: torch.nn.Module, loader: Iterable, device: torch.device, limit: int | None) -> Tensor:
    return _scores_and_targets(module, loader, device, limit)[0]


def _metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    pred = scores >= threshold
    return {
        "precision": float(precision_score(labels, pred, zero_division=0)),
        "recall": float(recall_score(labels, pred, zero_division=0)),
        "f1": float(f1_score(labels, pred, zero_division=0)),
    }


def choose_classes(num_classes: int, how_many: int, seed: int) -> list[int]:
    if how_many >= num_classes:
        return list(range(num_classes))
    rng = np.random.default_rng(seed)
    return sorted(int(c) for c in rng.choice(num_classes, size=how_many, replace=False))


@torch.no_grad()
def evaluate_binary_classifiers(
    model: CodedResNeXt,
    classes: Sequence[int],
    fit_loader: Iterable,
    fit_limit: int,
    val_loader: Iterable,
    val_limit: int | None,
    device: torch.device,
    ood_loader: Iterable | None = None,
    negatives_per_positive: int = 9,
    seed: int = 0,
) -> list[dict[str, float]]:
    """One row per class: sizes, threshold, validation precision/recall/F1, OOD precision, and the
    full network's one-vs-rest figures for the same class."""
    model.eval()
    fit_logits, fit_targets = _scores_and_targets(model, fit_loader, device, fit_limit)
    val_logits, val_targets = _scores_and_targets(model, val_loader, device, val_limit)
    full_fit = torch.softmax(fit_logits, 1).numpy()
    full_val = torch.softmax(val_logits, 1).numpy()
    fit_targets, val_targets = fit_targets.numpy(), val_targets.numpy()
    full_params = parameter_count(model)
    full_params_paper = parameter_count(model, paper_accounting=True)
    rng = np.random.default_rng(seed)
    rows = []
    for k in classes:
        # Unfused: sizes counted like the full model's (BatchNorms included); scores are the same either way.
        binary = extract_binary_classifier(model, k, fuse=False).to(device)
        fit_scores = _scores(binary, fit_loader, device, fit_limit).numpy()
        val_scores = _scores(binary, val_loader, device, val_limit).numpy()
        fit_labels, val_labels = fit_targets == k, val_targets == k
        keep = subsample_negatives(val_labels, negatives_per_positive, rng)
        threshold = best_f1_threshold(fit_labels, fit_scores)
        row: dict[str, float] = {
            "class": k,
            "param_fraction": parameter_count(binary) / full_params,
            "param_fraction_paper": parameter_count(binary, paper_accounting=True) / full_params_paper,
            "threshold": threshold,
            "val_positives": int(val_labels.sum()),
            "val_negatives": int(len(keep) - val_labels[keep].sum()),
        }
        row.update(_metrics(val_labels[keep], val_scores[keep], threshold))
        full_threshold = best_f1_threshold(fit_labels, full_fit[:, k])
        row.update({f"full_{m}": v for m, v in _metrics(val_labels[keep], full_val[keep, k], full_threshold).items()})
        if ood_loader is not None:
            ood_scores = _scores(binary, ood_loader, device, None).numpy()
            pos_scores = val_scores[val_labels]
            limit = negatives_per_positive * max(len(pos_scores), 1)
            if len(ood_scores) > limit:
                ood_scores = rng.choice(ood_scores, size=limit, replace=False)
            labels = np.concatenate([np.ones(len(pos_scores), bool), np.zeros(len(ood_scores), bool)])
            scores = np.concatenate([pos_scores, ood_scores])
            row["ood_precision"] = _metrics(labels, scores, threshold)["precision"]
            row["ood_negatives"] = len(ood_scores)
        rows.append(row)
    return rows


def binary_summary(rows: list[dict[str, float]]) -> dict[str, float]:
    if not rows:
        return {}
    mean = lambda key: float(np.mean([r[key] for r in rows]))  # noqa: E731
    out = {
        "binary/param_fraction": mean("param_fraction"),
        "binary/param_fraction_paper": mean("param_fraction_paper"),
        "binary/f1_mean": mean("f1"),
        "binary/precision_mean": mean("precision"),
        "binary/recall_mean": mean("recall"),
        "binary/full_f1_mean": mean("full_f1"),
    }
    if "ood_precision" in rows[0]:
        out["binary/ood_precision_mean"] = mean("ood_precision")
    return out
