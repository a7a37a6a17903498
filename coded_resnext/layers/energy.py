"""Branch energies, energy normalization and the coding loss (PAPER.md Eq. 2, 3, 5).

Shapes: ``h`` is the input of the expand conv, (B, N*d, H, W), i.e. N branch activations of width
d; ``expand_weight`` is the expand conv's weight (C_out, N*d, 1, 1). Branch n's output is
t_n = W_n h_n with W_n = expand_weight[:, n*d:(n+1)*d].

Two ways to get E(t_n) = mean_{c,h,w} t_n^2 (Eq. 2):

* ``branch_energies_gram`` (default, fast): E(t_n) = sum_p h_n(p)^T (W_n^T W_n) h_n(p) / (C_out P).
  It needs the (d x d) second-moment matrix of h_n and the (d x d) Gram matrix of W_n, so its cost is
  B*N*d^2*P multiply-adds, a fraction d/C_out (about 4% in the paper's nets) of the expand conv, and
  it never materializes the N branch outputs of size C_out.
* ``branch_energies_materialized`` (reference): builds every t_n, as the paper's code does.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Mean energies below this are treated as this (an all-removed or all-zero block), so the
# normalizer never divides by zero. Far below any real activation energy.
ENERGY_EPS = 1e-12


def _energy_dtype(x: Tensor) -> torch.dtype:
    """Energies are sums of many squares: never in bf16/fp16 (autocast), full precision in float64."""
    return torch.promote_types(x.dtype, torch.float32)


def expand_gram(expand_weight: Tensor, num_branches: int) -> Tensor:
    """W_n^T W_n per branch, (N, d, d), in at least float32, from the expand weight (C_out, N*d, 1, 1)."""
    c_out = expand_weight.shape[0]
    with torch.autocast(device_type=expand_weight.device.type, enabled=False):
        w = expand_weight.to(_energy_dtype(expand_weight)).reshape(c_out, num_branches, -1)  # (C_out, N, d)
        return torch.einsum("cnd,cne->nde", w, w)


def branch_energies_from_gram(h: Tensor, gram: Tensor, out_channels: int) -> Tensor:
    """E(t_n) per sample and branch, (B, N), from h and the branches' Gram matrices ``gram`` (N, d, d).

    An inference copy keeps the Gram matrices of the expand weight as it was before a BatchNorm was
    folded into it (``coded_resnext.fusion``), so energies never depend on the folded weight."""
    b, _, height, width = h.shape
    num_branches, d = gram.shape[0], gram.shape[1]
    dtype = torch.promote_types(_energy_dtype(h), gram.dtype)
    with torch.autocast(device_type=h.device.type, enabled=False):
        hb = h.to(dtype).reshape(b, num_branches, d, height * width)  # (B, N*d, H, W) -> (B, N, d, P)
        moments = hb @ hb.transpose(-1, -2)  # (B, N, d, d) = sum_p h_n(p) h_n(p)^T
        energy = (moments * gram.to(dtype)).sum(dim=(-1, -2))  # (B, N)
    return energy / (out_channels * height * width)


def branch_energies_gram(h: Tensor, expand_weight: Tensor, num_branches: int) -> Tensor:
    """E(t_n) per sample and branch, (B, N), in at least float32, without materializing t_n."""
    return branch_energies_from_gram(h, expand_gram(expand_weight, num_branches), expand_weight.shape[0])


def branch_outputs(h: Tensor, expand_weight: Tensor, num_branches: int) -> Tensor:
    """Every branch output t_n, (B, N, C_out, H, W). The slow path: memory N times the block output."""
    b, nd, height, width = h.shape
    d = nd // num_branches
    c_out = expand_weight.shape[0]
    hb = h.reshape(b, num_branches, d, height, width)
    w = expand_weight.reshape(c_out, num_branches, d)
    return torch.einsum("bndhw,cnd->bnchw", hb, w)


def branch_energies_materialized(branch_out: Tensor) -> Tensor:
    """Eq. 2 on materialized branch outputs (B, N, C_out, H, W) -> (B, N)."""
    return branch_out.to(_energy_dtype(branch_out)).pow(2).mean(dim=(2, 3, 4))


def normalizer_scale(raw_energies: Tensor, normalizer_branches: int, eps: float = ENERGY_EPS) -> Tensor:
    """1 / sqrt((1/N) sum_i E(t_i)) per sample (Eq. 3), (B,).

    ``normalizer_branches`` is the full N of the block even when some branches are removed or
    pruned away: removed branches contribute zero energy but still count in the 1/N.
    """
    mean = raw_energies.sum(dim=1) / normalizer_branches
    return mean.clamp_min(eps).rsqrt()


def coding_loss(
    energies: Tensor, target_codewords: Tensor, ratio: float, power: float = 4.0, threshold: float = 0.0
) -> Tensor:
    """Eq. 5: mean over batch of (1/N) sum_n |r * E(t̄_n) - w_{k,n}|^p.

    ``energies`` are normalized energies (B, N) (rows sum to N); ``target_codewords`` the (B, N) 0/1
    codewords of the samples' classes. Deviations up to ``threshold`` are free (hinge), which is 0
    in the paper.
    """
    deviation = (ratio * energies - target_codewords.to(energies.dtype)).abs()
    if threshold > 0:
        deviation = (deviation - threshold).clamp_min(0)
    return deviation.pow(power).mean()
