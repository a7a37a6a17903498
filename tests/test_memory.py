"""Peak memory of a step on CPU, from the profiler's allocation events: exact on a known pattern, and
the materialized coded block's branch outputs show up where the Gram-matrix block has none."""

from __future__ import annotations

import pytest
import torch

from coded_resnext import create_model
from coded_resnext.measure.memory import peak_memory

pytestmark = pytest.mark.unit

MIB = 2**20


def test_peak_and_volume_of_a_known_allocation_pattern():
    kept = []

    def step() -> None:
        a = torch.empty(4 * MIB, dtype=torch.uint8)
        b = torch.empty(2 * MIB, dtype=torch.uint8)
        del a  # 2 MiB live
        kept.append(torch.empty(3 * MIB, dtype=torch.uint8))  # 5 MiB live, and kept past the step
        del b

    use = peak_memory(step)
    assert use.peak_bytes == 6 * MIB  # a and b together
    assert use.allocated_bytes == 9 * MIB
    assert use.peak_mib == 6.0


def test_materialized_block_needs_more_memory_than_the_gram_block():
    torch.manual_seed(0)
    x = torch.randn(8, 1, 16, 16)
    gram = create_model("coded_resnext_mini", 10, in_chans=1).eval()
    materialized = create_model("coded_resnext_mini", 10, in_chans=1, energy_impl="materialized").eval()
    materialized.load_state_dict(gram.state_dict())
    with torch.no_grad():
        gram(x), materialized(x)  # warm: one-time allocations are not the step's
        a = peak_memory(lambda: gram(x))
        b = peak_memory(lambda: materialized(x))
    assert b.allocated_bytes > 1.5 * a.allocated_bytes and b.peak_bytes > a.peak_bytes
