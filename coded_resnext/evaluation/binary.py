"""Per-class binary classifiers (docs/method.md section 7): extracted, thresholded on training samples, scored.

Two steps, so nothing that is reported was used to fit:

* ``fit_binary_classifiers`` (training samples only): for class k, the extracted (pruned) classifier's
  threshold maximising F1, the refit output row (``refit.py``) and its threshold, and the full network's
  one-vs-rest thresholds (softmax probability of k, and its raw logit k). Each threshold is fitted at the
  prior the figures are measured at, as the authors fit theirs (``Compute_Threshold_for_Best_F1``): the
  negatives are subsampled to ``negatives_per_positive`` per positive, ``draws`` times, and the max-F1
  thresholds of the draws are averaged. Fitting on every negative instead (1:99 on CIFAR-100, 1:999 on
  ImageNet) moves the max-F1 point up, trading recall for precision, so the figures measured at 1:9
  would show a classifier tuned for another prior.
* ``measure_binary_classifiers`` (one evaluation split: validation, or the test split at the end of a
  single run): precision, recall and F1 at those thresholds, negatives subsampled to
  ``negatives_per_positive`` per positive (as the paper does for many classes; stratified over the
  other classes), precision again with out-of-distribution images as the negatives (every one of them,
  as the authors measure CIFAR-10's against all 10,000 CIFAR-100 test images, or
  ``ood_negatives_per_positive`` per positive, as they measure CIFAR-100's), and the score histograms of
  Fig. 3 / Fig. 7 (positives, negatives, OOD negatives).

A class with no sample where one is needed (no positive among the fit samples, none in the split) keeps
its row, with NaN figures and a ``note``; the summary averages the classes that have figures and
counts the others (``binary/classes_skipped``).

Both steps take the classifiers' outputs from the pass the suite makes over each split anyway
(``collect``'s heads: ``feature_heads`` for the fit samples, ``score_heads`` for a split and the OOD
images), so every class costs its pruned blocks after the model's trunk and no reading of the data of
its own; without them (a caller's own loader) each classifier runs over the loader itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import precision_recall_curve, precision_recall_fscore_support
from torch import Tensor, nn
from torch.utils.data import Dataset

from coded_resnext.datasets.sampling import LabelledSubset, stratified_sample
from coded_resnext.evaluation.collect import Collected, Head
from coded_resnext.evaluation.refit import fit_score_row, pruned_features, score_row
from coded_resnext.extraction import BinaryClassifier, extract_binary_classifier
from coded_resnext.models import CodedResNeXt
from coded_resnext.models.accounting import parameter_count

# score rows: the paper's classifier (row k of the final layer), its refit copy, and the full network
# one-vs-rest by its softmax and by its raw logit k
PRUNED = ("", "refit_")
FULL = ("full_", "full_logit_")
HISTOGRAM_BINS = 30


def best_f1_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold with the highest F1 (predict positive when score >= threshold)."""
    if labels.sum() == 0:
        return float(np.inf)
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    f1 = 2 * precision[:-1] * recall[:-1] / np.clip(precision[:-1] + recall[:-1], 1e-12, None)
    return float(thresholds[int(np.argmax(f1))])


def subsample_negatives(targets: np.ndarray, k: int, ratio: int, seed: int) -> np.ndarray:
    """Positions keeping every sample of class ``k`` and at most ``ratio`` negatives per positive,
    the negatives drawn seeded and stratified over the other classes."""
    pos = np.flatnonzero(targets == k)
    neg = np.flatnonzero(targets != k)
    limit = ratio * max(len(pos), 1)
    if len(neg) > limit:
        neg = neg[stratified_sample(targets[neg], limit, seed).numpy()]
    return np.concatenate([pos, neg])


def _metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    # one call for the three (each of sklearn's scorers validates its input again: 3x the time for the same)
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, scores >= threshold, average="binary", zero_division=0
    )
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


def choose_classes(num_classes: int, how_many: int, seed: int) -> list[int]:
    if how_many >= num_classes:
        return list(range(num_classes))
    rng = np.random.default_rng(seed)
    return sorted(int(c) for c in rng.choice(num_classes, size=how_many, replace=False))


def _row_scores(row: nn.Linear, features: Tensor) -> np.ndarray:
    """A classifier's output (B,) from its pooled features: its output row only."""
    return row(features.to(row.weight.device)).float().cpu()[:, 0].numpy()


def extract_classifiers(model: CodedResNeXt, classes: Sequence[int]) -> dict[int, BinaryClassifier]:
    """Each class's binary classifier, unfused (its parameters counted like the model's; its stem and the
    blocks before the first coded block the model's own copies, so ``features_from`` continues the trunk)."""
    return {k: extract_binary_classifier(model, k, fuse=False) for k in classes}


