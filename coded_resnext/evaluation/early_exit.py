"""Early exit: stop at the first coded block whose decoding is confident enough (Eq. 7 + a threshold).

Compute is counted with ``torch.utils.flop_counter`` per network segment (stem, each block, head), so
the cost of exiting after coded block l is the FLOPs of everything up to and including it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from coded_resnext.decoding import decode
from coded_resnext.evaluation.collect import Collected
from coded_resnext.models import CodedResNeXt


@torch.no_grad()
def exit_compute_fractions(model: CodedResNeXt, example: Tensor) -> list[float]:
    """Per coded block, the FLOPs up to and including it as a fraction of the whole forward pass."""
    model.eval()
    segments: list[int] = []

    def counted(fn, x):
        with FlopCounterMode(display=False) as counter:
            y = fn(x)
        segments.append(counter.get_total_flops())
        return y

    x = counted(model.stem, example[:1])
    for block in model.blocks:
        x = counted(lambda t, b=block: b(t).out, x)
    counted(model.head, x)
    total = sum(segments)
    cumulative = torch.tensor(segments[:-1]).cumsum(0).tolist()  # after stem + blocks[0..i]
    return [cumulative[info.block_index + 1] / total for info in model.coded_blocks]


def early_exit_curve(
    model: CodedResNeXt, collected: Collected, block_fractions: list[float], num_thresholds: int
) -> list[dict[str, float]]:
    """Accuracy and mean compute fraction for a sweep of confidence thresholds."""
    decoded = [decode(e, info.scheme) for e, info in zip(collected.energies, model.coded_blocks, strict=True)]
    confidences = torch.stack([d.confidence for d in decoded], 1)  # (S, L)
    quantiles = torch.linspace(0, 1, num_thresholds - 1)
    thresholds = [*torch.quantile(confidences.flatten(), quantiles).tolist(), math.inf]
    fractions = torch.tensor(block_fractions)
    rows = []
    for tau in sorted(set(thresholds)):
        pred, exits = simulated_exits(model, collected, tau, decoded)
        compute = torch.where(exits >= 0, fractions[exits.clamp_min(0)], torch.ones(len(exits)))
        rows.append(
            {
                "threshold": float(tau),
                "accuracy": (pred == collected.targets).float().mean().item(),
                "compute_fraction": compute.mean().item(),
                "exit_rate": (exits >= 0).float().mean().item(),
            }
        )
    return rows


def simulated_exits(
    model: CodedResNeXt, collected: Collected, threshold: float | Tensor, decoded: list | None = None
) -> tuple[Tensor, Tensor]:
    """Per sample, the prediction and the exit point (index into ``model.coded_blocks``, -1 for the final
    head) of early exit at ``threshold`` (a float, or one per coded block), read off one full pass.
    ``coded_resnext.EarlyExit`` takes the same decisions while really stopping (tests hold them together)."""
    if decoded is None:
        decoded = [decode(e, info.scheme) for e, info in zip(collected.energies, model.coded_blocks, strict=True)]
    final_pred = collected.logits.argmax(1)
    confidences = torch.stack([d.confidence for d in decoded], 1)  # (S, L)
    predictions = torch.stack([d.prediction for d in decoded], 1)
    confident = confidences >= torch.as_tensor(threshold, dtype=confidences.dtype)  # (S, L)
    exits = torch.where(confident.any(1), confident.float().argmax(1), torch.full_like(final_pred, -1))
    pred = torch.where(exits >= 0, predictions.gather(1, exits.clamp_min(0)[:, None])[:, 0], final_pred)
    return pred, exits


def early_exit_summary(rows: list[dict[str, float]], full_accuracy: float) -> dict[str, float]:
    """Best accuracy at <= half the compute; least compute keeping >= 99% of the full accuracy."""
    half = [r["accuracy"] for r in rows if r["compute_fraction"] <= 0.5]
    keep = [r["compute_fraction"] for r in rows if r["accuracy"] >= 0.99 * full_accuracy]
    return {
        "early_exit/accuracy_at_half_compute": max(half) if half else math.nan,
        "early_exit/compute_at_99pct_accuracy": min(keep) if keep else 1.0,
    }
