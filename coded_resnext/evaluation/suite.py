"""The evaluation suite: everything the paper measures on a trained model, as plain values and tables.

``evaluate`` is the cheap per-epoch part (accuracy, loss, early-decoding accuracy per coded block);
``run_suite`` adds binary classifiers, early exit, branch removal and invariance. Nothing here logs:
the caller decides where the numbers go.

Three data roles (docs/architecture.md, Data), and what each is used for here:

* training samples (a seeded stratified sample of ``eval.binary_fit_samples``, under the training
  transform, ``SuiteData.fit_augmented``, as the authors fit on their training loader, or with
  ``eval.binary_fit_augmented: false`` under the eval transform, ``SuiteData.fit``): every threshold and
  refit row of the binary classifiers;
* the validation split (``val``): measured, and where the early-exit operating points are chosen
  (without a validation split, the paper's protocol, they are chosen on those training samples:
  augmented, they are nearer to held-out images than the clean training images a long run has fitted);
* the test split (``test``, given only by a single ``train`` run and ``coded-resnext evaluate``):
  measured once, at what train and val fixed. Its metrics are the validation names under ``test/``
  (``val/accuracy`` -> ``test/accuracy``, ``binary/f1_mean`` -> ``test/binary/f1_mean``), its tables
  the validation tables' names prefixed ``test_``.

Every subsample is seeded and class-stratified (``coded_resnext.datasets.sampling``), never "the first
N in file order".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from coded_resnext.coding import CodingScheme
from coded_resnext.coding.decoding import decode
from coded_resnext.datasets.fixed_augmentation import FixedAugmentation
from coded_resnext.datasets.sampling import stratified_subset
from coded_resnext.evaluation.binary import (
    FittedClass,
    OodNegatives,
    binary_summary,
    choose_classes,
    extract_classifiers,
    feature_heads,
    fit_binary_classifiers,
    measure_binary_classifiers,
    score_heads,
)
from coded_resnext.evaluation.collect import Collected, collect, head_outputs, mean_energy_by_class
from coded_resnext.evaluation.early_exit import (
    early_exit_at_operating_points,
    early_exit_curve,
    early_exit_summary,
    exit_compute_fractions,
    operating_points,
)
from coded_resnext.evaluation.invariance import invariance_rows, invariance_summary
from coded_resnext.evaluation.removal import removal_curves, removal_summary
from coded_resnext.evaluation.settings import EvalSettings
from coded_resnext.extraction.fusion import fuse_for_inference

logger = logging.getLogger(__name__)


def default_loader(dataset: Dataset) -> DataLoader:
    return DataLoader(dataset, batch_size=256, shuffle=False)


@dataclass
class SuiteData:
    """The datasets the suite reads; ``loader`` turns a (sub)dataset into batches (the suite subsamples
    datasets, not loaders, so that every sample it draws is stratified)."""

    fit: Dataset  # training samples under the eval transform (eval.binary_fit_augmented false)
    val: Dataset | None  # the held-out validation split (None: val_fraction 0)
    test: Dataset | None = None  # the test split: only a single run's end and `evaluate` pass it
    ood: Dataset | None = None  # out-of-distribution negatives (``source_targets`` for stratifying)
    loader: Callable[[Dataset], Iterable] = default_loader
    measure_val: bool = True  # False: val only chooses the early-exit operating points (``evaluate``)
    # the same training samples under the training transform: the binary fit's (eval.binary_fit_augmented)
    fit_augmented: Dataset | None = None


def binary_fit_set(data: SuiteData, settings: EvalSettings, seed: int) -> Dataset:
    """The training samples every binary threshold and refit row is fitted on: a seeded, stratified
    ``settings.binary_fit_samples`` of them, augmented (each sample's augmentation fixed by ``seed``, so
    every read and a later ``evaluate`` see the same images) unless ``binary_fit_augmented`` is off."""
    if settings.binary_fit_augmented and data.fit_augmented is None:
        raise ValueError(
            "eval.binary_fit_augmented needs the training samples under the training transform: pass "
            "SuiteData(fit_augmented=...) (a DatasetBundle's train), or set binary_fit_augmented=False"
        )
    source = data.fit_augmented if settings.binary_fit_augmented else data.fit
    return FixedAugmentation(stratified_subset(source, settings.binary_fit_samples, seed), seed)


@dataclass
class SuiteResult:
    metrics: dict[str, float]
    tables: dict[str, list[dict]] = field(default_factory=dict)  # name -> rows
    energy_by_class: list[Tensor] = field(default_factory=list)  # per coded block, (K, N) mean energies
    schemes: list[CodingScheme] = field(default_factory=list)  # per coded block
    primary: str = "val"  # the split the run's plots show: "val", or "test" when there is no validation split

    def table(self, name: str) -> list[dict]:
        """A table of the primary split (``binary_classifiers`` is ``test_binary_classifiers`` when the
        run had no validation split)."""
        return self.tables.get(name if self.primary == "val" else f"test_{name}", [])

    def metric(self, name: str) -> float | None:
        """A metric of the primary split, by its validation name."""
        return self.metrics.get(name if self.primary == "val" else as_test_metric(name))


def as_test_metric(name: str) -> str:
    """The test split's name of a validation metric: ``val/x`` -> ``test/x``, ``binary/x`` -> ``test/binary/x``."""
    return "test/" + name.removeprefix("val/")


