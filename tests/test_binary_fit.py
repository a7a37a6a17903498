"""The binary classifiers' thresholds are fitted as the authors fit them: at the prior they are measured at
(negatives subsampled to 9 per positive, thresholds averaged over 10 draws), on augmented training images."""

from __future__ import annotations

import dataclasses
import math
import random

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, precision_score, recall_score
from torch.utils.data import DataLoader, Dataset, TensorDataset

import coded_resnext as cr
from coded_resnext.datasets.fixed_augmentation import FixedAugmentation
from coded_resnext.datasets.sampling import stratified_subset
from coded_resnext.evaluation import EvalSettings, SuiteData, run_suite
from coded_resnext.evaluation.binary import best_f1_threshold, fit_draws, mean_f1_threshold
from tests.conftest import randomize_batchnorm

CPU = torch.device("cpu")
# the rest of the suite at its smallest: these tests read the binary thresholds
CHEAP = {"invariance_samples": 0, "removal_samples": 4, "removal_block": -1, "early_exit_thresholds": 2}


def _measured(threshold: float, pos: np.ndarray, neg: np.ndarray) -> tuple[float, float, float]:
    labels = np.r_[np.ones(len(pos), bool), np.zeros(len(neg), bool)]
    pred = np.r_[pos, neg] >= threshold
    return precision_score(labels, pred), recall_score(labels, pred), f1_score(labels, pred)


@pytest.mark.unit
def test_a_fit_on_every_negative_of_100_classes_inflates_precision_and_deflates_recall_at_1_to_9():
    """Two Gaussians (positives N(2.4, 1), negatives N(0, 1)), 100 classes of 200 fit samples: the authors'
    fit (9 negatives per positive, 10 draws) lands near the best point at the 1:9 prior the figures are
    measured at; a fit on all 99 negatives per positive lands far above it."""
    rng = np.random.default_rng(0)
    targets = np.repeat(np.arange(100), 200)
    scores = np.where(targets == 0, rng.normal(2.4, 1, len(targets)), rng.normal(0, 1, len(targets)))
    labels = targets == 0
    chosen = fit_draws(targets, 0, 9, 10, seed=0)
    assert len(chosen) == 10 and all(labels[d].sum() == 200 and (~labels[d]).sum() == 1800 for d in chosen)
    for d in chosen:  # stratified over the other classes: 1,800 of 99 classes is 18 or 19 of each
        counts = np.bincount(targets[d][~labels[d]], minlength=100)[1:]
        assert counts.min() >= 18 and counts.max() <= 19
    authors = mean_f1_threshold(labels, scores, chosen)
    assert authors == pytest.approx(np.mean([best_f1_threshold(labels[d], scores[d]) for d in chosen]))
    every = mean_f1_threshold(labels, scores, fit_draws(targets, 0, None, 10, seed=0))
    assert every == pytest.approx(best_f1_threshold(labels, scores))

    pos, neg = rng.normal(2.4, 1, 100_000), rng.normal(0, 1, 900_000)  # what is measured: 1:9
    best = best_f1_threshold(np.r_[np.ones(len(pos), bool), np.zeros(len(neg), bool)], np.r_[pos, neg])
    p_authors, r_authors, f1_authors = _measured(authors, pos, neg)
    p_every, r_every, f1_every = _measured(every, pos, neg)
    assert abs(authors - best) < 0.15 < every - best
    assert p_every > p_authors + 0.1 and r_every < r_authors - 0.15 and f1_every < f1_authors - 0.05


@pytest.mark.unit
def test_no_draw_where_the_fit_samples_already_hold_9_negatives_per_positive():
    targets = np.repeat(np.arange(10), 50)  # CIFAR-10's own prior
    (only,) = fit_draws(targets, 3, 9, 10, seed=0)
    assert np.array_equal(only, np.arange(500))
    (only,) = fit_draws(np.repeat(np.arange(100), 5), 3, None, 10, seed=0)  # None: every negative
    assert len(only) == 500


def _labelled(x: torch.Tensor, y: torch.Tensor) -> TensorDataset:
    dataset = TensorDataset(x, y)
    dataset.targets = y
    return dataset


def _best_f1_by_hand(labels: np.ndarray, scores: np.ndarray) -> float:
    """The smallest threshold with the highest F1, trying every score (predict positive when >= t)."""
    best, best_t = -1.0, math.inf
    for t in np.sort(np.unique(scores)):
        pred = scores >= t
        f1 = 2 * (pred & labels).sum() / (pred.sum() + labels.sum())
        if f1 > best + 1e-12:
            best, best_t = f1, float(t)
    return best_t


def _few(dataset: TensorDataset) -> TensorDataset:
    """40 images of ``dataset`` (2 per class): the split the suite measures, which these tests do not read."""
    x, y = dataset.tensors
    return _labelled(x[:40], y[:40])


