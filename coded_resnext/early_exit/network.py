"""Early exit that stops computing: a Coded ResNeXt run segment by segment, each sample leaving at the
first coded block whose Eq. 7 decoding is confident enough (the paper's section 7, "early decoding").

``coded_resnext.evaluation.early_exit`` *simulates* this on a full forward pass to draw the accuracy vs
compute curve; ``EarlyExit`` is what one deploys. After each coded block the samples whose confidence
(the margin between the nearest and second-nearest codeword, ``coding.decoding.decode``) reaches the
threshold leave with their decoded class, and the rest go on as a smaller batch (``early_exit.routing``),
so the work saved is real wall-clock time, not only FLOPs. Per sample it takes the same decisions as the
simulation at the same threshold: in eval mode every layer treats samples independently, and the decoder
is computed so that its result does not depend on the other samples in the batch.

The network is cut into ``ExitSegment``s: segment i runs (the stem and) the blocks after coded block
i - 1 up to and including coded block i, and decodes; ``ExitTail`` runs the rest and the head. The
segments hold the model's own modules (no copies), so wrap the model as it will run, e.g.
``EarlyExit(fuse_for_inference(model), 0.5)``. ``early_exit.export`` saves the segments with
``torch.export`` and loads them back into the same routing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from coded_resnext.coding.decoding import decode
from coded_resnext.early_exit.pool import route_pooled
from coded_resnext.early_exit.routing import EarlyExitOutput, SegmentOutput, route
from coded_resnext.early_exit.thresholds import EarlyExitError, check_thresholds
from coded_resnext.models import CodedResNeXt


class ExitSegment(nn.Module):
    """(Stem,) the uncoded blocks before a coded block, the coded block, and its Eq. 7 decoder."""

    def __init__(self, stem: nn.Module | None, blocks: Sequence[nn.Module], ratio: float) -> None:
        super().__init__()
        self.stem = stem if stem is not None else nn.Identity()
        self.blocks = nn.ModuleList(blocks)
        self.ratio = ratio
        # (K, N) codewords of the coded block (the last one): a non-persistent buffer, as in the model
        self.register_buffer("codewords", blocks[-1].codewords.clone(), persistent=False)

    def forward(self, x: Tensor) -> SegmentOutput:
        x = self.stem(x)
        for block in self.blocks[:-1]:
            x = block(x).out
        out = self.blocks[-1](x)
        decoded = decode(out.energies, self.codewords, self.ratio)
        return SegmentOutput(out.out, decoded.prediction, decoded.confidence)


class ExitTail(nn.Module):
    """The blocks after the last coded block and the classifier head: logits (B, K)."""

    def __init__(self, blocks: Sequence[nn.Module], pool: nn.Module, fc: nn.Module) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.pool = pool
        self.fc = fc

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x).out
        return self.fc(torch.flatten(self.pool(x), 1))  # CodedResNeXt.head


def split_model(model: CodedResNeXt) -> tuple[list[ExitSegment], ExitTail]:
    """The model cut after every coded block; the pieces share the model's modules."""
    segments: list[ExitSegment] = []
    start = 0
    for info in model.coded_blocks:
        blocks = list(model.blocks[start : info.block_index + 1])
        segments.append(ExitSegment(model.stem if not segments else None, blocks, info.scheme.ratio))
        start = info.block_index + 1
    return segments, ExitTail(list(model.blocks[start:]), model.pool, model.fc)


class EarlyExit(nn.Module):
    """``model`` that stops computing for each sample at the first coded block whose Eq. 7 confidence
    reaches ``threshold`` (one float, or one per coded block; ``math.inf``: the full model).

    ``forward(x)`` returns ``EarlyExitOutput(prediction, exit_block)`` for one batch; ``predict(inputs,
    batch_size)`` the same for many samples, pooling the ones that go on across batches so every segment
    runs on full batches (``early_exit.pool``). Inference only: the model is put in eval
    mode (BatchNorm with batch statistics would make a sample's decision depend on the batch).
    """

    def __init__(self, model: CodedResNeXt, threshold: float | Sequence[float]) -> None:
        super().__init__()
        if not model.coded_blocks:
            raise EarlyExitError("model has no coded blocks (a control?): early exit needs a coded model")
        self.thresholds = check_thresholds(threshold, len(model.coded_blocks))
        segments, tail = split_model(model.eval())
        self.segments = nn.ModuleList(segments)
        self.tail = tail
        self.num_classes = model.num_classes
        self.eval()

    @torch.no_grad()
    def forward(self, x: Tensor) -> EarlyExitOutput:
        if self.training:
            raise RuntimeError("EarlyExit is for inference; call .eval() (train the wrapped model instead)")
        return route(self.segments, self.tail, self.thresholds, x)

    @torch.no_grad()
    def predict(self, inputs: Tensor, batch_size: int = 64) -> EarlyExitOutput:
        """``forward``'s decisions for every sample of ``inputs``, each segment run on batches of
        ``batch_size`` filled with the samples that reached it from any input batch."""
        if self.training:
            raise RuntimeError("EarlyExit is for inference; call .eval() (train the wrapped model instead)")
        return route_pooled(self.segments, self.tail, self.thresholds, inputs, batch_size)

    def extra_repr(self) -> str:
        return f"thresholds={self.thresholds}"
