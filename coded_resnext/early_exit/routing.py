"""Routing one batch through the segments of an early exit: who leaves where, with which class.

After each segment (``ExitSegment``: the blocks up to a coded block and its Eq. 7 decoder) the samples
whose confidence reaches that exit's threshold leave with their decoded class, and the rest go on as a
smaller batch; whoever is left at the end gets the head's argmax. One function for ``EarlyExit`` and
for a program loaded from its archive (``early_exit.export``), so both take the same decisions; the
pooled variant over many batches is ``early_exit.pool``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

FINAL_HEAD = -1  # exit_block of samples that went through the whole network


class EarlyExitOutput(NamedTuple):
    prediction: Tensor  # (B,) class index
    exit_block: Tensor  # (B,) index into model.coded_blocks where the sample left; -1: the final head


class SegmentOutput(NamedTuple):
    features: Tensor  # the coded block's output, input of the next segment
    prediction: Tensor  # (B,) Eq. 7 decision at this coded block
    confidence: Tensor  # (B,) its margin (second-nearest minus nearest codeword distance)


def route(segments: Sequence[Callable], tail: Callable, thresholds: Sequence[float], x: Tensor) -> EarlyExitOutput:
    """Run ``segments`` in turn; after each, the samples whose confidence reaches its threshold leave and
    the rest continue as a smaller batch; whoever is left at the end gets the tail's argmax.

    Shared by ``EarlyExit`` and the exported program, so both take the same decisions. Rows are taken
    with advanced indexing, which keeps a channels-last batch channels-last (``index_select`` would not).
    """
    batch = x.shape[0]
    prediction = torch.full((batch,), FINAL_HEAD, dtype=torch.long, device=x.device)
    exit_block = torch.full((batch,), FINAL_HEAD, dtype=torch.long, device=x.device)
    remaining = torch.arange(batch, device=x.device)  # original index of each row of x
    for i, (segment, threshold) in enumerate(zip(segments, thresholds, strict=True)):
        out = segment(x)
        x = out.features
        leave = out.confidence >= threshold
        if not bool(leave.any()):
            continue
        prediction[remaining[leave]] = out.prediction[leave].long()
        exit_block[remaining[leave]] = i
        stay = (~leave).nonzero().squeeze(1)
        if stay.numel() == 0:
            return EarlyExitOutput(prediction, exit_block)
        remaining, x = remaining[stay], x[stay]
    prediction[remaining] = tail(x).argmax(1)
    return EarlyExitOutput(prediction, exit_block)
