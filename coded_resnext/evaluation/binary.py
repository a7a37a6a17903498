"""Per-class binary classifiers (PAPER.md section 7): extracted, thresholded, scored.

For class k: the extracted (pruned) classifier scores samples; the threshold maximising F1 on training
samples is fixed; precision, recall and F1 are measured on validation samples (negatives subsampled
to ``negatives_per_positive`` per positive when there are more, as the paper does for many classes),
and precision again with out-of-distribution images as the negatives. The full network's one-vs-rest
decision (softmax probability of k, threshold fitted the same way) is scored beside it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import partial

import numpy as np
import torch
from sklearn.metrics import f1_score, precision_recall_curve, precision_score, recall_score
from torch import Tensor

from coded_resnext.accounting import parameter_count
from coded_resnext.evaluation.collect import outputs_and_targets
from coded_resnext.evaluation.refit import pruned_features, refit_binary_classifier
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


def _row_scores(classifier: torch.nn.Module, features: Tensor) -> np.ndarray:
    """The classifier's output (B,) from its precomputed pooled features: its output row only."""
    return classifier.fc(features.to(classifier.fc.weight.device)).float().cpu()[:, 0].numpy()


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
    refit: bool = True,
) -> list[dict[str, float]]:
    """One row per class: sizes, threshold, validation precision/recall/F1, OOD precision, and the
    full network's one-vs-rest figures for the same class, by its softmax (``full_*``) and by its raw
    logit k (``full_logit_*``, the paper's classifier's score without the pruning). With ``refit``, the
    same figures (``refit_*``) for the classifier whose output row is refit to its own features on the fit
    samples (``refit.py``)."""
    model.eval()
    fit_logits, fit_targets = outputs_and_targets(model, fit_loader, device, fit_limit)
    val_logits, val_targets = outputs_and_targets(model, val_loader, device, val_limit)
    full_fit = torch.softmax(fit_logits, 1).numpy()
    full_val = torch.softmax(val_logits, 1).numpy()
    fit_logit, val_logit = fit_logits.numpy(), val_logits.numpy()  # float already (outputs_and_targets)
    fit_targets, val_targets = fit_targets.numpy(), val_targets.numpy()
    full_params = parameter_count(model)
    full_params_paper = parameter_count(model, paper_accounting=True)
    rng = np.random.default_rng(seed)
    rows = []
    for k in classes:
        # Unfused: sizes counted like the full model's (BatchNorms included); scores are the same either way.
        binary = extract_binary_classifier(model, k, fuse=False).to(device)
        # One pass per data set gives the pruned features; both score rows (paper's, refit) read them.
        fit_features, _ = pruned_features(binary, fit_loader, device, fit_limit)
        val_features, _ = pruned_features(binary, val_loader, device, val_limit)
        ood_features = pruned_features(binary, ood_loader, device, None)[0] if ood_loader is not None else None
        fit_labels, val_labels = fit_targets == k, val_targets == k
        keep = subsample_negatives(val_labels, negatives_per_positive, rng)
        if ood_features is not None:
            ood_limit = negatives_per_positive * max(int(val_labels.sum()), 1)
            ood_keep = np.arange(len(ood_features))
            if len(ood_keep) > ood_limit:
                ood_keep = np.sort(rng.choice(len(ood_keep), size=ood_limit, replace=False))
            ood_features = ood_features[torch.from_numpy(ood_keep)]
        row: dict[str, float] = {
            "class": k,
            "param_fraction": parameter_count(binary) / full_params,
            "param_fraction_paper": parameter_count(binary, paper_accounting=True) / full_params_paper,
            "val_positives": int(val_labels.sum()),
            "val_negatives": int(len(keep) - val_labels[keep].sum()),
        }
        # the paper's classifier (row k of the final layer) and, with ``refit``, its refit copy
        classifiers = {"": binary}
        if refit and 0 < fit_labels.sum() < len(fit_labels):
            classifiers["refit_"] = refit_binary_classifier(binary, fit_features, torch.from_numpy(fit_targets))
        for prefix, classifier in classifiers.items():
            score = partial(_row_scores, classifier)
            fit_scores, val_scores = score(fit_features), score(val_features)
            threshold = best_f1_threshold(fit_labels, fit_scores)
            row[f"{prefix}threshold"] = threshold
            row.update({f"{prefix}{m}": v for m, v in _metrics(val_labels[keep], val_scores[keep], threshold).items()})
            if ood_features is not None:
                pos = val_scores[val_labels]
                ood = score(ood_features)
                labels = np.concatenate([np.ones(len(pos), bool), np.zeros(len(ood), bool)])
                row[f"{prefix}ood_precision"] = _metrics(labels, np.concatenate([pos, ood]), threshold)["precision"]
                row["ood_negatives"] = len(ood)
        full_threshold = best_f1_threshold(fit_labels, full_fit[:, k])
        row.update({f"full_{m}": v for m, v in _metrics(val_labels[keep], full_val[keep, k], full_threshold).items()})
        # The full network scored as the paper's classifier scores (its raw logit k, not the softmax): the
        # F1 gap to ``full_f1`` then splits into what pruning costs and what one logit instead of all costs.
        logit_threshold = best_f1_threshold(fit_labels, fit_logit[:, k])
        row.update(
            {f"full_logit_{m}": v for m, v in _metrics(val_labels[keep], val_logit[keep, k], logit_threshold).items()}
        )
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
        "binary/full_logit_f1_mean": mean("full_logit_f1"),
    }
    if "ood_precision" in rows[0]:
        out["binary/ood_precision_mean"] = mean("ood_precision")
    if all("refit_f1" in r for r in rows):
        out["binary/refit_f1_mean"] = mean("refit_f1")
        out["binary/refit_precision_mean"] = mean("refit_precision")
        out["binary/refit_recall_mean"] = mean("refit_recall")
        if "refit_ood_precision" in rows[0]:
            out["binary/refit_ood_precision_mean"] = mean("refit_ood_precision")
    return out
