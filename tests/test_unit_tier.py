"""The unit tier's rules (tests/unit_tier.py): a unit test that starts Ray or opens an MLflow store fails,
other tests see the real functions, a test cannot be unit and slow, and ``-m unit`` imports only modules
that have unit tests. The end-to-end checks run in a fresh pytest process, where Ray and MLflow are not
yet imported, and are not unit tests themselves (they import both)."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import unit_tier

TESTS = Path(__file__).resolve().parent

# The inner sessions' conftest: exactly the wiring tests/conftest.py does.
CONFTEST = """
from unit_tier import check_markers, pytest_ignore_collect, pytest_runtest_protocol  # noqa: F401


def pytest_collection_modifyitems(items):
    check_markers(items)
"""

GUARDED = """
import pytest


@pytest.mark.unit
def test_starts_ray():
    import ray  # first imported inside a unit test: patched as soon as it has loaded

    ray.init(num_cpus=1, include_dashboard=False)


@pytest.mark.unit
def test_starts_ray_through_the_worker_module():
    import ray  # imported by now: patched at the test's start

    ray._private.worker.init(num_cpus=1, include_dashboard=False)


@pytest.mark.unit
def test_opens_an_mlflow_tracking_store(tmp_path):
    from mlflow.tracking import MlflowClient

    MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").search_experiments()


@pytest.mark.unit
def test_opens_an_mlflow_store_through_the_fluent_api(tmp_path):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.search_experiments()


@pytest.mark.unit
def test_opens_the_mlflow_model_registry(tmp_path):
    from mlflow.tracking._model_registry.utils import _get_store

    _get_store(f"sqlite:///{tmp_path}/mlflow.db")


@pytest.mark.unit
def test_a_plain_unit_test_passes():
    assert True


def test_an_unmarked_test_sees_the_real_functions():
    import ray
    from mlflow.tracking._model_registry.registry import ModelRegistryStoreRegistry
    from mlflow.tracking._tracking_service.registry import TrackingStoreRegistry

    assert ray.init is ray._private.worker.init and ray.init.__module__ == "ray._private.worker"
    assert TrackingStoreRegistry.get_store.__module__ == "mlflow.tracking._tracking_service.registry"
    assert ModelRegistryStoreRegistry.get_store.__module__ == "mlflow.tracking._model_registry.registry"
"""


def _pytest(directory: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict[str, str | None]]:
    """Run pytest in ``directory`` with the unit tier's wiring; outcomes: test name -> failure message or None."""
    (directory / "conftest.py").write_text(CONFTEST)
    (directory / "pytest.ini").write_text("[pytest]\nmarkers =\n    unit: the unit tier\n    slow: slow\n")
    report = directory / "report.xml"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={report}", *args],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    outcomes = {}
    if report.exists():
        for case in ET.parse(report).getroot().iter("testcase"):
            failure = case.find("failure")
            outcomes[case.get("name")] = None if failure is None else failure.get("message", "")
    return result, outcomes


def test_a_unit_test_that_starts_ray_or_opens_an_mlflow_store_fails(tmp_path):
    (tmp_path / "test_guarded.py").write_text(GUARDED)
    result, outcomes = _pytest(tmp_path)
    refused = {
        "test_starts_ray": "started Ray (ray.init)",
        "test_starts_ray_through_the_worker_module": "started Ray (ray._private.worker.init)",
        "test_opens_an_mlflow_tracking_store": "opened an MLflow store (TrackingStoreRegistry)",
        "test_opens_an_mlflow_store_through_the_fluent_api": "opened an MLflow store (TrackingStoreRegistry)",
        "test_opens_the_mlflow_model_registry": "opened an MLflow store (ModelRegistryStoreRegistry)",
    }
    assert set(outcomes) == {
        *refused,
        "test_a_plain_unit_test_passes",
        "test_an_unmarked_test_sees_the_real_functions",
    }, result.stdout + result.stderr
    for name, what in refused.items():
        assert outcomes[name] is not None and "UnitTierError" in outcomes[name] and what in outcomes[name], (
            name,
            outcomes[name],
        )
    assert outcomes["test_a_plain_unit_test_passes"] is None
    assert outcomes["test_an_unmarked_test_sees_the_real_functions"] is None, outcomes


def test_minus_m_unit_imports_only_modules_that_mark_unit_tests(tmp_path):
    (tmp_path / "test_marked.py").write_text(
        "import pytest\n\npytestmark = pytest.mark.unit\n\n\ndef test_x():\n    pass\n"
    )
    (tmp_path / "test_unmarked.py").write_text(
        "raise RuntimeError('imported under -m unit')\n\n\ndef test_y():\n    pass\n"
    )
    result, outcomes = _pytest(tmp_path, "-m", "unit")
    assert result.returncode == 0 and outcomes == {"test_x": None}, result.stdout + result.stderr
    result, _ = _pytest(tmp_path, "-m", "not unit")  # any other selection imports every module
    assert "imported under -m unit" in result.stdout + result.stderr


def _item(nodeid: str, *marks: str) -> SimpleNamespace:
    return SimpleNamespace(nodeid=nodeid, get_closest_marker=lambda name: name if name in marks else None)


@pytest.mark.unit
def test_a_test_marked_unit_and_slow_or_ray_is_a_usage_error():
    unit_tier.check_markers([_item("t::fine", "unit"), _item("t::slow_only", "slow"), _item("t::plain")])
    with pytest.raises(pytest.UsageError, match=r"t::both, t::ray_too") as err:
        unit_tier.check_markers([_item("t::both", "unit", "slow"), _item("t::ray_too", "ray", "unit")])
    assert "t::fine" not in str(err.value)


@pytest.mark.unit
def test_this_unit_test_runs_guarded_on_one_torch_thread():
    """tests/conftest.py wires the tier in: without it this unit test would run unguarded."""
    assert unit_tier.active()
    assert torch.get_num_threads() == 1


@pytest.mark.unit
def test_the_thread_count_is_restored_after_a_unit_test():
    with unit_tier._one_torch_thread():  # nested in this test's own: entered at 1, restores 3
        torch.set_num_threads(3)
        with unit_tier._one_torch_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 3


def test_an_unmarked_test_runs_unguarded():
    assert not unit_tier.active()