@pytest.fixture(scope="module")
def twenty_classes():
    torch.manual_seed(0)
    model = cr.create_model("coded_resnext_mini", 20, in_chans=1).eval()
    randomize_batchnorm(model)
    g = torch.Generator().manual_seed(1)
    y = torch.arange(400) % 20  # 20 per class: 19 negatives per positive
    x = (
        torch.randn(400, 1, 16, 16, generator=g)
        + 0.3 * (y % 5)[:, None, None, None]
        - 0.2 * (y // 5)[:, None, None, None]
    )
    return model, _labelled(x, y)


def test_the_suite_fits_each_threshold_at_9_negatives_per_positive_averaged_over_10_draws(twenty_classes):
    model, fit = twenty_classes
    settings = EvalSettings(binary_classes=4, binary_fit_samples=400, binary_fit_augmented=False, **CHEAP)
    result = run_suite(model, SuiteData(fit=fit, val=_few(fit)), device=CPU, settings=settings)
    rows = result.tables["binary_classifiers"]
    x, y = fit.tensors
    labels_all = y.numpy()
    moved = 0
    for row in rows:
        k = row["class"]
        assert (row["fit_positives"], row["fit_negatives"], row["fit_draws"]) == (20, 180, 10)
        with torch.no_grad():
            scores = cr.extract_binary_classifier(model, k, fuse=False)(x).numpy()
        labels = labels_all == k
        chosen = fit_draws(labels_all, k, 9, 10, seed=0)
        expected = np.mean([_best_f1_by_hand(labels[d], scores[d]) for d in chosen])
        assert row["threshold"] == pytest.approx(expected, rel=1e-5, abs=1e-6), k
        moved += abs(_best_f1_by_hand(labels, scores) - expected) > 1e-3  # the 1:19 fit of before
    assert moved >= 2


class _Shifted(Dataset):
    """The clean images plus noise drawn from torch's generator: an augmentation."""

    def __init__(self, clean: TensorDataset) -> None:
        self.clean, self.targets = clean, clean.targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        x, y = self.clean[i]
        return x + 0.8 * torch.randn(x.shape) + random.random(), y


def test_fixed_augmentation_reads_the_same_image_anywhere_and_leaves_the_callers_generators_alone(twenty_classes):
    _, clean = twenty_classes
    fixed = FixedAugmentation(_Shifted(clean), seed=3)
    torch.manual_seed(5)
    random.seed(5)
    expected_next = (torch.rand(1), random.random())
    torch.manual_seed(5)
    random.seed(5)
    first = torch.stack([fixed[i][0] for i in range(40)])
    assert (torch.rand(1), random.random()) == expected_next
    again = torch.stack([fixed[i][0] for i in range(40)])
    in_workers = torch.cat([x for x, _ in DataLoader(fixed, batch_size=7, num_workers=2)])[:40]
    assert torch.equal(first, again) and torch.equal(first, in_workers)
    assert torch.equal(FixedAugmentation(_Shifted(clean), seed=3)[17][0], first[17])
    assert not torch.equal(FixedAugmentation(_Shifted(clean), seed=4)[17][0], first[17])
    assert not torch.allclose(first, clean.tensors[0][:40], atol=0.1)


def test_the_suite_fits_on_the_augmented_view_when_asked(twenty_classes):
    model, clean = twenty_classes
    settings = EvalSettings(binary_classes=3, binary_fit_samples=200, **CHEAP)
    data = SuiteData(fit=clean, val=_few(clean), fit_augmented=_Shifted(clean))
    result = run_suite(model, data, device=CPU, settings=settings)
    fit_set = FixedAugmentation(stratified_subset(_Shifted(clean), 200, 0), 0)  # the suite's: 10 per class
    x = torch.stack([fit_set[i][0] for i in range(len(fit_set))])
    y = fit_set.targets.numpy()
    clean_result = run_suite(
        model, data, device=CPU, settings=dataclasses.replace(settings, binary_fit_augmented=False)
    )
    for row, clean_row in zip(
        result.tables["binary_classifiers"], clean_result.tables["binary_classifiers"], strict=True
    ):
        k = row["class"]
        with torch.no_grad():
            scores = cr.extract_binary_classifier(model, k, fuse=False)(x).numpy()
        chosen = fit_draws(y, k, 9, 10, seed=0)
        expected = np.mean([_best_f1_by_hand((y == k)[d], scores[d]) for d in chosen])
        assert row["threshold"] == pytest.approx(expected, rel=1e-5, abs=1e-6), k
        assert abs(row["threshold"] - clean_row["threshold"]) > 1e-3, k
    with pytest.raises(ValueError, match="binary_fit_augmented needs the training samples under the training"):
        run_suite(model, SuiteData(fit=clean, val=_few(clean)), device=CPU, settings=settings)
