"""The evaluation suite's data roles: fitted on training samples, chosen on validation, measured on test;
every subsample stratified; a class without samples reported, never a crash."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

import coded_resnext as cr
from coded_resnext.datasets import DataSpec, build_dataset
from coded_resnext.evaluation import EvalSettings, SuiteData, collect, run_suite
from coded_resnext.evaluation.early_exit import early_exit_at
from tests.conftest import randomize_batchnorm
from tests.test_datasets import write_image_tree

CPU = torch.device("cpu")
# fitted on the clean training samples (``SuiteData.fit``): these tests hold no augmented view
SMALL = EvalSettings(
    binary_fit_samples=60,
    removal_samples=20,
    invariance_samples=8,
    early_exit_thresholds=6,
    binary_refit=True,
    binary_fit_augmented=False,
)


def _labelled(x: torch.Tensor, y: torch.Tensor) -> TensorDataset:
    dataset = TensorDataset(x, y)
    dataset.targets = y
    return dataset


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = cr.create_model("coded_resnext_mini", 4, in_chans=1).eval()
    randomize_batchnorm(net)
    return net


def _images(n: int, seed: int, classes: int = 4, shift: float = 0.0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.randn(n, 1, 16, 16, generator=g) + shift + 0.8 * y[:, None, None, None]  # class-dependent
    return _labelled(x, y)


def _best_f1_by_hand(labels: np.ndarray, scores: np.ndarray) -> float:
    """The smallest threshold with the highest F1, trying every score (predict positive when >= t)."""
    best, best_t = -1.0, math.inf
    for t in np.sort(np.unique(scores)):
        pred = scores >= t
        tp = (pred & labels).sum()
        f1 = 2 * tp / (pred.sum() + labels.sum()) if pred.sum() + labels.sum() else 0.0
        if f1 > best + 1e-12:
            best, best_t = f1, float(t)
    return best_t


@pytest.mark.unit
def test_every_threshold_is_the_best_f1_point_of_the_fit_samples(model):
    fit, val = _images(60, seed=1), _images(40, seed=2, shift=0.7)  # val differs: its own best point would too
    result = run_suite(model, SuiteData(fit=fit, val=val), device=CPU, settings=SMALL)
    rows = {r["class"]: r for r in result.tables["binary_classifiers"]}
    x_fit, y_fit = fit.tensors
    x_val, y_val = val.tensors
    differs = 0
    for k in range(4):
        binary = cr.extract_binary_classifier(model, k, fuse=False)
        with torch.no_grad():
            fit_scores, val_scores = binary(x_fit).numpy(), binary(x_val).numpy()
        expected = _best_f1_by_hand(y_fit.numpy() == k, fit_scores)
        assert rows[k]["threshold"] == pytest.approx(expected, rel=1e-5, abs=1e-6), k
        differs += not math.isclose(_best_f1_by_hand(y_val.numpy() == k, val_scores), expected, rel_tol=1e-5)
    assert differs >= 2  # fitting on the validation split would have given other thresholds


def test_the_test_split_is_measured_at_what_train_and_val_chose(model):
    fit, val, test = _images(60, 1), _images(40, 2), _images(48, 3, shift=0.3)
    without = run_suite(model, SuiteData(fit=fit, val=val), device=CPU, settings=SMALL)
    assert not [k for k in without.metrics if k.startswith("test/")]
    result = run_suite(model, SuiteData(fit=fit, val=val, test=test), device=CPU, settings=SMALL)
    assert result.primary == "val"
    for key, value in without.metrics.items():  # measuring test changes nothing on val
        assert result.metrics[key] == pytest.approx(value, nan_ok=True), key
    for key in (
        "test/accuracy",
        "test/loss",
        "test/decode_accuracy/block_0",
        "test/binary/f1_mean",
        "test/early_exit/compute_at_99pct_accuracy",
        "test/removal/active_drop",
        "test/invariance/decode_agreement/block_0",
    ):
        assert key in result.metrics, key
    assert {"test_binary_classifiers", "test_early_exit_curve", "test_removal_curve"} <= set(result.tables)
    # the thresholds are the fit's, the early-exit operating point the validation curve's
    val_rows = {r["class"]: r["threshold"] for r in result.tables["binary_classifiers"]}
    assert val_rows == {r["class"]: r["threshold"] for r in result.tables["test_binary_classifiers"]}
    chosen = {r["operating_point"]: r["threshold"] for r in result.tables["early_exit_operating_points"]}
    used = {r["operating_point"]: r["threshold"] for r in result.tables["test_early_exit_operating_points"]}
    assert used == chosen and {"keep_99pct", "half_compute"} <= set(chosen)
    (keep,) = [r for r in result.tables["early_exit_operating_points"] if r["operating_point"] == "keep_99pct"]
    fractions = [r["compute_fraction"] for r in result.tables["exit_points"]]
    (at,) = early_exit_at(model, collect(model, [test.tensors], CPU), fractions, [keep["threshold"]])
    assert result.metrics["test/early_exit/compute_at_99pct_accuracy"] == pytest.approx(at["compute_fraction"])


def test_without_a_validation_split_the_operating_points_come_from_training_samples(model):
    fit, test = _images(60, 1), _images(48, 3)
    result = run_suite(model, SuiteData(fit=fit, val=None, test=test), device=CPU, settings=SMALL)
    assert result.primary == "test" and not [k for k in result.metrics if k.startswith(("val/", "binary/"))]
    assert "test/early_exit/compute_at_99pct_accuracy" in result.metrics
    assert result.table("binary_classifiers") == result.tables["test_binary_classifiers"]


def test_a_class_without_training_samples_is_reported_and_skipped_by_the_plots(model, tmp_path):
    from coded_resnext.results.run_plots import write_run_plots

    fit = _images(60, 1)
    keep = fit.tensors[1] != 3
    fit = _labelled(fit.tensors[0][keep], fit.tensors[1][keep])  # class 3 never among the fit samples
    result = run_suite(model, SuiteData(fit=fit, val=_images(40, 2)), device=CPU, settings=SMALL)
    rows = {r["class"]: r for r in result.tables["binary_classifiers"]}
    assert rows[3]["note"] and rows[3]["fit_positives"] == 0 and math.isnan(rows[3]["f1"])
    assert all(not rows[k]["note"] and math.isfinite(rows[k]["threshold"]) for k in (0, 1, 2))
    assert result.metrics["binary/classes_skipped"] == 1
    assert result.metrics["binary/f1_mean"] == pytest.approx(np.mean([rows[k]["f1"] for k in (0, 1, 2)]))
    written = {p.name for p in write_run_plots(result, tmp_path)}
    assert {"binary_precision_recall.png", "binary_score_histograms.png"} <= written


def test_a_class_sorted_image_folder_gives_every_class_training_samples(tmp_path):
    """torchvision's ImageFolder lists files by class: the first N training images are all class 0."""
    classes = ("a", "b", "c", "d")
    write_image_tree(tmp_path / "train", classes, per_class=12, size=(16, 16))
    write_image_tree(tmp_path / "val", classes, per_class=3, size=(16, 16))
    bundle = build_dataset(DataSpec("imagefolder", root=str(tmp_path), image_size=16, augment=False))
    assert bundle.targets("train_eval").tolist() == sorted(bundle.targets("train_eval").tolist())  # class-sorted
    model = cr.create_model("coded_resnext_mini", 4).eval()
    randomize_batchnorm(model)
    settings = EvalSettings(binary_fit_samples=12, removal_samples=8, invariance_samples=0, early_exit_thresholds=4)
    result = run_suite(
        model,
        SuiteData(fit=bundle.train_eval, val=bundle.val, test=bundle.test, fit_augmented=bundle.train),
        device=CPU,
        settings=settings,
    )
    for table in ("binary_classifiers", "test_binary_classifiers"):
        rows = result.tables[table]
        assert [r["fit_positives"] for r in rows] == [3, 3, 3, 3]  # 12 fit samples, stratified
        assert all(math.isfinite(r["threshold"]) and not r["note"] for r in rows), rows