def feature_heads(classifiers: dict[int, BinaryClassifier], depth: int) -> dict[int, Head]:
    """``collect`` heads: each classifier's pooled features (S, D) from the trunk's output at ``depth``."""
    return {k: (lambda h, c=c: c.features_from(h, depth)) for k, c in classifiers.items()}


def fit_draws(
    targets: np.ndarray, k: int, negatives_per_positive: int | None, draws: int, seed: int
) -> list[np.ndarray]:
    """The fit samples of class ``k``'s thresholds, one sorted position array per draw: every positive
    and ``negatives_per_positive`` negatives per positive (stratified over the other classes), drawn
    ``draws`` times with seeds from ``(seed, k, draw)``. One draw of every sample when there are no more
    negatives than that (``negatives_per_positive`` None, or CIFAR-10's own 1:9), as nothing is left to draw."""
    positives = int((targets == k).sum())
    negatives = len(targets) - positives
    if negatives_per_positive is None or negatives <= negatives_per_positive * max(positives, 1):
        return [np.arange(len(targets))]
    out = []
    for draw in range(draws):
        draw_seed = int(np.random.SeedSequence([seed, k, draw]).generate_state(1)[0])
        out.append(np.sort(subsample_negatives(targets, k, negatives_per_positive, draw_seed)))
    return out


def mean_f1_threshold(labels: np.ndarray, scores: np.ndarray, draws: Sequence[np.ndarray]) -> float:
    """The max-F1 thresholds of the draws (positions into ``labels`` and ``scores``), averaged as the authors do."""
    return float(np.mean([best_f1_threshold(labels[d], scores[d]) for d in draws]))


@dataclass
class FittedClass:
    """What the fit samples (training images) fixed for class ``k``'s classifiers; nothing here saw
    a validation or test image."""

    k: int
    fit_positives: int
    thresholds: dict[str, float]  # per score row: "", "refit_", "full_", "full_logit_"
    refit_row: tuple[Tensor, float] | None = None  # the refit output row (weight, bias)
    fit_negatives: int = 0  # negatives of each draw
    fit_draws: int = 1  # draws whose thresholds were averaged

    @property
    def note(self) -> str:
        return "" if self.fit_positives else "no sample of this class among the fit samples"

    def rows(self, classifier: BinaryClassifier) -> dict[str, nn.Linear]:
        """The pruned classifier's score rows by prefix: its own output row and, when refit, the refit one."""
        rows = {"": classifier.fc}
        if self.refit_row is not None:
            rows["refit_"] = score_row(classifier, *self.refit_row)
        return rows


def score_heads(fitted: Sequence[FittedClass], classifiers: dict[int, BinaryClassifier], depth: int) -> dict[int, Head]:
    """``collect`` heads: per fitted class, the (S, R) scores of its rows (``FittedClass.rows`` order)
    from the trunk's output at ``depth``; a split then costs no features kept."""
    heads = {}
    for fc in fitted:
        classifier, rows = classifiers[fc.k], list(fc.rows(classifiers[fc.k]).values())

        def head(h: Tensor, classifier=classifier, rows=rows) -> Tensor:
            features = classifier.features_from(h, depth)
            return torch.cat([row(features) for row in rows], 1)

        heads[fc.k] = head
    return heads


