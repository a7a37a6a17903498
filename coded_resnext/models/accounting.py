"""Size and compute of a network: parameters (all, or the paper's accounting) and FLOPs.

FLOPs are counted by ``torch.utils.flop_counter`` (convs, matmuls), not estimated by hand. Here, with the
models, rather than with the timing code (``coded_resnext.measure``), because the evaluation suite reports
these counts too, and the timing code depends on the evaluation suite.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from coded_resnext.layers.coded_block import CodedBlock


def _projection_shortcut_params(module: nn.Module) -> int:
    total = 0
    for block in module.modules():
        if isinstance(block, CodedBlock) and isinstance(block.shortcut, nn.Sequential):
            total += block.shortcut[0].weight.numel()  # the 1x1 conv; its BN is counted
    return total


def parameter_count(module: nn.Module, paper_accounting: bool = False) -> int:
    """All parameters; with ``paper_accounting``, without the projection-shortcut 1x1 convs.

    The latter approximates the count behind the paper's binary-classifier sizes (Section 4.3: 38%, 27% and
    35% of the parameters on CIFAR-10, CIFAR-100 and ImageNet), which the paper does not spell out: the
    presets' binary classifiers keep 37.2%, 27.1% and 34.4% of the parameters in it (46.3%, 37.4% and 41.6%
    counting every parameter). No count we tried gives all three of the paper's figures: leaving out the
    shortcuts' BatchNorms too (37.2 / 27.1 / 34.3), every BatchNorm (37.0 / 26.8 / 34.2), the final layer
    (37.3 / 27.8 / 37.8), or scaling each coded block's parameters, shortcut included, by its ratio
    (36.8 / 26.8 / 34.2). So it is within a point of the paper's, and not its count."""
    total = sum(p.numel() for p in module.parameters())
    return total - _projection_shortcut_params(module) if paper_accounting else total


@torch.no_grad()
def flop_count(module: nn.Module, example: torch.Tensor) -> int:
    """FLOPs (2 per multiply-add) of one forward pass on ``example``."""
    was_training = module.training
    module.eval()
    with FlopCounterMode(display=False) as counter:
        module(example)
    module.train(was_training)
    return counter.get_total_flops()
