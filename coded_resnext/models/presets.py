"""Named Coded ResNeXt presets: the paper's three networks (Table 1) and small CPU-sized ones.

Each preset is a function of ``num_classes`` returning a ``CodedResNeXtConfig``; stage settings are
plain data. Schemes are not named here: a coded stage gets the published scheme matching its
(classes, branches, active) when there is one (so the paper's nets at their datasets' class counts
use the paper's codes), else a generated one; override with ``schemes={"c3": ...}``. A scheme of another
branch count resizes its stage (``CodedResNeXtConfig``): ``schemes={"c3": "paper:cifar100/8/20"}`` on a
10-branch stage gives it 20 branches of the preset's width.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from coded_resnext.models.coded_resnext import CodedResNeXt
from coded_resnext.models.config import CodedResNeXtConfig, ModelConfigError, StageConfig

_PRESETS: dict[str, Callable[[int], CodedResNeXtConfig]] = {}


def register_preset(fn: Callable[[int], CodedResNeXtConfig]) -> Callable[[int], CodedResNeXtConfig]:
    _PRESETS[fn.__name__] = fn
    return fn


def _cifar_resnext29(num_classes: int, n: int, d: int, active_c3: int, active_c4: int) -> CodedResNeXtConfig:
    return CodedResNeXtConfig(
        num_classes=num_classes,
        stages=(
            StageConfig("c2", 3, 256, d, n, n, stride=1, drop_prob=0.0),
            StageConfig("c3", 3, 512, 2 * d, n, active_c3, stride=2),
            StageConfig("c4", 3, 1024, 4 * d, n, active_c4, stride=2),
        ),
        stem="cifar",
        coding_loss_weight=6.0,
        drop_prob=0.1,
    )


@register_preset
def coded_resnext29_10x11d(num_classes: int = 10) -> CodedResNeXtConfig:
    """CIFAR-10 net of Table 1: c3 5/10, c4 3/10; about 4.7 M parameters."""
    return _cifar_resnext29(num_classes, n=10, d=11, active_c3=5, active_c4=3)


@register_preset
def coded_resnext29_20x6d(num_classes: int = 100) -> CodedResNeXtConfig:
    """CIFAR-100 net of Table 1: c3 8/20, c4 4/20; about 4.7 M parameters."""
    return _cifar_resnext29(num_classes, n=20, d=6, active_c3=8, active_c4=4)


@register_preset
def coded_resnext50_32x4d(num_classes: int = 1000) -> CodedResNeXtConfig:
    """ImageNet net of Table 1: c4 16/32, c5 8/32; about 25.0 M parameters."""
    return CodedResNeXtConfig(
        num_classes=num_classes,
        stages=(
            StageConfig("c2", 3, 256, 4, 32, 32, stride=1),
            StageConfig("c3", 4, 512, 8, 32, 32, stride=2),
            StageConfig("c4", 6, 1024, 16, 32, 16, stride=2),
            StageConfig("c5", 3, 2048, 32, 32, 8, stride=2),
        ),
        stem="imagenet",
        coding_loss_weight=1.0,
        drop_prob=0.1,
    )


@register_preset
def coded_resnext_mini(num_classes: int = 10) -> CodedResNeXtConfig:
    """CPU-sized net for 28x28 / 32x32 inputs (Fashion-MNIST, digits, CIFAR smoke runs).

    The paper's CIFAR-10 layout (10 branches, c3 5/10, c4 3/10) at about 1/70 of the compute:
    stride 2 from c2 on, one c2 block, two blocks in c3 and c4.
    """
    return CodedResNeXtConfig(
        num_classes=num_classes,
        stages=(
            StageConfig("c2", 1, 48, 2, 10, 10, stride=2, drop_prob=0.0),
            StageConfig("c3", 2, 96, 4, 10, 5, stride=2),
            StageConfig("c4", 2, 192, 8, 10, 3, stride=2),
        ),
        stem="cifar",
        stem_channels=16,
        coding_loss_weight=6.0,
        drop_prob=0.1,
    )


@register_preset
def coded_resnext_small(num_classes: int = 10) -> CodedResNeXtConfig:
    """A CPU-trainable 32x32 net with the paper's CIFAR-10 layout at a quarter of its width."""
    return CodedResNeXtConfig(
        num_classes=num_classes,
        stages=(
            StageConfig("c2", 1, 64, 3, 10, 10, stride=1, drop_prob=0.0),
            StageConfig("c3", 2, 128, 6, 10, 5, stride=2),
            StageConfig("c4", 2, 256, 11, 10, 3, stride=2),
        ),
        stem="cifar",
        stem_channels=32,
        coding_loss_weight=6.0,
        drop_prob=0.1,
    )


def list_models() -> list[str]:
    return sorted(_PRESETS)


def model_config(name: str, num_classes: int | None = None, **overrides: Any) -> CodedResNeXtConfig:
    """A preset's config with ``overrides`` (any ``CodedResNeXtConfig`` field) applied; its stages are sized
    to the schemes given (``schemes={"c4": GeneratedScheme(4, num_branches=12)}``: c4 with 12 branches)."""
    if name not in _PRESETS:
        raise ModelConfigError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    valid = set(CodedResNeXtConfig.field_names()) - {"num_classes", "stages"}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ModelConfigError(f"unknown model override(s) {unknown}; valid overrides: {', '.join(sorted(valid))}")
    base = _PRESETS[name]() if num_classes is None else _PRESETS[name](num_classes)
    return dataclasses.replace(base, **overrides)


def create_model(name: str, num_classes: int | None = None, **overrides: Any) -> CodedResNeXt:
    """Build a preset, e.g. ``create_model("coded_resnext29_10x11d", 10, control=True)``."""
    return CodedResNeXt(model_config(name, num_classes, **overrides))