@torch.no_grad()
def fit_binary_classifiers(
    model: CodedResNeXt,
    classes: Sequence[int],
    fit_set: Dataset,
    loader: Callable[[Dataset], Iterable],
    fit: Collected,
    device: torch.device,
    *,
    refit: bool = True,
    negatives_per_positive: int | None = 9,
    draws: int = 10,
    seed: int = 0,
    classifiers: dict[int, BinaryClassifier] | None = None,
) -> list[FittedClass]:
    """Thresholds (max F1 at ``negatives_per_positive`` negatives per positive, averaged over ``draws``;
    see ``fit_draws``) and refit rows of each class's classifiers, on ``fit_set`` (``fit``: the full
    model's pass over it, in its order; ``loader`` batches a dataset in order).

    The draws reuse scores: the full network's come from ``fit``; each class's pruned network's features
    come from ``fit`` too when it carries them (``feature_heads`` of ``classifiers``: one pass over the fit
    samples for every class), else that network reads its positives and the negatives its draws hold, once
    (on ImageNet about 9 x 10 negatives per positive instead of every fit sample). ``fit_set`` must give
    the same image on every read (``FixedAugmentation`` for an augmented one). The refit row is a logistic
    regression on those samples, each negative weighted by the share of the draws that hold it: the
    draws' average loss, at their prior."""
    model.eval()
    targets = fit.targets.numpy()
    probabilities, logits = torch.softmax(fit.logits, 1).numpy(), fit.logits.numpy()
    out = []
    for k in classes:
        labels = targets == k
        if not labels.any():  # nothing to fit: the class keeps its row with a note
            thresholds = {"": math.inf, "full_": math.inf, "full_logit_": math.inf}
            out.append(FittedClass(k, 0, thresholds | ({"refit_": math.nan} if refit else {})))
            continue
        chosen = fit_draws(targets, k, negatives_per_positive, draws, seed)
        read = np.unique(np.concatenate(chosen))  # every sample some draw holds, once
        where = [np.searchsorted(read, d) for d in chosen]  # each draw's rows among those read
        binary = (classifiers or {}).get(k) or extract_binary_classifier(model, k, fuse=False).to(device)
        if k in fit.outputs:
            features = fit.outputs[k][torch.from_numpy(read)]
        else:
            features, _ = pruned_features(binary, loader(LabelledSubset(fit_set, torch.from_numpy(read))), device)
        mine = labels[read]
        thresholds = {
            "": mean_f1_threshold(mine, _row_scores(binary.fc, features), where),
            "full_": mean_f1_threshold(labels, probabilities[:, k], chosen),
            "full_logit_": mean_f1_threshold(labels, logits[:, k], chosen),
        }
        row = None
        if refit and not mine.all():
            weight = np.bincount(np.concatenate(where), minlength=len(read)) / len(where)
            weight[mine] = 1.0
            row = fit_score_row(features, torch.from_numpy(mine), sample_weight=weight)
            thresholds["refit_"] = mean_f1_threshold(mine, _row_scores(score_row(binary, *row), features), where)
        elif refit:
            thresholds["refit_"] = math.nan
        negatives = int((~labels[chosen[0]]).sum())
        out.append(FittedClass(k, int(labels.sum()), thresholds, row, negatives, len(chosen)))
    return out


@dataclass
class OodNegatives:
    """Out-of-distribution images and their own labels (to stratify each class's sample of them); with
    ``scores``, each class's (S, R) row scores on them (``score_heads``) already computed."""

    loader: Iterable
    source_targets: Tensor
    scores: dict[int, Tensor] | None = None


def _histogram_rows(k: int, groups: dict[str, np.ndarray], threshold: float) -> list[dict]:
    """Fig. 3 / Fig. 7: the paper classifier's score histogram per group, on shared bins."""
    present = [v for v in groups.values() if len(v)]
    if not present:
        return []
    values = np.concatenate(present)
    edges = np.histogram_bin_edges(values[np.isfinite(values)], bins=HISTOGRAM_BINS)
    rows = []
    for kind, scores in groups.items():
        counts, _ = np.histogram(scores, bins=edges)
        rows += [
            {
                "class": k,
                "kind": kind,
                "bin_left": float(lo),
                "bin_right": float(hi),
                "count": int(c),
                "threshold": threshold,
            }
            for lo, hi, c in zip(edges[:-1], edges[1:], counts, strict=True)
        ]
    return rows


