"""Early exit over many samples: the samples that go on past an exit are pooled across input batches.

``route`` (``early_exit.routing``) classifies one batch: after every exit the batch shrinks, so the
deep segments run on a few samples, where a convolution's fixed cost per call outweighs its cost per
sample (on a 2-core CPU, a coded block of the quickstart net costs about 0.19 ms at batch 1 and 0.85 ms at
batch 64). When there are many samples to classify (a data set, a queue of requests), MSDNet's budgeted
batch classification setting, the survivors of each segment can instead wait in a pool until they fill a
batch, so every segment runs on full batches and the time follows the FLOPs more closely.

Each sample's decision is the same as ``route``'s: in eval mode nothing mixes samples, and Eq. 7 is
computed per sample (``coding.decoding.codeword_distances``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from coded_resnext.early_exit.routing import FINAL_HEAD, EarlyExitOutput


class SamplePool:
    """Features and original sample indices waiting for one segment."""

    def __init__(self) -> None:
        self.features: list[Tensor] = []
        self.indices: list[Tensor] = []
        self.count = 0

    def add(self, features: Tensor, indices: Tensor) -> None:
        self.features.append(features)
        self.indices.append(indices)
        self.count += len(indices)

    def take(self, size: int) -> tuple[Tensor, Tensor]:
        """Up to ``size`` samples, oldest first; the rest stay. Only the chunks taken are copied (into one
        batch); the rest of a chunk cut in two stays as a view."""
        features: list[Tensor] = []
        indices: list[Tensor] = []
        need = size
        while need and self.indices:
            if len(self.indices[0]) <= need:
                features.append(self.features.pop(0))
                indices.append(self.indices.pop(0))
            else:
                chunk, index = self.features[0], self.indices[0]
                features.append(chunk[:need])
                indices.append(index[:need])
                self.features[0], self.indices[0] = chunk[need:], index[need:]
            need -= len(indices[-1])
        self.count -= size - need
        if len(indices) == 1:
            return features[0], indices[0]
        return torch.cat(features), torch.cat(indices)  # cat keeps channels-last


def route_pooled(
    segments: Sequence[Callable],
    tail: Callable,
    thresholds: Sequence[float],
    inputs: Tensor,
    batch_size: int,
) -> EarlyExitOutput:
    """Early exit of every sample of ``inputs``, in batches of ``batch_size`` at every segment."""
    total = len(inputs)
    prediction = torch.full((total,), FINAL_HEAD, dtype=torch.long, device=inputs.device)
    exit_block = torch.full((total,), FINAL_HEAD, dtype=torch.long, device=inputs.device)
    pools = [SamplePool() for _ in range(len(segments) + 1)]  # pools[i]: waiting for segment i (the tail last)

    def run(stage: int, x: Tensor, index: Tensor) -> None:
        if stage == len(segments):
            prediction[index] = tail(x).argmax(1)
            return
        out = segments[stage](x)
        leave = out.confidence >= thresholds[stage]
        prediction[index[leave]] = out.prediction[leave].long()
        exit_block[index[leave]] = stage
        stay = (~leave).nonzero().squeeze(1)
        if stay.numel():
            pools[stage + 1].add(out.features[stay], index[stay])

    def drain(whole_batches_only: bool) -> None:
        for stage in range(1, len(pools)):
            pool = pools[stage]
            while pool.count >= batch_size or (pool.count and not whole_batches_only):
                run(stage, *pool.take(batch_size))

    for start in range(0, total, batch_size):
        index = torch.arange(start, min(start + batch_size, total), device=inputs.device)
        run(0, inputs[start : start + batch_size], index)
        drain(whole_batches_only=True)
    drain(whole_batches_only=False)
    return EarlyExitOutput(prediction, exit_block)
