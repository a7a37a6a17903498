"""Coded ResNeXt (Avranas & Kountouris, "Towards Disentangling Information Paths with Coded ResNeXt",
arXiv 2202.05343).

A ResNeXt whose deeper blocks assign branches to classes by binary codewords: energy normalization
(Eq. 3) in every coded block, a coding loss (Eq. 5) that pushes each class's energy onto its
codeword's branches, and DropSubNNs. ``control=True`` builds the plain ResNeXt with the same shape.

The variants of the paper's discussion are config options: per-block schemes inside a stage (Appendix B),
``branch_merge="concat_coded"`` or ``"concat"`` (Section 4.3.1) and ``mask_grads`` (footnote 5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from coded_resnext.coding import CodingScheme
from coded_resnext.layers.coded_block import CodedBlock
from coded_resnext.layers.drop_subnns import drop_subnns_mask
from coded_resnext.layers.energy import coding_loss
from coded_resnext.models.config import CodedResNeXtConfig


class CodedOutput(NamedTuple):
    logits: Tensor  # (B, K)
    energies: tuple[Tensor, ...]  # one (B, N_l) per coded block in network order, rows sum to N_l


class LossParts(NamedTuple):
    total: Tensor
    classification: Tensor
    coding: Tensor  # sum over coded blocks of L_code (before multiplying by mu)


class CodedBlockInfo(NamedTuple):
    """Where a coded block sits and which scheme drives it."""

    block_index: int  # index into model.blocks
    stage: str
    scheme: CodingScheme
    drop_prob: float
    drop_group: int  # consecutive coded blocks with the same scheme share one DropSubNNs mask (plain ones between too)


def make_stem(kind: str, in_chans: int, channels: int) -> nn.Sequential:
    if kind == "cifar":
        return nn.Sequential(
            nn.Conv2d(in_chans, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(True)
        )
    return nn.Sequential(
        nn.Conv2d(in_chans, channels, 7, stride=2, padding=3, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(True),
        nn.MaxPool2d(3, stride=2, padding=1),
    )


def _scaled(channels: int, multiplier: float) -> int:
    return max(1, round(channels * multiplier))


class CodedResNeXt(nn.Module):
    def __init__(self, config: CodedResNeXtConfig) -> None:
        super().__init__()
        self.config = config
        self.num_classes = config.num_classes
        m = config.width_multiplier
        channels = _scaled(config.stem_channels, m)
        self.stem = make_stem(config.stem, config.in_chans, channels)

        self.blocks = nn.ModuleList()
        self.coded_blocks: list[CodedBlockInfo] = []
        # per stage with a coded block: each block's scheme (None: a plain block); rebuilds the model
        self.block_schemes: dict[str, tuple[CodingScheme | None, ...]] = {}
        previous_scheme: CodingScheme | None = None
        drop_group = -1
        for stage in config.stages:
            stage_schemes = config.block_schemes(stage)
            if any(scheme is not None for scheme in stage_schemes):
                self.block_schemes[stage.name] = stage_schemes
            for i, scheme in enumerate(stage_schemes):
                block = CodedBlock(
                    channels,
                    _scaled(stage.out_channels, m),
                    _scaled(stage.branch_width, m),
                    stage.num_branches,
                    stride=stage.stride if i == 0 else 1,
                    normalize_energy=scheme is not None,
                    materialize=config.energy_impl == "materialized",
                    zero_init_last=config.zero_init_last_bn,
                    merge=config.block_merge(scheme),
                )
                if scheme is not None:  # a plain block passes the mask on, as the authors' blocks of ratio 1 do
                    if scheme != previous_scheme:
                        drop_group += 1
                    previous_scheme = scheme
                    p = config.drop_prob if stage.drop_prob is None else stage.drop_prob
                    self.coded_blocks.append(CodedBlockInfo(len(self.blocks), stage.name, scheme, p, drop_group))
                    # (K, N) codewords as a non-persistent buffer: moves with the model, stays out of
                    # the state dict (the scheme is recorded with the config).
                    block.register_buffer(
                        "codewords", torch.tensor(scheme.codewords, dtype=torch.float32), persistent=False
                    )
                self.blocks.append(block)
                channels = _scaled(stage.out_channels, m)
        self.num_features = channels
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, config.num_classes, bias=False)  # no bias, as released
        self._init_weights()

    @property
    def schemes(self) -> dict[str, CodingScheme]:
        """The distinct schemes by name: the stage's name when the whole stage uses one, else
        ``c4.0``, ``c4.1``, ... per run of equal blocks inside the stage (runs of plain blocks count)."""
        out: dict[str, CodingScheme] = {}
        for stage, per_block in self.block_schemes.items():
            if len(set(per_block)) == 1:
                out[stage] = per_block[0]
                continue
            runs = [per_block[0]]
            for scheme in per_block[1:]:
                if scheme != runs[-1]:
                    runs.append(scheme)
            out.update({f"{stage}.{i}": scheme for i, scheme in enumerate(runs) if scheme is not None})
        return out

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        for block in self.coded_block_modules:
            if self.config.expand_init == "fan_out_grouped" and isinstance(block.conv_expand, nn.Conv2d):
                # the authors' coded expand is a grouped conv with N * C_out outputs: kaiming fan-out N * C_out
                fan_out = block.num_branches * block.conv_expand.out_channels
                nn.init.normal_(block.conv_expand.weight, 0.0, math.sqrt(2.0 / fan_out))
        if self.config.zero_init_last_bn:
            for block in self.blocks:
                nn.init.zeros_(block.bn_sum.weight)

    # ---- forward ------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """Logits (B, K)."""
        return self.forward_with_aux(x).logits

    def forward_with_aux(
        self, x: Tensor, keep_paths_of: int | Tensor | None = None, targets: Tensor | None = None
    ) -> CodedOutput:
        """Logits and the normalized energies of every coded block.

        ``keep_paths_of=k`` (or a (B,) tensor of classes) zeroes, in every coded block, each branch
        whose codeword bit for that class is 0, before energy normalization (docs/method.md section 7).
        ``targets`` (B,): the batch's labels, which ``mask_grads=True`` needs in training (the gradient
        of each sample reaches only its class's branches); ignored otherwise.
        """
        keep = None if keep_paths_of is None else self.path_masks(keep_paths_of, x.shape[0])
        grad_keep = None
        if self.config.mask_grads and self.training and self.coded_blocks:
            if targets is None:
                raise ValueError(
                    "mask_grads=True masks each sample's gradient by its class's codeword: in training call "
                    "model.forward_with_aux(x, targets=y)"
                )
            grad_keep = self.path_masks(targets, x.shape[0])
        return self.forward_with_branch_masks(x, keep, grad_keep)

    def path_masks(self, classes: int | Tensor, batch: int) -> list[Tensor]:
        """Per coded block, the (B, N) 0/1 mask of the branches on the paths of ``classes``."""
        masks = []
        for info in self.coded_blocks:
            codewords = self.blocks[info.block_index].codewords
            if isinstance(classes, Tensor) and classes.dim() > 0:
                masks.append(codewords[classes.to(codewords.device)])
            else:
                masks.append(codewords[int(classes)].expand(batch, -1))
        return masks

    def forward_with_branch_masks(
        self,
        x: Tensor,
        keep: Sequence[Tensor | None] | None = None,
        grad_keep: Sequence[Tensor | None] | None = None,
    ) -> CodedOutput:
        """Like ``forward_with_aux`` with an explicit (B, N_l) keep mask (or None) per coded block, and
        optionally a (B, N_l) gradient mask per coded block (``CodedBlock.forward``'s ``grad_keep``)."""
        for name, masks in (("keep", keep), ("gradient", grad_keep)):
            if masks is not None and len(masks) != len(self.coded_blocks):
                raise ValueError(
                    f"expected {len(self.coded_blocks)} {name} masks (one per coded block), got {len(masks)}"
                )
        x = self.stem(x)
        energies: list[Tensor] = []
        coded = iter(self.coded_blocks)
        info = None
        drop: Tensor | None = None
        drop_group = -1
        for block in self.blocks:
            if not block.normalize_energy:
                x = block(x).out
                continue
            info = next(coded)
            if info.drop_group != drop_group:
                drop_group = info.drop_group
                drop = None
                if self.training and info.drop_prob > 0:
                    drop = drop_subnns_mask(x.shape[0], block.num_branches, info.drop_prob, x.device)
            block_keep = None if keep is None else keep[len(energies)]
            block_grad_keep = None if grad_keep is None else grad_keep[len(energies)]
            out = block(x, block_keep, drop, block_grad_keep)
            x = out.out
            energies.append(out.energies)
        return CodedOutput(self.head(x), tuple(energies))

    def head(self, features: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.pool(features), 1))

    # ---- the trunk: what every pruned classifier shares with the model -----------------------------
    @property
    def trunk_depth(self) -> int:
        """Blocks before the first coded block (all of them in a plain model): the stem and these are
        the same in the model and in every network extracted from it, so an evaluation can run them once
        per image for all of those networks (``trunk``, ``forward_from``)."""
        return self.coded_blocks[0].block_index if self.coded_blocks else len(self.blocks)

    def trunk(self, x: Tensor, depth: int | None = None) -> Tensor:
        """The stem and the first ``depth`` blocks (default ``trunk_depth``) in eval mode: the input of
        ``blocks[depth]``, as ``forward_with_aux`` computes it."""
        self._inference_only("trunk")
        x = self.stem(x)
        for block in self.blocks[: self.trunk_depth if depth is None else depth]:
            x = block(x).out
        return x

    def forward_from(self, x: Tensor, start: int, keep: Sequence[Tensor | None] | None = None) -> CodedOutput:
        """``forward_with_branch_masks`` of an input that went through ``trunk(., start)``: the same logits,
        and the energies of the coded blocks from ``blocks[start]`` on (all of them when ``start`` is at
        most ``trunk_depth``); ``keep`` as there, one mask (or None) per coded block of the model. Eval mode:
        a diagnostic that varies only a late block (branch removal) runs the blocks before it once."""
        self._inference_only("forward_from")
        energies: list[Tensor] = []
        coded = sum(1 for info in self.coded_blocks if info.block_index < start)  # coded blocks already run
        for block in self.blocks[start:]:
            if block.normalize_energy:
                out = block(x, None if keep is None else keep[coded])
                energies.append(out.energies)
                coded += 1
            else:
                out = block(x)
            x = out.out
        return CodedOutput(self.head(x), tuple(energies))

    def _inference_only(self, what: str) -> None:
        if self.training:  # DropSubNNs and batch statistics: training goes through forward_with_aux
            raise RuntimeError(f"{what} is for evaluation; call model.eval() first")

    # ---- loss ----------------------------------------------------------------------------------
    def loss_parts(self, output: CodedOutput, targets: Tensor) -> LossParts:
        """Eq. 6: cross-entropy (with the config's label smoothing) + mu * sum over coded blocks of L_code (Eq. 5)."""
        ce = F.cross_entropy(output.logits, targets, label_smoothing=self.config.label_smoothing)
        code = ce.new_zeros(())
        cfg = self.config
        for info, energies in zip(self.coded_blocks, output.energies, strict=True):
            target_words = self.blocks[info.block_index].codewords[targets]
            code = code + coding_loss(
                energies, target_words, info.scheme.ratio, cfg.coding_loss_power, cfg.coding_loss_threshold
            )
        return LossParts(ce + cfg.coding_loss_weight * code, ce, code)

    def loss(self, output: CodedOutput, targets: Tensor) -> Tensor:
        return self.loss_parts(output, targets).total

    # ---- introspection -------------------------------------------------------------------------
    @property
    def coded_block_modules(self) -> list[CodedBlock]:
        return [self.blocks[i.block_index] for i in self.coded_blocks]

    def scheme_hashes(self) -> dict[str, str]:
        return {stage: scheme.content_hash for stage, scheme in self.schemes.items()}

    def extra_repr(self) -> str:
        kind = "control (plain ResNeXt)" if self.config.control else f"coded stages {list(self.block_schemes)}"
        params = sum(p.numel() for p in self.parameters())
        return f"num_classes={self.num_classes}, {kind}, params={params / 1e6:.2f}M"
