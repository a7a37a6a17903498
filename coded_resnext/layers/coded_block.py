"""The (coded) ResNeXt bottleneck block (PAPER.md section 1).

A ResNeXt block with N branches of width d, written as one grouped-conv stack:
reduce 1x1 (C_in -> N*d), BN, ReLU, grouped 3x3 (groups=N, stride s), BN, ReLU, expand 1x1
(N*d -> C_out), then the branch *sum*, BN (gamma starts at 0), residual add, ReLU.

A coded block (ratio N_act / N < 1) divides every branch output by the RMS of the branch energies
(Eq. 3) before the sum. The division is per sample and per branch, so it commutes with the linear
expand conv: sum_n t_n / s = expand(h * (1/s)), with h rescaled per branch. Branch masks (removal,
DropSubNNs) rescale h the same way, so the coded block costs one dense 1x1 conv like a plain block,
plus the energies (see ``energy.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from torch import Tensor, nn

from coded_resnext.layers.energy import (
    branch_energies_materialized,
    branch_outputs,
    expand_gram,
    normalized_branches,
    normalizer_scale,
)


class BlockOutput(NamedTuple):
    out: Tensor
    # Normalized energies (B, N), rows summing to the block's full N; None for uncoded blocks.
    energies: Tensor | None


class CodedBlock(nn.Module):
    """ResNeXt bottleneck with optional energy normalization.

    Args:
        in_channels, out_channels: C_in, C_out.
        branch_width: d, the width of one branch.
        num_branches: N, the branches physically present (fewer than the full N in a pruned block).
        stride: stride of the grouped 3x3 conv (and of the projection shortcut).
        normalize_energy: apply Eq. 3 (coded block); False gives a plain ResNeXt block.
        normalizer_branches: the N in Eq. 3's 1/N; the full cardinality, which stays the same when
            branches are pruned away. Defaults to ``num_branches``.
        materialize: compute energies from materialized branch outputs (the slow reference).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        branch_width: int,
        num_branches: int,
        stride: int = 1,
        *,
        normalize_energy: bool = False,
        normalizer_branches: int | None = None,
        materialize: bool = False,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        zero_init_last: bool = True,
    ) -> None:
        super().__init__()
        width = branch_width * num_branches
        self.num_branches = num_branches
        self.branch_width = branch_width
        self.normalize_energy = normalize_energy
        self.normalizer_branches = normalizer_branches or num_branches
        self.materialize = materialize

        self.conv_reduce = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn_reduce = norm_layer(width)
        self.conv_group = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=num_branches, bias=False)
        self.bn_group = norm_layer(width)
        self.conv_expand = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn_sum = norm_layer(out_channels)
        self.act = nn.ReLU(inplace=True)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), norm_layer(out_channels)
            )
        else:
            self.shortcut = nn.Identity()
        if zero_init_last:
            nn.init.zeros_(self.bn_sum.weight)
        # (N, d, d) Gram matrices of the expand weight, frozen by ``coded_resnext.fusion`` before it
        # folds bn_sum into that weight; None (computed from the live weight each forward) otherwise.
        self.register_buffer("expand_gram", None, persistent=False)

    def forward(self, x: Tensor, keep: Tensor | None = None, drop: Tensor | None = None) -> BlockOutput:
        """``keep`` (B, N) 0/1 removes branches before energy normalization; ``drop`` (B, N) is a
        DropSubNNs mask applied after it. Both are ignored by an uncoded block."""
        h = self.act(self.bn_reduce(self.conv_reduce(x)))
        h = self.act(self.bn_group(self.conv_group(h)))  # (B, N*d, H', W')
        energies: Tensor | None = None
        if not self.normalize_energy:
            summed = self.conv_expand(h)
        elif self.materialize:
            summed, energies = self._normalized_sum_materialized(h, keep, drop)
        else:
            summed, energies = self._normalized_sum(h, keep, drop)
        out = self.bn_sum(summed)
        out += self.shortcut(x)  # in place, as torchvision's ResNet: one block-sized buffer fewer
        return BlockOutput(self.act(out), energies)

    def _normalized_sum(self, h: Tensor, keep: Tensor | None, drop: Tensor | None) -> tuple[Tensor, Tensor]:
        gram = self.expand_gram
        if gram is None:
            gram = expand_gram(self.conv_expand.weight, self.num_branches)
        elif self.training:
            raise RuntimeError(
                "this block was fused for inference (its Gram matrices are frozen and bn_sum is folded "
                "into conv_expand); it cannot be trained. Train the unfused model instead."
            )
        scaled, energies = normalized_branches(
            h, gram, self.conv_expand.out_channels, self.normalizer_branches, keep, drop
        )
        return self.conv_expand(scaled), energies

    def _normalized_sum_materialized(
        self, h: Tensor, keep: Tensor | None, drop: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        t = branch_outputs(h, self.conv_expand.weight, self.num_branches)  # (B, N, C_out, H, W)
        if keep is not None:
            t = t * keep[:, :, None, None, None].to(t.dtype)
        raw = branch_energies_materialized(t)
        inv_rms = normalizer_scale(raw, self.normalizer_branches)
        t = t * inv_rms[:, None, None, None, None].to(t.dtype)
        energies = branch_energies_materialized(t)
        if drop is not None:
            t = t * drop[:, :, None, None, None].to(t.dtype)
        return t.sum(dim=1), energies

    def extra_repr(self) -> str:
        coded = f"coded, normalizer_branches={self.normalizer_branches}" if self.normalize_energy else "plain"
        impl = ", materialized" if self.materialize and self.normalize_energy else ""
        return f"branches={self.num_branches}, branch_width={self.branch_width}, {coded}{impl}"
