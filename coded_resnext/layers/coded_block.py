"""The (coded) ResNeXt bottleneck block (docs/method.md section 1).

A ResNeXt block with N branches of width d, written as one grouped-conv stack:
reduce 1x1 (C_in -> N*d), BN, ReLU, grouped 3x3 (groups=N, stride s), BN, ReLU, expand 1x1
(N*d -> C_out), then the branch *sum*, BN (gamma starts at 0), residual add, ReLU.

A coded block (ratio N_act / N < 1) divides every branch output by the RMS of the branch energies
(Eq. 3) before the sum. The division is per sample and per branch, so it commutes with the linear
expand conv: sum_n t_n / s = expand(h * (1/s)), with h rescaled per branch. Branch masks (removal,
DropSubNNs) rescale h the same way, so the coded block costs one dense 1x1 conv like a plain block,
plus the energies (see ``energy.py``).

Two variants of the paper's discussion: ``merge="concat"`` concatenates the branch outputs instead of
summing them (Section 4.3.1; ``concat_expand.py``), and a ``grad_keep`` mask in training stops the
classification gradient at the branches it marks 0 (footnote 5; the authors' ``Mask_grads``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import torch.nn.functional as F
from torch import Tensor, nn

from coded_resnext.layers.concat_expand import ConcatExpand, branch_slices
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
        merge: ``sum`` (ResNeXt) or ``concat`` (branch n writes only its own C_out/N output channels).
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
        merge: Literal["sum", "concat"] = "sum",
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
        self.merge = merge
        if merge == "concat":
            self.conv_expand = ConcatExpand(num_branches, branch_width, branch_slices(out_channels, num_branches))
        elif merge == "sum":
            self.conv_expand = nn.Conv2d(width, out_channels, 1, bias=False)
        else:
            raise ValueError(f"merge must be 'sum' or 'concat', got {merge!r}")
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
        # (N, d, d) Gram matrices of the expand weight, frozen by ``coded_resnext.extraction.fusion`` before it
        # folds bn_sum into that weight; None (computed from the live weight each forward) otherwise.
        self.register_buffer("expand_gram", None, persistent=False)

    def forward(
        self, x: Tensor, keep: Tensor | None = None, drop: Tensor | None = None, grad_keep: Tensor | None = None
    ) -> BlockOutput:
        """``keep`` (B, N) 0/1 removes branches before energy normalization; ``drop`` (B, N) is a
        DropSubNNs mask applied after it; ``grad_keep`` (B, N) 0/1 lets the gradient of the block's
        output reach only the branches marked 1 (the normalizer and the energies still see all).
        All three are ignored by an uncoded block."""
        h = self.act(self.bn_reduce(self.conv_reduce(x)))
        h = self.act(self.bn_group(self.conv_group(h)))  # (B, N*d, H', W')
        energies: Tensor | None = None
        if not self.normalize_energy:
            summed = self.conv_expand(h)
        elif self.materialize:
            summed, energies = self._normalized_sum_materialized(h, keep, drop, grad_keep)
        else:
            summed, energies = self._normalized_sum(h, keep, drop, grad_keep)
        out = self.bn_sum(summed)
        out += self.shortcut(x)  # in place, as torchvision's ResNet: one block-sized buffer fewer
        return BlockOutput(self.act(out), energies)

    def expand_weight(self) -> Tensor:
        """The expand conv as a dense (C_out, N*d, 1, 1) weight (zero outside each branch's rows in a
        concatenating block)."""
        if isinstance(self.conv_expand, ConcatExpand):
            return self.conv_expand.dense_weight()
        return self.conv_expand.weight

    def energy_channels(self) -> int | Tensor:
        """The channels Eq. 2 averages over: C_out, or each branch's own (N,) in a concatenating block."""
        if isinstance(self.conv_expand, ConcatExpand):
            return self.conv_expand.channels_per_branch
        return self.conv_expand.out_channels

    def _normalized_sum(
        self, h: Tensor, keep: Tensor | None, drop: Tensor | None, grad_keep: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        gram = self.expand_gram
        if gram is None:
            gram = expand_gram(self.expand_weight(), self.num_branches)
        elif self.training:
            raise RuntimeError(
                "this block was fused for inference (its Gram matrices are frozen and bn_sum is folded "
                "into conv_expand); it cannot be trained. Train the unfused model instead."
            )
        scaled, energies = normalized_branches(h, gram, self.energy_channels(), self.normalizer_branches, keep, drop)
        if grad_keep is None:
            return self.conv_expand(scaled), energies
        # Same sum, two parts: the kept branches' as usual, the others' with no gradient to h or to
        # their expand columns (the authors' mask * t + (1 - mask) * t.detach() on branch outputs).
        mask = grad_keep.to(scaled.dtype).repeat_interleave(self.branch_width, dim=1)[:, :, None, None]
        kept = scaled * mask
        return self.conv_expand(kept) + self._expand_without_weight_grad((scaled - kept).detach()), energies

    def _expand_without_weight_grad(self, x: Tensor) -> Tensor:
        if isinstance(self.conv_expand, ConcatExpand):
            return self.conv_expand(x, weight_grad=False)
        return F.conv2d(x, self.conv_expand.weight.detach())

    def _normalized_sum_materialized(
        self, h: Tensor, keep: Tensor | None, drop: Tensor | None, grad_keep: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        t = branch_outputs(h, self.expand_weight(), self.num_branches)  # (B, N, C_out, H, W)
        channels = self.energy_channels() if isinstance(self.conv_expand, ConcatExpand) else None
        if keep is not None:
            t = t * keep[:, :, None, None, None].to(t.dtype)
        raw = branch_energies_materialized(t, channels)
        inv_rms = normalizer_scale(raw, self.normalizer_branches)
        t = t * inv_rms[:, None, None, None, None].to(t.dtype)
        energies = branch_energies_materialized(t, channels)
        if drop is not None:
            t = t * drop[:, :, None, None, None].to(t.dtype)
        if grad_keep is not None:
            mask = grad_keep[:, :, None, None, None].to(t.dtype)
            t = mask * t + (1 - mask) * t.detach()
        summed = t.sum(dim=1)
        if isinstance(self.conv_expand, ConcatExpand) and self.conv_expand.channels is not None:
            summed = summed.new_zeros(summed.shape[0], self.conv_expand.out_channels, *summed.shape[2:]).index_copy(
                1, self.conv_expand.channels, summed
            )
        return summed, energies

    def extra_repr(self) -> str:
        coded = f"coded, normalizer_branches={self.normalizer_branches}" if self.normalize_energy else "plain"
        impl = ", materialized" if self.materialize and self.normalize_energy else ""
        merge = ", concat" if self.merge == "concat" else ""
        return f"branches={self.num_branches}, branch_width={self.branch_width}, {coded}{impl}{merge}"