def test_one_pass_gives_the_model_and_every_classifier_what_separate_passes_gave(model):
    """collect's heads: the model's logits and energies and each class's features from one trunk pass."""
    from torch.utils.data import DataLoader

    from coded_resnext.evaluation.binary import extract_classifiers, feature_heads
    from coded_resnext.evaluation.collect import head_outputs
    from coded_resnext.evaluation.refit import pruned_features

    loader = DataLoader(_images(40, seed=3), batch_size=16)
    classifiers = extract_classifiers(model, range(4))
    heads = feature_heads(classifiers, model.trunk_depth)
    shared = collect(model, loader, CPU, heads=heads)
    alone = collect(model, loader, CPU)
    assert torch.equal(shared.logits, alone.logits) and torch.equal(shared.targets, alone.targets)
    assert all(torch.equal(a, b) for a, b in zip(shared.energies, alone.energies, strict=True))
    only, targets = head_outputs(model, heads, loader, CPU)
    for k, binary in classifiers.items():
        features, _ = pruned_features(binary, loader, CPU)
        assert torch.equal(shared.outputs[k], features) and torch.equal(only[k], features), k
    assert torch.equal(targets, alone.targets)


def test_a_searchs_suite_logs_the_same_figures_with_the_removal_diagnostic_at_its_summary_points(model):
    """full=False (a search's trial): every metric as the full suite's, the removal table at the points the
    summary reads (k = 0 and the largest k both kinds allow), those rows equal to the full curve's."""
    fit, val = _images(60, seed=1), _images(40, seed=2)
    full = run_suite(model, SuiteData(fit=fit, val=val), device=CPU, settings=SMALL)
    search = run_suite(model, SuiteData(fit=fit, val=val), device=CPU, settings=SMALL, full=False)
    assert search.metrics == full.metrics
    curve, points = full.tables["removal_curve"], search.tables["removal_curve"]
    assert len(points) < len(curve) and all(row in curve for row in points)
    for block in {r["block"] for r in curve}:
        mine = [r for r in points if r["block"] == block]
        largest = max(r["k"] for r in mine)
        assert sorted((r["which"], r["k"]) for r in mine) == [
            ("active", 0), ("active", largest), ("inactive", 0), ("inactive", largest)
        ]  # fmt: skip
        zero = [r["accuracy"] for r in curve if r["block"] == block and r["k"] == 0]
        assert zero[0] == zero[1]  # no branch removed: one measurement for both kinds
    assert {k: v for k, v in search.tables.items() if k != "removal_curve"} == {
        k: v for k, v in full.tables.items() if k != "removal_curve"
    }


