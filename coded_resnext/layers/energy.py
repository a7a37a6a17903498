"""Branch energies, energy normalization and the coding loss (docs/method.md Eq. 2, 3, 5).

Shapes: ``h`` is the input of the expand conv, (B, N*d, H, W), i.e. N branch activations of width
d; ``expand_weight`` is the expand conv's weight (C_out, N*d, 1, 1). Branch n's output is
t_n = W_n h_n with W_n = expand_weight[:, n*d:(n+1)*d].

Two ways to get E(t_n) = mean_{c,h,w} t_n^2 (Eq. 2):

* from Gram matrices (``branch_energies_gram``; the coded block's path, inside
  ``normalized_branches``): E(t_n) = sum_p h_n(p)^T (W_n^T W_n) h_n(p) / (C_out P). It needs the
  (d x d) second-moment matrix of h_n and the (d x d) Gram matrix of W_n, so its cost is B*N*d^2*P
  multiply-adds, a fraction d/C_out (about 4% in the paper's nets) of the expand conv, and it never
  materializes the N branch outputs of size C_out.
* ``branch_energies_materialized`` (reference): builds every t_n, as the paper's code does.

``normalized_branches`` does a coded block's whole normalization (energies, Eq. 3 scale, branch
masks) on h with a hand-written backward; see ``_NormalizedBranches`` for why. Both Gram-matrix
entry points share ``_raw_energies``.

``out_channels`` (the c in Eq. 2's mean over (c, h, w)) is C_out for a summing block. A concatenating
block (Section 4.3.1) has branch n write only its own c_n of the C_out channels (its expand weight is
zero elsewhere), so its energies are means over those c_n channels: ``out_channels`` is then the (N,)
tensor of the c_n, and everything else, the Gram matrices included, is unchanged.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor

# Mean energies below this are treated as this (an all-removed or all-zero block), so the
# normalizer never divides by zero. Far below any real activation energy.
ENERGY_EPS = 1e-12


def _full_precision(device_type: str):
    """Autocast off for the energy math; on the meta device (a shape-only forward, e.g. a memory estimate)
    there is no autocast to turn off, and ``torch.autocast`` refuses the device."""
    if device_type == "meta":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, enabled=False)


def _energy_dtype(x: Tensor) -> torch.dtype:
    """Energies are sums of many squares: never in bf16/fp16 (autocast), full precision in float64."""
    return torch.promote_types(x.dtype, torch.float32)


def expand_gram(expand_weight: Tensor, num_branches: int) -> Tensor:
    """W_n^T W_n per branch, (N, d, d), in at least float32, from the expand weight (C_out, N*d, 1, 1)."""
    c_out = expand_weight.shape[0]
    with _full_precision(expand_weight.device.type):
        w = expand_weight.to(_energy_dtype(expand_weight)).reshape(c_out, num_branches, -1)  # (C_out, N, d)
        return torch.einsum("cnd,cne->nde", w, w)


def branch_energies_from_gram(h: Tensor, gram: Tensor, out_channels: int | Tensor) -> Tensor:
    """E(t_n) per sample and branch, (B, N), from h and the branches' Gram matrices ``gram`` (N, d, d).

    An inference copy keeps the Gram matrices of the expand weight as it was before a BatchNorm was
    folded into it (``coded_resnext.extraction.fusion``), so energies never depend on the folded weight."""
    layout = _BranchLayout(h, gram.shape[0])
    dtype = torch.promote_types(_energy_dtype(h), gram.dtype)
    with _full_precision(h.device.type):
        return _raw_energies(layout, layout.split(h).to(dtype), gram.to(dtype), out_channels)[1]


def _per_output(out_channels: int | Tensor, p: int, like: Tensor) -> Tensor | int:
    """The divisor of Eq. 2's mean: C_out * positions, per branch (N,) when ``out_channels`` is a tensor."""
    if isinstance(out_channels, Tensor):
        return out_channels.to(device=like.device, dtype=like.dtype) * p
    return out_channels * p


def _raw_energies(layout: _BranchLayout, x: Tensor, gram: Tensor, out_channels: int | Tensor) -> tuple[Tensor, Tensor]:
    """(moments (B, N, d, d), raw energies E(t_n) (B, N)) of a ``layout.split`` view ``x``."""
    moments = layout.moments(x)
    sums = (moments * gram).sum(dim=(-1, -2))
    return moments, sums / _per_output(out_channels, layout.p, sums)


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


def branch_energies_materialized(branch_out: Tensor, out_channels: Tensor | None = None) -> Tensor:
    """Eq. 2 on materialized branch outputs (B, N, C_out, H, W) -> (B, N); ``out_channels`` (N,): the
    channels each branch owns (a concatenating block), else the mean is over all C_out."""
    squares = branch_out.to(_energy_dtype(branch_out)).pow(2)
    if out_channels is None:
        return squares.mean(dim=(2, 3, 4))
    sums = squares.sum(dim=(2, 3, 4))
    return sums / _per_output(out_channels, branch_out.shape[-1] * branch_out.shape[-2], sums)


