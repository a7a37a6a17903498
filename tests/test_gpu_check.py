"""benchmarks/gpu_check.py runs its tiny version on CPU (so the GPU check cannot rot): every section
produces its figures through the trainer's own train step, compile, autocast and early exit."""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def gpu_check():
    sys.path.insert(0, str(BENCHMARKS))  # a script directory; spawned DDP ranks import it by name too
    try:
        yield importlib.import_module("gpu_check")
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_tiny_version_reports_every_section(gpu_check):
    lines: list[str] = []
    report = gpu_check.run(tiny=True, ddp=False, say=lines.append)
    assert report["plan"] == gpu_check.TINY.name
    train = report["train"]
    assert train["precision"] == "bf16"
    for key in (
        "coded eager images/s",
        "control eager images/s",
        "coded compiled images/s",
        "control compiled images/s",
    ):
        assert math.isfinite(train[key]) and train[key] > 0
    assert train["coded / control time, compiled"] > 0
    inference = report["inference"]
    assert 0 < inference["early exit rate"] < 1  # the threshold for exit rate 0.5 splits the batch
    assert inference["binary / full time"] > 0 and inference["early exit / full time"] > 0
    table = report["early_exit"]  # bench early-exit's table: per exit rate and batch size
    assert [(r["rate"], r["batch"]) for r in table] == [(0.5, 1), (0.5, 4)]
    for row in table:
        assert 0 < row["FLOPs"] < 1 and row["wall-clock"] > 0 and row["profile"] > 0
        assert row["routing"] == row["wall-clock"] - row["profile"]
    assert any("early exit / full model" in line for line in lines)
    assert "ddp" not in report and any("skipped" in line for line in lines)


@pytest.mark.slow
def test_two_rank_step_keeps_the_ranks_in_step(gpu_check):
    result = gpu_check.ddp_step(gpu_check.TINY, "gloo")
    assert result["param divergence"] == 0.0 and result["step s"] > 0
