"""DropSubNNs (PAPER.md section 1, item 4): drop whole branches of a coded block while training.

Each branch output is zeroed with probability ``p`` per sample and survivors are scaled by
1 / (1 - p), so the expected block output is unchanged. The model draws one mask per run of
consecutive blocks that share a coding scheme (the first block of the run draws it).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def drop_subnns_mask(
    batch: int, num_branches: int, p: float, device: torch.device | str = "cpu", dtype=torch.float32
) -> Tensor:
    """(B, N) mask with entries 0 (dropped) or 1 / (1 - p) (kept), independent per sample and branch."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"drop probability must be in [0, 1), got {p}")
    keep = torch.rand(batch, num_branches, device=device) >= p
    return keep.to(dtype) / (1.0 - p)


class DropSubNNs(nn.Module):
    """Draws DropSubNNs masks in training mode; returns None (no dropping) in eval mode or when p == 0."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, batch: int, num_branches: int, device: torch.device) -> Tensor | None:
        if not self.training or self.p == 0.0:
            return None
        return drop_subnns_mask(batch, num_branches, self.p, device)

    def extra_repr(self) -> str:
        return f"p={self.p}"
