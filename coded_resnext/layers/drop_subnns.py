"""DropSubNNs (docs/method.md section 1, item 4): drop whole branches of a coded block while training.

Each branch output is zeroed with probability ``p`` per sample and survivors are scaled by
1 / (1 - p), so the expected block output is unchanged. The model draws one mask per run of
consecutive coded blocks that share a coding scheme (the first block of the run draws it); a plain
block between two of them does not end the run, as in the authors' code, where a block of ratio 1
hands the mask it received to the next block.
"""

from __future__ import annotations

import torch
from torch import Tensor


def drop_subnns_mask(
    batch: int, num_branches: int, p: float, device: torch.device | str = "cpu", dtype=torch.float32
) -> Tensor:
    """(B, N) mask with entries 0 (dropped) or 1 / (1 - p) (kept), independent per sample and branch."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"drop probability must be in [0, 1), got {p}")
    keep = torch.rand(batch, num_branches, device=device) >= p
    return keep.to(dtype) / (1.0 - p)