@torch.no_grad()
def measure_binary_classifiers(
    model: CodedResNeXt,
    fitted: Sequence[FittedClass],
    loader: Iterable,
    split: Collected,
    device: torch.device,
    *,
    ood: OodNegatives | None = None,
    negatives_per_positive: int = 9,
    ood_negatives_per_positive: int | None = None,
    seed: int = 0,
    classifiers: dict[int, BinaryClassifier] | None = None,
) -> tuple[list[dict], list[dict]]:
    """(one row per class, score-histogram rows) on the split ``loader`` yields (``split``: the full
    model's pass over it; with ``score_heads`` of ``classifiers`` it carries each class's row scores, else
    each classifier runs over ``loader`` and the OOD images), at the thresholds in ``fitted``."""
    model.eval()
    targets = split.targets.numpy()
    probabilities, logits = torch.softmax(split.logits, 1).numpy(), split.logits.numpy()
    full_params = parameter_count(model)
    full_params_paper = parameter_count(model, paper_accounting=True)
    rows, histograms = [], []
    for fc in fitted:
        k = fc.k
        binary = (classifiers or {}).get(k) or extract_binary_classifier(model, k, fuse=False).to(device)
        labels = targets == k
        keep = subsample_negatives(targets, k, negatives_per_positive, seed + k)
        row: dict = {
            "class": k,
            # unfused: sizes counted like the full model's (BatchNorms included); scores are the same either way
            "param_fraction": parameter_count(binary) / full_params,
            "param_fraction_paper": parameter_count(binary, paper_accounting=True) / full_params_paper,
            "fit_positives": fc.fit_positives,
            "fit_negatives": fc.fit_negatives,
            "fit_draws": fc.fit_draws,
            "positives": int(labels.sum()),
            "negatives": int(len(keep) - labels.sum()),
            "note": fc.note or ("" if labels.any() else "no sample of this class in this split"),
        }
        row.update({f"{prefix}threshold": t for prefix, t in fc.thresholds.items()})
        metric_keys = [
            f"{p}{m}" for p in (*PRUNED, *FULL) if f"{p}threshold" in row for m in ("precision", "recall", "f1")
        ]
        if ood is not None:
            metric_keys += [f"{p}ood_precision" for p in PRUNED if f"{p}threshold" in row]
        row.update(dict.fromkeys(metric_keys, math.nan))
        if row["note"]:
            rows.append(row)
            continue
        score_rows = fc.rows(binary)
        split_scores = _scores(split, k, score_rows, binary, loader, device)
        ood_scores_all = None
        if ood is not None:
            limit = None if ood_negatives_per_positive is None else ood_negatives_per_positive * int(labels.sum())
            chosen = stratified_sample(ood.source_targets, limit, seed + k)
            ood_scores_all = {p: v[chosen] for p, v in _scores_of(ood, k, score_rows, binary, device).items()}
            row["ood_negatives"] = len(chosen)
        for prefix in score_rows:
            scores = split_scores[prefix]
            threshold = fc.thresholds[prefix]
            row.update({f"{prefix}{m}": v for m, v in _metrics(labels[keep], scores[keep], threshold).items()})
            ood_scores = ood_scores_all[prefix] if ood_scores_all is not None else None
            if ood_scores is not None:
                pos = scores[labels]
                both = np.concatenate([np.ones(len(pos), bool), np.zeros(len(ood_scores), bool)])
                row[f"{prefix}ood_precision"] = _metrics(both, np.concatenate([pos, ood_scores]), threshold)[
                    "precision"
                ]
            if prefix == "":
                groups = {"positive": scores[labels], "negative": scores[keep][~labels[keep]]}
                if ood_scores is not None:
                    groups["ood"] = ood_scores
                histograms += _histogram_rows(k, groups, threshold)
        for prefix, scores in (("full_", probabilities[:, k]), ("full_logit_", logits[:, k])):
            row.update(
                {f"{prefix}{m}": v for m, v in _metrics(labels[keep], scores[keep], fc.thresholds[prefix]).items()}
            )
        rows.append(row)
    return rows, histograms


def _scores(
    split: Collected, k: int, rows: dict[str, nn.Linear], binary: BinaryClassifier, loader: Iterable, device
) -> dict[str, np.ndarray]:
    """Class ``k``'s row scores on a split: from its pass (``score_heads``), else by running the classifier."""
    if k in split.outputs:
        return {prefix: split.outputs[k][:, i].numpy() for i, prefix in enumerate(rows)}
    features, _ = pruned_features(binary, loader, device)
    return {prefix: _row_scores(row, features) for prefix, row in rows.items()}


def _scores_of(ood: OodNegatives, k: int, rows: dict[str, nn.Linear], binary: BinaryClassifier, device):
    if ood.scores is not None and k in ood.scores:
        return {prefix: ood.scores[k][:, i].numpy() for i, prefix in enumerate(rows)}
    features, _ = pruned_features(binary, ood.loader, device)
    return {prefix: _row_scores(row, features) for prefix, row in rows.items()}


def binary_summary(rows: list[dict]) -> dict[str, float]:
    """Means over the classes that have figures (``binary/...``), and how many had none."""
    if not rows:
        return {}
    scored = [r for r in rows if not r.get("note")]
    out = {
        "binary/param_fraction": float(np.mean([r["param_fraction"] for r in rows])),
        "binary/param_fraction_paper": float(np.mean([r["param_fraction_paper"] for r in rows])),
        "binary/classes_skipped": float(len(rows) - len(scored)),
    }
    if not scored:
        return out

    def mean(key: str) -> float:
        return float(np.mean([r[key] for r in scored]))

    out.update(
        {
            "binary/f1_mean": mean("f1"),
            "binary/precision_mean": mean("precision"),
            "binary/recall_mean": mean("recall"),
            "binary/full_f1_mean": mean("full_f1"),
            "binary/full_logit_f1_mean": mean("full_logit_f1"),
        }
    )
    if "ood_precision" in scored[0]:
        out["binary/ood_precision_mean"] = mean("ood_precision")
    refit = [r for r in scored if np.isfinite(r.get("refit_f1", math.nan))]
    if refit and len(refit) == len(scored):  # a mean over fewer classes would not compare with the paper row's
        out["binary/refit_f1_mean"] = mean("refit_f1")
        out["binary/refit_precision_mean"] = mean("refit_precision")
        out["binary/refit_recall_mean"] = mean("refit_recall")
        if "refit_ood_precision" in scored[0]:
            out["binary/refit_ood_precision_mean"] = mean("refit_ood_precision")
    return out
