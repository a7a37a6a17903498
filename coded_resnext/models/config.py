"""Typed configuration of a Coded ResNeXt (docs/method.md Table 1): stages as data, not strings.

The config also says which scheme each block gets, and sizes a stage to its schemes: a scheme of another
branch count than the preset's stage (``paper:cifar100/8/20`` on a 10-branch stage, or
``GeneratedScheme(..., num_branches=12)``) gives the stage that many branches of the same width. So
``config.stages`` is always the shape that is built, whoever builds it.

``to_dict`` / ``from_dict`` make it plain data for a checkpoint (``models.checkpoint``), with every stage's
schemes stored as codewords: a model rebuilt from it has exactly the codes it was trained with, even where
a scheme file has moved or the generator would now give another scheme.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from coded_resnext.coding import CodingScheme, CodingSchemeError
from coded_resnext.coding.defaults import SCHEME_OFF, GeneratedScheme, scheme_for_stage, scheme_size
from coded_resnext.validation import bounded, check_bounds

# A stage's coding scheme: a published name ("paper:cifar10/5/10"), a JSON file path, a scheme value,
# generator parameters, or "off". None: the published scheme for (classes, branches, active) if there is
# one, else a generated one.
SchemeSpec = str | CodingScheme | GeneratedScheme | None
# A stage's schemes: one spec for all its blocks, or a sequence with one spec per block (Appendix B: a
# scheme that changes inside a stage, e.g. c4 as 3 blocks at 16/32 then 3 at 8/32).
StageSchemes = SchemeSpec | tuple[SchemeSpec, ...] | list[SchemeSpec]


class ModelConfigError(ValueError):
    """A model configuration is invalid; the message is one line for the user."""


@dataclass(frozen=True)
class StageConfig:
    """``depth`` blocks of [out_channels, branch_width, num_active / num_branches] (Table 1)."""

    name: str  # paper's stage name, "c2".."c5"; keys of per-stage settings
    depth: int = bounded(ge=1)  # number of blocks
    out_channels: int = bounded(ge=1)  # C_out of every block
    branch_width: int = bounded(ge=1)  # d, width of one branch (subNN)
    num_branches: int = bounded(ge=1)  # N, the cardinality
    num_active: int = bounded(ge=1)  # N_act; == num_branches makes an uncoded (plain ResNeXt) stage
    stride: int = bounded(1, ge=1)  # stride of the stage's first block
    drop_prob: float | None = bounded(None, ge=0, lt=1, nullable=True)  # DropSubNNs p here; None: the model's

    def __post_init__(self) -> None:
        check_bounds(self, f"stage {self.name}: ", ModelConfigError)
        if self.num_active > self.num_branches:
            raise ModelConfigError(
                f"stage {self.name}: num_active ({self.num_active}) must be <= num_branches ({self.num_branches})"
            )

    @property
    def coded(self) -> bool:
        return self.num_active < self.num_branches


@dataclass(frozen=True)
class CodedResNeXtConfig:
    """Everything needed to build a Coded ResNeXt; presets are instances of this."""

    num_classes: int = bounded(ge=2)
    stages: tuple[StageConfig, ...]
    stem: Literal["cifar", "imagenet"] = "cifar"  # 3x3 conv; or 7x7/2 conv + 3x3/2 max pool
    stem_channels: int = bounded(64, ge=1)
    in_chans: int = bounded(3, ge=1)  # 1 for grayscale inputs
    width_multiplier: float = bounded(1.0, gt=0)  # scales stem, branch widths d and block outputs C_out
    coding_loss_weight: float = bounded(6.0, ge=0)  # mu in Eq. 6 (paper: 6 on CIFAR, 1 on ImageNet)
    coding_loss_power: float = bounded(4.0, gt=0)  # exponent in Eq. 5 (ablation: 4 > 2 > 1)
    coding_loss_threshold: float = bounded(0.0, ge=0)  # deviations up to this are not penalised
    # of the cross-entropy term of Eq. 6 (timm's default 0.1 in the official ImageNet run)
    label_smoothing: float = bounded(0.0, ge=0, lt=1)
    drop_prob: float = bounded(0.1, ge=0, lt=1)  # DropSubNNs p of coded stages
    control: bool = False  # every block N/N: the plain ResNeXt baseline with the same shape
    energy_impl: Literal["gram", "materialized"] = "gram"  # "materialized": slow reference path
    zero_init_last_bn: bool = True  # gamma of the BN after the branch sum starts at 0
    schemes: dict[str, StageSchemes] = field(default_factory=dict)  # per stage name: one spec, or one per block
    # Section 4.3.1: a block's branch outputs are summed (ResNeXt, the paper's method) or concatenated (branch n
    # writes its own C_out/N output channels; the variant that breaks the binary classifiers): "concat_coded" in
    # the coded blocks only, the reading closest to Section 4.3.1 (the uncoded stage, and so the control, stay
    # summing ResNeXt blocks of the same size), "concat" in every block (the control concatenates too, and every
    # concatenating expand has N times fewer weights, so the network is smaller)
    branch_merge: Literal["sum", "concat", "concat_coded"] = "sum"
    # Footnote 5 / the authors' Mask_grads: in training, the classification gradient does not reach the
    # branches that are inactive for the sample's class (the coding loss still does)
    mask_grads: bool = False
    # Init of a coded (summing) block's expand conv: kaiming fan-out N*C_out, as the authors' grouped
    # expand conv (one C_out output per branch) has, or C_out of the dense conv (sqrt(N) larger weights).
    # The paper is silent; the authors' code decides the default. Plain blocks use C_out either way.
    expand_init: Literal["fan_out_grouped", "fan_out_dense"] = "fan_out_grouped"

    def __post_init__(self) -> None:
        check_bounds(self, "", ModelConfigError)
        if not self.stages:
            raise ModelConfigError("a model needs at least one stage")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ModelConfigError(f"stage names must be unique, got {names}")
        if self.stem not in ("cifar", "imagenet"):
            raise ModelConfigError(f"stem must be 'cifar' or 'imagenet', got {self.stem!r}")
        if self.energy_impl not in ("gram", "materialized"):
            raise ModelConfigError(f"energy_impl must be 'gram' or 'materialized', got {self.energy_impl!r}")
        unknown = set(self.schemes) - set(names)
        if unknown:
            raise ModelConfigError(f"schemes given for unknown stages {sorted(unknown)}; the stages are {names}")
        for key, choices in (
            ("branch_merge", ("sum", "concat", "concat_coded")),
            ("expand_init", ("fan_out_grouped", "fan_out_dense")),
        ):
            if getattr(self, key) not in choices:
                raise ModelConfigError(f"{key} must be one of {list(choices)}, got {getattr(self, key)!r}")
        # per-block counts and branch counts checked here, before anything is built
        object.__setattr__(self, "stages", tuple(self._sized_to_schemes(stage) for stage in self.stages))
        for stage in self.stages:
            width = max(1, round(stage.out_channels * self.width_multiplier))
            concatenates = self.branch_merge == "concat" or (
                self.branch_merge == "concat_coded" and self._has_coded_blocks(stage)
            )
            if concatenates and width < stage.num_branches:
                raise ModelConfigError(
                    f"branch_merge={self.branch_merge!r}: stage {stage.name} has {width} output channels for "
                    f"{stage.num_branches} branches, each of which needs its own; raise width_multiplier"
                )

    def block_merge(self, scheme: CodingScheme | None) -> Literal["sum", "concat"]:
        """How a block with ``scheme`` (None: a plain block) merges its branch outputs."""
        if self.branch_merge == "concat" or (self.branch_merge == "concat_coded" and scheme is not None):
            return "concat"
        return "sum"

    def _has_coded_blocks(self, stage: StageConfig) -> bool:
        """Whether some block of ``stage`` is coded, from the specs alone (as ``_block_scheme`` decides,
        without resolving a scheme)."""
        return not self.control and any(
            spec != SCHEME_OFF and (stage.coded or spec is not None) for spec in self.block_scheme_specs(stage)
        )

    def block_scheme_specs(self, stage: StageConfig) -> list[SchemeSpec]:
        """The scheme spec of each of ``stage``'s blocks (a stage-wide spec repeated)."""
        spec = self.schemes.get(stage.name)
        if not isinstance(spec, tuple | list):
            return [spec] * stage.depth
        if len(spec) != stage.depth:
            raise ModelConfigError(
                f"schemes[{stage.name!r}]: {len(spec)} per-block schemes for the {stage.depth} blocks of stage "
                f"{stage.name}; give one per block"
            )
        return list(spec)

    def _sized_to_schemes(self, stage: StageConfig) -> StageConfig:
        """``stage`` with the (branches, active) of its schemes, the first block's that asks for a size;
        the blocks of a stage share one branch count."""
        sizes = [size for size in map(scheme_size, self.block_scheme_specs(stage)) if size is not None]
        if len({branches for branches, _ in sizes}) > 1:
            raise ModelConfigError(
                f"schemes[{stage.name!r}]: the blocks of stage {stage.name} must share one branch count, got "
                f"schemes with {sorted({branches for branches, _ in sizes})} branches; give them codewords of one length"
            )
        if not sizes or sizes[0] == (stage.num_branches, stage.num_active):
            return stage
        branches, active = sizes[0]
        return dataclasses.replace(stage, num_branches=branches, num_active=active)

    def block_schemes(self, stage: StageConfig) -> tuple[CodingScheme | None, ...]:
        """The scheme of each of ``stage``'s blocks (None: a plain block); equal specs resolve once, so a
        generated scheme is built once. Coded where the preset says so (N_act < N) or a scheme is given;
        never in the control; ``"off"`` makes plain ResNeXt blocks."""
        resolved: list[tuple[SchemeSpec, CodingScheme | None]] = []
        for spec in self.block_scheme_specs(stage):
            known = [scheme for seen, scheme in resolved if _same_spec(seen, spec)]
            resolved.append((spec, known[0] if known else self._block_scheme(stage, spec)))
        return tuple(scheme for _, scheme in resolved)

    def _block_scheme(self, stage: StageConfig, spec: SchemeSpec) -> CodingScheme | None:
        if self.control or spec == SCHEME_OFF or not (stage.coded or spec is not None):
            return None
        scheme = scheme_for_stage(spec, self.num_classes, stage.num_branches, stage.num_active)
        scheme.check_compatible(self.num_classes, stage.num_branches, where=f"stage {stage.name}")
        return scheme

    def resolved(self, block_schemes: Mapping[str, Sequence[CodingScheme | None]] | None = None) -> CodedResNeXtConfig:
        """This config with every stage's schemes given as values: one ``CodingScheme`` for a stage whose blocks
        share it, one per block (``"off"`` for a plain block) otherwise, ``"off"`` for a coded stage left plain.
        ``block_schemes`` is a built model's (``CodedResNeXt.block_schemes``: stages without a coded block left
        out), which saves resolving the specs again; without it they are resolved here."""
        schemes: dict[str, StageSchemes] = {}
        for stage in self.stages:
            if block_schemes is None:
                per_block = self.block_schemes(stage)
            else:
                per_block = tuple(block_schemes.get(stage.name, (None,) * stage.depth))
            if all(scheme is None for scheme in per_block):
                if stage.coded:
                    schemes[stage.name] = SCHEME_OFF
            elif len(set(per_block)) == 1:
                schemes[stage.name] = per_block[0]
            else:
                schemes[stage.name] = tuple(SCHEME_OFF if s is None else s for s in per_block)
        return dataclasses.replace(self, schemes=schemes)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON, and ``torch.load(weights_only=True)`` safe): every field, the stages as dicts, and
        every stage's schemes as codewords (``CodingScheme.to_dict``; per block a list, ``"off"`` a plain
        block). Resolves the schemes: a generated one is built (cached per process)."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["stages"] = [dataclasses.asdict(stage) for stage in self.stages]
        out["schemes"] = {
            name: [_scheme_entry(s) for s in spec] if isinstance(spec, tuple) else _scheme_entry(spec)
            for name, spec in self.resolved().schemes.items()
        }
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CodedResNeXtConfig:
        """The config ``to_dict`` wrote; a one-line ``ModelConfigError`` naming the key for anything else."""
        if not isinstance(data, Mapping):
            raise ModelConfigError(f"a model config must be a mapping of its fields, got {type(data).__name__}")
        unknown = sorted(set(data) - set(cls.field_names()))
        if unknown:
            raise ModelConfigError(f"unknown model config key(s) {unknown}; valid keys: {', '.join(cls.field_names())}")
        missing = [key for key in ("num_classes", "stages") if key not in data]
        if missing:
            raise ModelConfigError(f"model config: missing {missing}; a config written by to_dict has both")
        stages = data["stages"]
        if not isinstance(stages, Sequence) or isinstance(stages, str):
            raise ModelConfigError(f"model config: stages must be a list of stage dicts, got {type(stages).__name__}")
        schemes = data.get("schemes") or {}
        if not isinstance(schemes, Mapping):
            raise ModelConfigError(f"model config: schemes must be a mapping by stage, got {type(schemes).__name__}")
        return cls(
            **{
                **data,
                "stages": tuple(_stage_from_dict(i, entry) for i, entry in enumerate(stages)),
                "schemes": {name: _stage_schemes_from_dict(name, entry) for name, entry in schemes.items()},
            }
        )

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def _same_spec(a: SchemeSpec, b: SchemeSpec) -> bool:
    """Equal scheme specs (a CodingScheme compares by content, the rest by value)."""
    return type(a) is type(b) and a == b


