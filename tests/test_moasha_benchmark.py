"""benchmarks/moasha.py's verdict (issue 16's goal) from hypervolume curves, and --merge of arms run
separately; no sweep runs here (the curves are written by hand)."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCHMARKS))  # a script directory: it imports its sibling _throwaway by name
    try:
        yield importlib.import_module("moasha")
    finally:
        sys.path.remove(str(BENCHMARKS))


def _curves(moasha_epochs: list[float], moasha_hv: list[float]) -> dict:
    full = {"epochs": [4, 8, 16, 32, 64], "hypervolume": [0.05, 0.10, 0.15, 0.19, 0.20]}
    return {
        "motpe|0": full,
        "motpe+moasha-rf2|0": {"epochs": moasha_epochs, "hypervolume": moasha_hv},
    }


def test_goal_met_when_95pct_of_the_full_hypervolume_comes_within_half_the_epochs(bench):
    curves = _curves([4, 10, 20, 30, 40], [0.06, 0.12, 0.18, 0.191, 0.195])  # 0.191 >= 0.95 * 0.2 at 30 epochs
    figures = {"curves": curves, "summary": bench._summary(curves)}
    row = next(r for r in figures["summary"] if r["arm"] == "motpe+moasha-rf2")
    assert row["epochs_fraction_to_95pct"] == pytest.approx(30 / 64)
    assert row["hv_fraction"] == pytest.approx(0.195 / 0.20)
    assert row["epochs_fraction"] == pytest.approx(40 / 64)
    assert row["hv_fraction_at_half_epochs"] == pytest.approx(0.191 / 0.20)  # at 30 epochs, the last <= 32
    assert "MET" in bench._table(figures) and "NOT MET" not in bench._table(figures)


def test_goal_not_met_when_the_95pct_point_comes_late_or_never(bench):
    late = _curves([4, 20, 40, 50], [0.06, 0.15, 0.18, 0.192])  # reached at 50 of 64 epochs: 78%
    never = _curves([4, 20, 40], [0.06, 0.15, 0.18])
    for curves, words in ((late, "reached"), (never, "never reached")):
        table = bench._table({"curves": curves, "summary": bench._summary(curves)})
        assert "NOT MET" in table and words in table


def test_merge_combines_files_and_judges_each_arm_against_motpe_of_any_file(bench, tmp_path):
    full = {"epochs": [4, 64], "hypervolume": [0.1, 0.2]}
    a = tmp_path / "a.json"
    a.write_text(json.dumps({"curves": {"motpe|0": full, "motpe+moasha-rf2|0": full}}))
    b = tmp_path / "b.json"
    b.write_text(json.dumps({"curves": {"motpe+moasha-rf3|0": {"epochs": [4, 20], "hypervolume": [0.1, 0.19]}}}))
    merged = bench._merge([a, b])
    assert set(merged["curves"]) == {"motpe|0", "motpe+moasha-rf2|0", "motpe+moasha-rf3|0"}
    rf3 = next(r for r in merged["summary"] if r["arm"] == "motpe+moasha-rf3")
    assert rf3["epochs_fraction_to_95pct"] == pytest.approx(20 / 64)  # judged against the other file's motpe


def test_merge_refuses_a_sweep_twice_and_files_without_curves(bench, tmp_path):
    a = tmp_path / "a.json"
    a.write_text(json.dumps({"curves": {"motpe|0": {"epochs": [4], "hypervolume": [0.1]}}}))
    with pytest.raises(SystemExit, match="motpe seed 0 is in two of the files"):
        bench._merge([a, a])
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(SystemExit, match="has no 'curves'"):
        bench._merge([bad])
