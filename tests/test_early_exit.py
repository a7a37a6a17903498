"""Early exit's compute accounting: the FLOPs up to and including each coded block, on a net counted by hand."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import NamedTuple

import pytest
import torch
from torch import nn

import coded_resnext as cr
from coded_resnext.evaluation.early_exit import exit_compute_fractions

pytestmark = pytest.mark.unit


class _Out(NamedTuple):
    out: torch.Tensor


class _Block(nn.Module):
    """A block as the model's are called (``block(x).out``), costing one matmul."""

    def __init__(self, inputs: int, outputs: int) -> None:
        super().__init__()
        self.linear = nn.Linear(inputs, outputs, bias=False)

    def forward(self, x: torch.Tensor) -> _Out:
        return _Out(self.linear(x))


class _HandCountedNet(nn.Module):
    """stem, four blocks, head: bias-free linear layers, so one sample costs 2 * in * out FLOPs each."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(3, 4, bias=False)  # 24
        widths = [4, 4, 8, 8, 2]
        self.blocks = nn.ModuleList(_Block(i, o) for i, o in itertools.pairwise(widths))  # 32, 64, 128, 32
        self.head = nn.Linear(2, 2, bias=False)  # 8
        self.coded_blocks = [SimpleNamespace(block_index=1), SimpleNamespace(block_index=2)]


def test_exit_compute_fraction_is_the_flops_through_each_coded_block_over_the_whole_pass():
    fractions = exit_compute_fractions(_HandCountedNet(), torch.randn(5, 3))  # counted on one sample
    total = 24 + 32 + 64 + 128 + 32 + 8
    assert fractions == pytest.approx([(24 + 32 + 64) / total, (24 + 32 + 64 + 128) / total])


def test_exit_compute_fractions_of_a_preset_grow_block_by_block_and_stay_below_one():
    model = cr.create_model("coded_resnext_mini", in_chans=1)
    fractions = exit_compute_fractions(model, torch.randn(2, 1, 28, 28))
    assert len(fractions) == len(model.coded_blocks) == 4
    assert all(0 < a < b < 1 for a, b in itertools.pairwise(fractions))