def _scheme_entry(spec: SchemeSpec) -> dict[str, Any] | str:
    """A resolved config's scheme spec as data: codewords, or ``"off"``."""
    return spec.to_dict() if isinstance(spec, CodingScheme) else SCHEME_OFF


def _stage_from_dict(index: int, entry: Any) -> StageConfig:
    if not isinstance(entry, Mapping):
        raise ModelConfigError(f"model config: stages[{index}] must be a dict of StageConfig fields")
    names = [f.name for f in fields(StageConfig)]
    unknown = sorted(set(entry) - set(names))
    if unknown:
        raise ModelConfigError(f"model config: stages[{index}] has unknown keys {unknown}; its keys are {names}")
    required = [f.name for f in fields(StageConfig) if f.default is dataclasses.MISSING]
    missing = [name for name in required if name not in entry]
    if missing:
        raise ModelConfigError(f"model config: stages[{index}] lacks {missing}; a config written by to_dict has them")
    return StageConfig(**entry)


def _stage_schemes_from_dict(name: str, entry: Any) -> StageSchemes:
    """A stage's stored schemes: codewords (a dict), ``"off"``, or a list with one of these per block."""
    if isinstance(entry, list | tuple):
        return tuple(_block_scheme_from_dict(f"schemes[{name!r}][{i}]", e) for i, e in enumerate(entry))
    return _block_scheme_from_dict(f"schemes[{name!r}]", entry)


def _block_scheme_from_dict(where: str, entry: Any) -> CodingScheme | str:
    if entry == SCHEME_OFF:
        return SCHEME_OFF
    if not isinstance(entry, Mapping):
        raise ModelConfigError(f"model config: {where} must be codewords (a scheme dict) or 'off', got {entry!r}")
    try:
        return CodingScheme.from_dict(dict(entry), source=f"model config: {where}")
    except CodingSchemeError as err:
        raise ModelConfigError(str(err)) from None
