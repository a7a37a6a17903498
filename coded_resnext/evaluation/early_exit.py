"""Early exit: stop at the first coded block whose decoding is confident enough (Eq. 7 + a threshold).

Compute is counted with ``torch.utils.flop_counter`` per network segment (stem, each block, head), so
the cost of exiting after coded block l is the FLOPs of everything up to and including it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from coded_resnext.coding.decoding import decode
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


def early_exit_at(
    model: CodedResNeXt, collected: Collected, block_fractions: list[float], thresholds: Sequence[float]
) -> list[dict[str, float]]:
    """Accuracy, mean compute fraction and exit rate of exiting at the first coded block whose
    confidence reaches each threshold (sorted, duplicates dropped)."""
    decoded = [decode(e, info.scheme) for e, info in zip(collected.energies, model.coded_blocks, strict=True)]
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


def early_exit_curve(
    model: CodedResNeXt, collected: Collected, block_fractions: list[float], num_thresholds: int
) -> list[dict[str, float]]:
    """The curve over ``num_thresholds`` thresholds: quantiles of the confidences seen, and infinity
    (the full network)."""
    confidences = torch.stack(
        [decode(e, info.scheme).confidence for e, info in zip(collected.energies, model.coded_blocks, strict=True)], 1
    )
    quantiles = torch.linspace(0, 1, num_thresholds - 1)
    thresholds = [*torch.quantile(confidences.flatten(), quantiles).tolist(), math.inf]
    return early_exit_at(model, collected, block_fractions, thresholds)


def _half_compute_row(rows: list[dict[str, float]]) -> dict[str, float] | None:
    half = [r for r in rows if r["compute_fraction"] <= 0.5]
    return max(half, key=lambda r: r["accuracy"]) if half else None


def _keep_99_row(rows: list[dict[str, float]], full_accuracy: float) -> dict[str, float] | None:
    keep = [r for r in rows if r["accuracy"] >= 0.99 * full_accuracy]
    return min(keep, key=lambda r: r["compute_fraction"]) if keep else None


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
    half, keep = _half_compute_row(rows), _keep_99_row(rows, full_accuracy)
    return {
        "early_exit/accuracy_at_half_compute": half["accuracy"] if half else math.nan,
        "early_exit/compute_at_99pct_accuracy": keep["compute_fraction"] if keep else 1.0,
    }


def operating_points(rows: list[dict[str, float]], full_accuracy: float) -> dict[str, float]:
    """The thresholds behind :func:`early_exit_summary` on the curve where they were chosen: ``half_compute``
    (NaN when no threshold reaches half the compute) and ``keep_99pct`` (infinity: the full network)."""
    half, keep = _half_compute_row(rows), _keep_99_row(rows, full_accuracy)
    return {
        "half_compute": half["threshold"] if half else math.nan,
        "keep_99pct": keep["threshold"] if keep else math.inf,
    }


def early_exit_at_operating_points(
    model: CodedResNeXt, collected: Collected, block_fractions: list[float], points: dict[str, float]
) -> tuple[dict[str, float], list[dict]]:
    """Metrics (named like :func:`early_exit_summary`'s) of another split at thresholds chosen elsewhere,
    and the table of those points: what a deployed early-exit classifier would do on unseen data."""
    full = collected.accuracy
    metrics: dict[str, float] = {}
    table = []
    for name, tau in points.items():
        row = early_exit_at(model, collected, block_fractions, [tau])[0] if not math.isnan(tau) else None
        table.append({"operating_point": name, "threshold": tau, **(row or {})})
        if name == "half_compute":
            metrics["early_exit/accuracy_at_half_compute"] = row["accuracy"] if row else math.nan
            metrics["early_exit/compute_at_half_compute"] = row["compute_fraction"] if row else math.nan
        elif name == "keep_99pct":
            metrics["early_exit/compute_at_99pct_accuracy"] = row["compute_fraction"]
            metrics["early_exit/accuracy_kept_at_99pct"] = row["accuracy"] / full if full else math.nan
    return metrics, table
