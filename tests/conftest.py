import json
from pathlib import Path

import pytest
import torch

# The unit tier (`pytest -m unit`): one torch thread, Ray and MLflow stores refused (tests/unit_tier.py).
from unit_tier import check_markers, pytest_ignore_collect, pytest_runtest_protocol  # noqa: F401 (hooks: registered here)

# The reference data the tests check against (the block test vectors, the published schemes) ships with
# the tests, so a clone on its own runs every test; a missing file is a failure, never a skip.
REFERENCE = Path(__file__).resolve().parent / "data"


def reference_json(name: str) -> dict:
    path = REFERENCE / name
    if not path.is_file():
        pytest.fail(f"reference data {path} is missing: it ships with the tests in tests/data/; restore it from git")
    return json.loads(path.read_text())


# Tests not marked slow or ray are meant to take seconds; this bounds them (fixture set-up included, e.g.
# a module's one finished run, on a busy machine) far below pyproject's default for the slow ones.
FAST_TEST_TIMEOUT_S = 300


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    check_markers(items)
    for item in items:
        if not any(item.get_closest_marker(mark) for mark in ("slow", "ray", "timeout")):
            item.add_marker(pytest.mark.timeout(FAST_TEST_TIMEOUT_S))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def block_vectors() -> dict:
    return reference_json("block_test_vectors.json")


def randomize_batchnorm(model: torch.nn.Module) -> None:
    """Give every BN non-trivial statistics and affine parameters (zero-init gammas hide bugs)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)


@pytest.fixture
def log_lines():
    """The messages of the project's loggers (``coded_resnext...``, INFO and up) during the test, as a list."""
    import logging

    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("coded_resnext")
    handler, level = Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)
