"""The expand 1x1 conv of a block that concatenates its branch outputs (docs/method.md section 7, Section 4.3.1).

ResNeXt sums its N branch outputs, each of C_out channels. The variant the paper tests instead
concatenates them: branch n owns c_n of the block's C_out output channels (contiguous slices, as
``torch.tensor_split`` cuts them, so c_n = C_out / N when it divides) and writes only those. The block
keeps its C_out outputs, its residual add and its BatchNorm, so only the aggregation changes.

Held as one (C_out, d, 1, 1) weight, row c belonging to the branch that owns channel c, i.e. a grouped
conv whose groups may differ by one channel. It runs as the dense (C_out, N*d) conv that is zero outside
each branch's rows: a concatenation is the sum of branch outputs with disjoint channel supports, so the
summing block's energies (Gram matrices), normalization, branch masks and extraction apply unchanged,
with Eq. 2's mean taken over each branch's own c_n channels (``channels_per_branch``). The dense conv
costs what the summing block's expand costs; the parameters are N times fewer.

A pruned copy (``coded_resnext.extraction``) keeps the rows of the kept branches only and writes them
back at their places (``channels``) in a C_out-channel output whose other channels are zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def branch_slices(out_channels: int, num_branches: int) -> Tensor:
    """(C_out,) the branch that owns each output channel: contiguous slices of near-equal size."""
    if out_channels < num_branches:
        raise ValueError(
            f"branch_merge='concat' gives each of the {num_branches} branches its own output channels, "
            f"so a block needs at least that many; it has {out_channels}"
        )
    parts = torch.tensor_split(torch.arange(out_channels), num_branches)
    return torch.cat([torch.full((len(part),), n, dtype=torch.long) for n, part in enumerate(parts)])


class ConcatExpand(nn.Module):
    """1x1 conv from N branches of width d to C_out channels, branch n writing only the channels it owns.

    Args:
        num_branches, branch_width: N and d of the input (B, N*d, H, W).
        owner: (C_rows,) the branch (0..N-1) of each weight row, as ``branch_slices`` makes it.
        channels: (C_rows,) where each row lands in the output, which has ``total_channels`` channels;
            None: row c is output channel c (a whole block).
    """

    def __init__(
        self,
        num_branches: int,
        branch_width: int,
        owner: Tensor,
        channels: Tensor | None = None,
        total_channels: int | None = None,
    ) -> None:
        super().__init__()
        self.num_branches, self.branch_width = num_branches, branch_width
        self.in_channels = num_branches * branch_width
        self.out_channels = total_channels if total_channels is not None else len(owner)
        self.weight = nn.Parameter(torch.empty(len(owner), branch_width, 1, 1))
        # (C_rows, N): row c's one-hot branch; dense weight = weight spread over its branch's columns.
        # (a comparison, not F.one_hot / bincount: these run on the meta device too, where search spaces
        # are validated)
        onehot = (owner[:, None] == torch.arange(num_branches, device=owner.device)[None, :]).float()
        self.register_buffer("owner_onehot", onehot, persistent=False)
        self.register_buffer("channels_per_branch", onehot.sum(dim=0).long(), persistent=False)
        self.register_buffer("channels", channels, persistent=False)
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")

    def dense_weight(self) -> Tensor:
        """(C_rows, N*d, 1, 1), zero outside each row's branch."""
        rows = self.weight.shape[0]
        onehot = self.owner_onehot.to(self.weight.dtype)
        dense = self.weight.reshape(rows, 1, self.branch_width) * onehot[:, :, None]  # (C_rows, N, d)
        return dense.reshape(rows, self.in_channels, 1, 1)

    def forward(self, x: Tensor, weight_grad: bool = True) -> Tensor:
        """``weight_grad=False``: the same output, no gradient to the weight (gradient masking)."""
        weight = self.dense_weight()
        y = F.conv2d(x, weight if weight_grad else weight.detach())
        if self.channels is None:
            return y
        out = y.new_zeros(y.shape[0], self.out_channels, *y.shape[2:])
        return out.index_copy(1, self.channels, y)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, branches={self.num_branches}, rows={self.weight.shape[0]}"