def decode_accuracies(model, collected: Collected) -> dict[str, float]:
    out = {}
    for i, (energies, info) in enumerate(zip(collected.energies, model.coded_blocks, strict=True)):
        pred = decode(energies, info.scheme).prediction
        out[f"val/decode_accuracy/block_{i}"] = (pred == collected.targets).float().mean().item()
    return out


def basic_metrics(model, collected: Collected) -> dict[str, float]:
    metrics = {
        "val/accuracy": collected.accuracy,
        # the cross-entropy the model trains with (its label smoothing), so train and val losses compare
        "val/loss": F.cross_entropy(
            collected.logits, collected.targets, label_smoothing=model.config.label_smoothing
        ).item(),
    }
    metrics.update(decode_accuracies(model, collected))
    return metrics


def evaluate(model, loader: Iterable, device: torch.device, limit: int | None = None) -> dict[str, float]:
    """Per-epoch validation: accuracy, cross-entropy, and Eq. 7 decoding accuracy of each coded block."""
    return basic_metrics(model, collect(model, loader, device, limit))


@dataclass
class _Fitted:
    """What the training samples (and, for early exit, the validation split) fixed."""

    classes: list[FittedClass]
    fractions: list[float]  # per coded block, the compute fraction of exiting after it
    operating: dict[str, float] | None  # early-exit thresholds (None: choose them on the validation split)
    classifiers: dict = field(default_factory=dict)  # class -> its extracted binary classifier (unfused)
    scorers: dict = field(default_factory=dict)  # the same, BatchNorms folded: what scores the images
    ood_scores: dict | None = None  # class -> its row scores on the OOD images (the same for every split)


def _one_pass(model: nn.Module, settings: EvalSettings) -> bool:
    """Whether every class's pruned network reads every fit sample in the model's own pass (the trunk run
    once per image), rather than each reading only the samples its draws hold. One pass wins while the
    draws hold a large share of the fit set: (1 + r * draws) samples per positive out of ``num_classes``
    per positive, at least half of them (CIFAR-10 and CIFAR-100 at 1:9 x 10 draws, every sample without a
    prior); on ImageNet the draws hold about 6,000 of 90,000 samples per class, so each class reads those."""
    r = settings.binary_fit_negatives_per_positive
    return r is None or 2 * (1 + r * settings.binary_fit_draws) >= model.num_classes