def _normalize(
    raw: Tensor, keep: Tensor | None, drop: Tensor | None, normalizer_branches: int
) -> tuple[Tensor, Tensor]:
    """(normalized energies, per-branch scale of h), both (B, N), from raw energies (B, N)."""
    if keep is not None:
        raw = raw * keep.to(raw.dtype)
    inv_rms = normalizer_scale(raw, normalizer_branches)  # (B,)
    energies = raw * inv_rms.square()[:, None]
    scale = inv_rms[:, None].expand_as(raw)
    if keep is not None:
        scale = scale * keep.to(raw.dtype)
    if drop is not None:
        scale = scale * drop.to(raw.dtype)
    return energies, scale


def _normalize_backward(
    raw: Tensor,
    keep: Tensor | None,
    drop: Tensor | None,
    normalizer_branches: int,
    grad_energies: Tensor | None,
    grad_scale: Tensor,
) -> Tensor:
    """d/d raw of ``_normalize``'s outputs against their gradients, (B, N).

    With r = raw * keep and m = max(sum_n r_n / N, eps): energies = r / m and scale_n = keep_n drop_n / sqrt(m),
    so dL/dr_j = g_E,j / m + (dm/dr_j) (-sum_n g_E,n r_n / m^2 - sum_n g_S,n keep_n drop_n / (2 m^1.5)), where
    dm/dr_j = 1/N while the clamp is not active (0 when it is); and dL/draw_j = keep_j dL/dr_j."""
    r = raw if keep is None else raw * keep.to(raw.dtype)
    mean = r.sum(dim=1) / normalizer_branches
    m = mean.clamp_min(ENERGY_EPS)
    mask = grad_scale
    if keep is not None:
        mask = mask * keep.to(raw.dtype)
    if drop is not None:
        mask = mask * drop.to(raw.dtype)
    grad_mean = -0.5 * mask.sum(dim=1) * m.pow(-1.5)  # through the scale
    grad_r = torch.zeros_like(r)
    if grad_energies is not None:
        grad_r = grad_energies / m[:, None]
        grad_mean = grad_mean - (grad_energies * r).sum(dim=1) / m.square()
    grad_mean = grad_mean * (mean >= ENERGY_EPS).to(raw.dtype)  # clamp_min passes no gradient below eps
    grad_r = grad_r + grad_mean[:, None] / normalizer_branches
    return grad_r if keep is None else grad_r * keep.to(raw.dtype)


class _BranchLayout:
    """Views of an activation (B, N*d, H, W) with its branches, channels and positions as separate
    dims, without copying: (B, N, d, P) for a contiguous tensor, (B, P, N, d) for a channels-last
    one (the layout training uses: see ``orchestration/training.py``). A copy into the other layout
    would cost a pass over h each way in each direction."""

    def __init__(self, h: Tensor, num_branches: int) -> None:
        self.shape = h.shape
        self.channels_last = not h.is_contiguous() and h.is_contiguous(memory_format=torch.channels_last)
        _, nd, height, width = h.shape
        self.n, self.d, self.p = num_branches, nd // num_branches, height * width

    def split(self, t: Tensor) -> Tensor:
        b, n, d, p = self.shape[0], self.n, self.d, self.p
        if self.channels_last:
            return t.permute(0, 2, 3, 1).reshape(b, p, n, d)
        return t.reshape(b, n, d, p)

    def merge(self, t: Tensor) -> Tensor:
        b, nd, height, width = self.shape
        if self.channels_last:
            return t.reshape(b, height, width, nd).permute(0, 3, 1, 2)
        return t.reshape(b, nd, height, width)

    def per_branch(self, v: Tensor) -> Tensor:
        """(B, N) -> broadcastable against ``split`` views."""
        return v[:, None, :, None] if self.channels_last else v[:, :, None, None]

    def branch_sum(self, t: Tensor) -> Tensor:
        """Sum over channels and positions of each branch: a ``split`` view -> (B, N)."""
        if self.channels_last:
            # positions first (a vectorized reduction over the outer dim of contiguous rows), then the d
            # channels: 20-50% faster on CPU than one sum over dims (1, 3), which walks short rows of d
            return t.sum(dim=1).sum(dim=-1)
        return t.sum(dim=(2, 3))

    def moments(self, x: Tensor) -> Tensor:
        """(B, N, d, d) = sum_p h_n(p) h_n(p)^T of a ``split`` view."""
        if self.channels_last:
            # one bmm per branch over strided (P, d) views: einsum would first copy x into
            # (B, N, d, P) order, a pass over h
            per_branch = (x[:, :, n, :] for n in range(self.n))  # (B, P, d) each, rows N*d apart
            return torch.stack([torch.bmm(xn.transpose(1, 2), xn) for xn in per_branch], dim=1)
        return x @ x.transpose(-1, -2)

    def gram_times(self, x: Tensor, gram: Tensor) -> Tensor:
        """G_n h_n(p) for every branch and position, as a ``split`` view in ``x``'s layout.

        A grouped 1x1 convolution with the Gram matrices as its weight (group n: d -> d channels; G_n is
        symmetric): oneDNN runs it about twice as fast on CPU as a bmm over (N, B*P, d) rows with d = 22-44
        columns, and its output comes in the activation's own layout, so the addcmul that follows does not
        mix layouts. (On a GPU with cuDNN's TF32 allowed, this fp32 conv may run in TF32: a gradient term.)"""
        n, d = gram.shape[0], gram.shape[-1]
        return self.split(F.conv2d(self.merge(x), gram.reshape(n * d, d, 1, 1), groups=n))


