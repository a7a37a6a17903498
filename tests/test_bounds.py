"""Every validated numeric bound, tested at both of its ends.

Bounds on config fields are declared on the fields (``coded_resnext.validation.bounded``), and the numeric
command-line options' in ``OPTION_BOUNDS``; the walk below takes each one from there, so a bound added
later is tested without a new line here. At each finite end: the end itself is accepted exactly when the
interval is closed there, and a value just past it is refused, just inside accepted. Bounds that relate
two fields (``lr_min <= lr``) are not declarable that way and are tested one by one at the end.
"""

from __future__ import annotations

import dataclasses
import re
import typing

import pytest

from coded_resnext.evaluation.settings import EvalSettings
from coded_resnext.models.config import CodedResNeXtConfig, ModelConfigError, StageConfig
from coded_resnext.models.presets import model_config
from coded_resnext.orchestration import config as run_config
from coded_resnext.orchestration import search_space
from coded_resnext.orchestration.commands.options import OPTION_BOUNDS, check_option
from coded_resnext.orchestration.config import ConfigError, load_config
from coded_resnext.orchestration.errors import UserError
from coded_resnext.orchestration.search_space import TuneSection
from coded_resnext.validation import Bound, bounded, field_bounds

pytestmark = pytest.mark.unit

# Every dataclass whose fields carry bounds, with a valid instance to vary one field of.
CONFIGS = {
    "model": run_config.ModelSection(),
    "coding.c3": run_config.SchemeGenerator(active=4),
    "coding.c3[0]": run_config.SchemeRun(scheme="off"),
    "loss": run_config.LossSection(),
    # lr_min and warmup_lr_init 0 so that lr can go down to its own bound; a fractional warm-up needs batch steps
    "optim": run_config.OptimSection(lr_min=0, warmup_lr_init=0, warmup_step="batch"),
    "data": run_config.DataSection(),
    "train": run_config.TrainSection(),
    "eval": EvalSettings(),
    "tracking": run_config.TrackingSection(),
    "tune": TuneSection(),
    "stage": StageConfig("c3", depth=2, out_channels=64, branch_width=4, num_branches=10, num_active=1),
    "model config": model_config("coded_resnext_mini"),
}
REFUSED = (ConfigError, ModelConfigError, ValueError)


def test_every_bounded_config_class_is_walked():
    """A dataclass declaring a bound that the walk does not vary would go untested: list it in CONFIGS."""
    walked = {type(c) for c in CONFIGS.values()}
    declaring = {
        cls
        for module in (run_config, search_space)
        for cls in vars(module).values()
        if isinstance(cls, type) and dataclasses.is_dataclass(cls) and field_bounds(cls)
    }
    declaring |= {EvalSettings, StageConfig, CodedResNeXtConfig}
    assert declaring <= walked, f"not walked: {declaring - walked}"


def _is_int(cls: type, name: str) -> bool:
    hint = typing.get_type_hints(cls)[name]
    return int in typing.get_args(hint) or hint is int


def _cases(bound: Bound, integer: bool) -> list[tuple[float, bool]]:
    """(value, accepted) at and around each finite end."""
    step = 1 if integer else 1e-6
    cases = []
    if bound.low is not None:
        cases += [(bound.low, not bound.low_open), (bound.low - step, False), (bound.low + step, True)]
    if bound.high is not None:
        cases += [(bound.high, not bound.high_open), (bound.high + step, False), (bound.high - step, True)]
    return cases


CONFIG_BOUNDS = [
    pytest.param(where, name, bound, id=f"{where}.{name}")
    for where, instance in CONFIGS.items()
    for name, bound in field_bounds(instance).items()
]


def test_the_walk_has_bounds_to_walk():
    assert len(CONFIG_BOUNDS) >= 45 and len(OPTION_BOUNDS) >= 9


@pytest.mark.parametrize(("where", "name", "bound"), CONFIG_BOUNDS)
def test_a_config_bound_holds_at_both_ends(where, name, bound):
    base = CONFIGS[where]
    for value, accepted in _cases(bound, _is_int(type(base), name)):
        if accepted:
            assert getattr(dataclasses.replace(base, **{name: value}), name) == value
        else:
            with pytest.raises(REFUSED, match=rf"{re.escape(name)}: {re.escape(bound.describe())}, got"):
                dataclasses.replace(base, **{name: value})
    if bound.nullable:
        assert getattr(dataclasses.replace(base, **{name: None}), name) is None
    else:
        with pytest.raises(REFUSED, match=rf"{re.escape(name)}: .*got None"):
            dataclasses.replace(base, **{name: None})


@pytest.mark.parametrize("option", sorted(OPTION_BOUNDS))
def test_an_option_bound_holds_at_both_ends(option):
    bound = OPTION_BOUNDS[option]
    integer = bound.high is None  # the count options; the two shares (--exit-rate, --at-accuracy) are in (0, 1)
    for value, accepted in _cases(bound, integer):
        if accepted:
            assert check_option(option, value) == value
        else:
            with pytest.raises(UserError, match=rf"^{re.escape(option)} {value}: {re.escape(bound.describe())}"):
                check_option(option, value)
    assert check_option(option, None) is None  # not given


def test_bounded_refuses_two_low_or_two_high_ends():
    with pytest.raises(TypeError):
        bounded(1, ge=0, gt=0)
    with pytest.raises(TypeError):
        bounded(1, le=2, lt=2)


# ---- bounds relating two fields ------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["lr_min", "warmup_lr_init"])
def test_a_rate_bounded_by_lr_holds_at_zero_and_at_lr(key):
    for value, accepted in ((0.0, True), (-1e-9, False), (0.1, True), (0.1 + 1e-9, False)):
        overrides = ["optim.lr=0.1", f"optim.{key}={value}"]
        if accepted:
            assert getattr(load_config(None, overrides).optim, key) == value
        else:
            with pytest.raises(ConfigError, match=rf"optim\.{key}: must be in \[0, optim\.lr\]"):
                load_config(None, overrides)


def test_generator_branches_must_exceed_active():
    assert run_config.SchemeGenerator(active=4, branches=5).branches == 5
    with pytest.raises(ValueError, match=r"branches: must be > active \(4\), got 4"):
        run_config.SchemeGenerator(active=4, branches=4)


def test_a_stage_has_at_most_as_many_active_branches_as_branches():
    stage = CONFIGS["stage"]
    assert dataclasses.replace(stage, num_active=10).coded is False and dataclasses.replace(stage, num_active=9).coded
    with pytest.raises(ModelConfigError, match=r"num_active \(11\) must be <= num_branches \(10\)"):
        dataclasses.replace(stage, num_active=11)


@pytest.mark.parametrize(
    ("value", "accepted"), [([0, 0], True), ([-1, 0], False), ([2, 10], True), ([2, 11], False), ([2, -1], False)]
)
def test_randaugment_n_and_m_hold_at_both_ends(value, accepted):
    if accepted:
        assert run_config.DataSection(randaugment=value).randaugment == value
    else:
        with pytest.raises(ConfigError, match=r"data\.randaugment"):
            run_config.DataSection(randaugment=value)


@pytest.mark.parametrize(("workers", "accepted"), [(1, True), (4, True), (3, False)])
def test_the_global_batch_splits_evenly_over_the_workers(workers, accepted):
    overrides = ["optim.batch_size=128", f"train.num_workers={workers}"]
    if accepted:
        assert load_config(None, overrides).train.num_workers == workers
    else:
        with pytest.raises(ConfigError, match=r"must split evenly over train\.num_workers=3"):
            load_config(None, overrides)