def run_suite(
    model,
    data: SuiteData,
    *,
    device: torch.device,
    settings: EvalSettings,
    seed: int = 0,
    full: bool = True,
) -> SuiteResult:
    """Fit on training samples, then measure the validation split and, when given, the test split.
    Says what it is doing as progress lines (``logging``, INFO).

    ``full=False`` (a search's trial) measures the branch-removal diagnostic at the points its summary
    reads instead of its whole curves; every other figure is the same."""
    model.eval()
    fit_set = binary_fit_set(data, settings, seed)
    fit_loader = data.loader(fit_set)
    kind = "augmented" if settings.binary_fit_augmented else "clean"
    logger.info(f"evaluation: fitting thresholds on {len(fit_set)} {kind} training samples")
    classes = choose_classes(model.num_classes, settings.binary_classes, seed)
    classifiers = {k: c.to(device) for k, c in extract_classifiers(model, classes).items()}
    # BatchNorms folded for scoring (as `extract` deploys them): the same scores to ~1e-6, in 0.85 of the time
    scorers = {k: fuse_for_inference(c) for k, c in classifiers.items()}
    fit = collect(
        model,
        fit_loader,
        device,
        heads=feature_heads(scorers, model.trunk_depth) if _one_pass(model, settings) else None,
    )
    fitted = _Fitted(
        fit_binary_classifiers(
            model,
            classes,
            fit_set,
            data.loader,
            fit,
            device,
            refit=settings.binary_refit,
            negatives_per_positive=settings.binary_fit_negatives_per_positive,
            draws=settings.binary_fit_draws,
            seed=seed,
            classifiers=scorers,
        )
        if classes
        else [],
        exit_compute_fractions(model, first_example(fit_loader).to(device)) if model.coded_blocks else [],
        None,
        classifiers,
        scorers,
    )
    fit.outputs.clear()  # the features: only the fit needed them
    if data.val is None and model.coded_blocks:  # no validation split: operating points from training samples
        curve = early_exit_curve(model, fit, fitted.fractions, settings.early_exit_thresholds)
        fitted.operating = operating_points(curve, fit.accuracy)
    result = SuiteResult({}, schemes=[info.scheme for info in model.coded_blocks])
    result.primary = "val" if data.val is not None and data.measure_val else "test"
    for role, dataset in (("val", data.val), ("test", data.test)):
        if dataset is None:
            continue
        if role == "val" and not data.measure_val:
            if model.coded_blocks:
                logger.info("evaluation: early-exit operating points on the val split")
                part = stratified_subset(dataset, settings.limit_val, seed)
                collected = collect(model, data.loader(part), device)
                curve = early_exit_curve(model, collected, fitted.fractions, settings.early_exit_thresholds)
                fitted.operating = operating_points(curve, collected.accuracy)
            continue
        logger.info(f"evaluation: {role} split")
        metrics, tables, energy = _measure(model, role, dataset, data, fitted, device, settings, seed, full)
        if role == "test":
            metrics = {as_test_metric(k): v for k, v in metrics.items()}
            tables = {f"test_{k}": v for k, v in tables.items()}
        result.metrics.update(metrics)
        result.tables.update(tables)
        if role == result.primary:
            result.energy_by_class = energy
    return result


