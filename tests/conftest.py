import json
from pathlib import Path

import pytest
import torch

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def block_vectors() -> dict:
    path = REFERENCE / "block_test_vectors.json"
    if not path.exists():  # the same file ships nowhere else; CI has ../shared beside the clone
        pytest.skip(f"reference vectors not found at {path}")
    return json.loads(path.read_text())


def randomize_batchnorm(model: torch.nn.Module) -> None:
    """Give every BN non-trivial statistics and affine parameters (zero-init gammas hide bugs)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