class _NormalizedBranches(torch.autograd.Function):
    """h -> (h with branch n scaled by s_n, normalized energies); s_n = keep_n drop_n / rms(E).

    Written by hand because autograd's version of this graph makes several more passes over h, the
    largest tensor the coded part touches:

    * it treats the two operands of h_n h_n^T as unrelated, so the moments cost two (d x P)
      products and an add; by symmetry dE_n/dh_n = 2 G_n h_n, one product;
    * it adds the scale path's gradient (g * s) and the energy path's in a separate pass; here one
      ``addcmul`` does both;
    * the scale's gradient, sum_{d,p} g * h per branch, is one multiply-sum;
    * and it works on views in h's own memory layout (``_BranchLayout``), so a channels-last h is
      never copied.

    The (B, N)-sized normalization in between is recomputed in the backward pass and differentiated by
    ``_normalize_backward``, a few (B, N)-sized ops written out: ``torch.autograd.grad`` inside a backward
    would keep ``torch.compile`` from tracing it (Dynamo then breaks the graph at every coded block).
    ``tests/test_models.py`` checks it against finite differences and against the materialized
    path, which is plain autograd.
    """

    @staticmethod
    def forward(ctx, h, gram, keep, drop, normalizer_branches, out_channels):
        layout = _BranchLayout(h, gram.shape[0])
        dtype = torch.promote_types(_energy_dtype(h), gram.dtype)
        with _full_precision(h.device.type):
            x = layout.split(h).to(dtype)
            moments, raw = _raw_energies(layout, x, gram.to(dtype), out_channels)
            energies, scale = _normalize(raw, keep, drop, normalizer_branches)
            scaled = layout.merge((x * layout.per_branch(scale)).to(h.dtype))
        ctx.save_for_backward(h, gram, moments, raw, keep, drop)
        ctx.normalizer_branches, ctx.out_channels = normalizer_branches, out_channels
        return scaled, energies

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_scaled, grad_energies):
        h, gram, moments, raw, keep, drop = ctx.saved_tensors
        layout = _BranchLayout(h, gram.shape[0])
        dtype = moments.dtype
        with _full_precision(h.device.type):
            x = layout.split(h).to(dtype)
            # every elementwise op below on one dtype: CPU kernels that mix dtypes (bf16 * float32, or
            # out= in another dtype) take a scalar path, 2-3x slower than a conversion and a vectorized op
            g = layout.split(grad_scaled).to(dtype)
            _, scale = _normalize(raw, keep, drop, ctx.normalizer_branches)
            grad_scale = layout.branch_sum(g * x)  # (B, N)
            grad_raw = _normalize_backward(raw, keep, drop, ctx.normalizer_branches, grad_energies, grad_scale)
            grad_raw = grad_raw / _per_output(ctx.out_channels, layout.p, grad_raw)
            grad_h = None
            if ctx.needs_input_grad[0]:
                # g * s (scale path) + 2 dE_n G_n h_n (energy path) in one addcmul
                grad_x = torch.addcmul(
                    g * layout.per_branch(scale),
                    layout.gram_times(x, gram.to(dtype)),
                    layout.per_branch(2 * grad_raw),
                )
                grad_h = layout.merge(grad_x.to(h.dtype))
            grad_gram = torch.einsum("bn,bnde->nde", grad_raw, moments) if ctx.needs_input_grad[1] else None
        return grad_h, grad_gram, None, None, None, None


def normalized_branches(
    h: Tensor,
    gram: Tensor,
    out_channels: int | Tensor,
    normalizer_branches: int,
    keep: Tensor | None = None,
    drop: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """A coded block's normalization on the expand conv's input (docs/method.md Eq. 2, 3).

    Returns h with branch n scaled by keep_n * drop_n / rms(E) (so that ``expand(result)`` is the
    normalized, masked branch sum) and the normalized energies (B, N), rows summing to
    ``normalizer_branches`` over the kept branches. ``keep`` (B, N) 0/1 removes branches before the
    normalization; ``drop`` (B, N) (DropSubNNs) scales them after it. ``gram`` is (N, d, d) from
    ``expand_gram``.
    """
    return _NormalizedBranches.apply(h, gram, keep, drop, normalizer_branches, out_channels)


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