def _measure(model, role, dataset, data: SuiteData, fitted: _Fitted, device, settings: EvalSettings, seed, full):
    """(metrics, tables, energy by class) of one split, named as for validation."""
    part = stratified_subset(dataset, settings.limit_val if role == "val" else None, seed)
    loader = data.loader(part)
    heads = score_heads(fitted.classes, fitted.scorers, model.trunk_depth)
    collected = collect(model, loader, device, heads=heads)  # one pass: the model's outputs, every class's scores
    metrics = basic_metrics(model, collected)
    tables: dict[str, list[dict]] = {
        "decode_accuracy": [
            {
                "block": i,
                "stage": info.stage,
                "accuracy": metrics[f"val/decode_accuracy/block_{i}"],
                "samples": len(part),
            }
            for i, info in enumerate(model.coded_blocks)
        ]
    }
    if fitted.classes:
        logger.info(f"evaluation: binary classifiers for {len(fitted.classes)} classes ({role})")
        ood = None
        if data.ood is not None:
            ood_loader = data.loader(data.ood)
            if fitted.ood_scores is None:  # one pass over the OOD images for every class and split
                fitted.ood_scores, _ = head_outputs(model, heads, ood_loader, device)
            targets = getattr(data.ood, "source_targets", data.ood.targets)
            ood = OodNegatives(ood_loader, targets, fitted.ood_scores)
        rows, histograms = measure_binary_classifiers(
            model,
            fitted.classes,
            loader,
            collected,
            device,
            ood=ood,
            negatives_per_positive=settings.negatives_per_positive,
            ood_negatives_per_positive=settings.ood_negatives_per_positive,
            seed=seed,
            classifiers=fitted.classifiers,
        )
        tables["binary_classifiers"] = rows
        tables["binary_score_histograms"] = histograms
        metrics.update(binary_summary(rows))
    if model.coded_blocks:
        logger.info(f"evaluation: early exit ({role})")
        curve = early_exit_curve(model, collected, fitted.fractions, settings.early_exit_thresholds)
        tables["early_exit_curve"] = curve
        tables["exit_points"] = [
            {"block": i, "stage": info.stage, "compute_fraction": f}
            for i, (info, f) in enumerate(zip(model.coded_blocks, fitted.fractions, strict=True))
        ]
        if fitted.operating is None:  # the validation split: its own curve chooses the operating points
            metrics.update(early_exit_summary(curve, collected.accuracy))
            fitted.operating = operating_points(curve, collected.accuracy)
            tables["early_exit_operating_points"] = [
                {"operating_point": k, "threshold": v} for k, v in fitted.operating.items()
            ]
        else:
            at, tables["early_exit_operating_points"] = early_exit_at_operating_points(
                model, collected, fitted.fractions, fitted.operating
            )
            metrics.update(at)

        logger.info(f"evaluation: branch removal ({role})")
        removal_set = data.loader(stratified_subset(dataset, settings.removal_samples, seed))
        rows = removal_curves(model, removal_set, device, settings.removal_block, None, seed, summary_only=not full)
        tables["removal_curve"] = rows
        metrics.update(removal_summary(rows))

        if settings.invariance_samples:
            logger.info(f"evaluation: invariance of the paths ({role})")
            invariance_set = data.loader(stratified_subset(dataset, settings.invariance_samples, seed))
            rows = invariance_rows(model, invariance_set, device, None)
            tables["invariance"] = rows
            metrics.update(invariance_summary(rows))
    energy = mean_energy_by_class(collected, model.num_classes)
    if model.coded_blocks:
        tables["energy_by_class"] = energy_rows(model, energy)
    return metrics, tables, energy


def energy_rows(model, energy_by_class: list[Tensor]) -> list[dict]:
    """The information paths as a table: per coded block, class and branch, the class's mean normalized
    energy and the branch's bit in the class's codeword; the energy heatmaps are drawn from it (by a
    single run at its end, by ``report`` for a search's best run)."""
    rows = []
    for i, (info, table) in enumerate(zip(model.coded_blocks, energy_by_class, strict=True)):
        bits = model.blocks[info.block_index].codewords.cpu()
        for k in range(table.shape[0]):
            rows += [
                {"block": i, "stage": info.stage, "class": k, "branch": n, "energy": float(e), "bit": int(b)}
                for n, (e, b) in enumerate(zip(table[k].tolist(), bits[k].tolist(), strict=True))
            ]
    return rows


def first_example(loader: Iterable) -> Tensor:
    x, _ = next(iter(loader))
    return x[:1]