def test_the_information_paths_are_logged_as_a_table_the_heatmaps_are_drawn_from(model, tmp_path):
    import pandas as pd

    from coded_resnext.evaluation.collect import mean_energy_by_class
    from coded_resnext.results.run_plots import energy_heatmaps_from_table

    fit, val = _images(60, seed=1), _images(40, seed=2)
    result = run_suite(model, SuiteData(fit=fit, val=val), device=CPU, settings=SMALL, full=False)
    table = pd.DataFrame(result.tables["energy_by_class"])
    assert set(table["block"]) == set(range(len(model.coded_blocks)))
    for i, info in enumerate(model.coded_blocks):
        mine = table[table["block"] == i]
        energy = mine.pivot(index="class", columns="branch", values="energy").to_numpy()
        bits = mine.pivot(index="class", columns="branch", values="bit").to_numpy()
        np.testing.assert_allclose(energy, result.energy_by_class[i].numpy(), rtol=1e-6)
        np.testing.assert_array_equal(bits, info.scheme.codewords)
    direct = mean_energy_by_class(collect(model, torch.utils.data.DataLoader(val, 16), CPU), model.num_classes)
    np.testing.assert_allclose(result.energy_by_class[0].numpy(), direct[0].numpy(), rtol=1e-6)
    paths = energy_heatmaps_from_table(table, tmp_path, prefix="best_")
    assert [p.name for p in paths] == [f"best_energy_heatmap_block_{i}.png" for i in range(len(model.coded_blocks))]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)
