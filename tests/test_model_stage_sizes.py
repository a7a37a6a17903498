"""A stage takes the branch count of its schemes: the library sizes it (``CodedResNeXtConfig``), so
``model_config`` and ``create_model`` build what a named scheme, a scheme file or generator parameters
with ``num_branches`` ask for, each branch as wide as the preset's."""

from __future__ import annotations

import pytest
import torch

import coded_resnext as cr
from coded_resnext.coding.defaults import GeneratedScheme


def _stage(config: cr.CodedResNeXtConfig, name: str) -> cr.StageConfig:
    return next(stage for stage in config.stages if stage.name == name)


def test_a_named_scheme_with_another_branch_count_resizes_its_stage():
    preset = cr.model_config("coded_resnext_mini", 100)
    config = cr.model_config("coded_resnext_mini", 100, schemes={"c3": "paper:cifar100/8/20"})
    c3 = _stage(config, "c3")
    assert (c3.num_branches, c3.num_active) == (20, 8)
    assert c3.branch_width == _stage(preset, "c3").branch_width  # same width per branch
    assert _stage(config, "c4") == _stage(preset, "c4")
    model = cr.create_model("coded_resnext_mini", 100, schemes={"c3": "paper:cifar100/8/20"})
    assert [b.num_branches for b in model.coded_block_modules] == [20, 20, 10, 10]
    assert model.schemes["c3"].name == "paper:cifar100/8/20"
    assert model.config.stages == config.stages
    assert model.forward_with_aux(torch.randn(2, 3, 32, 32)).energies[0].shape == (2, 20)


def test_generator_parameters_with_num_branches_resize_the_stage():
    spec = GeneratedScheme(4, min_distance=4, seed=1, num_branches=12)
    model = cr.create_model("coded_resnext_mini", 10, schemes={"c4": spec})
    c4 = _stage(model.config, "c4")
    assert (c4.num_branches, c4.num_active) == (12, 4)
    scheme = model.schemes["c4"]
    assert (scheme.num_classes, scheme.num_branches, scheme.num_active) == (10, 12, 4)
    assert [b.num_branches for b in model.coded_block_modules] == [10, 10, 12, 12]
    # without num_branches the stage keeps its size, as before
    plain = cr.model_config("coded_resnext_mini", 10, schemes={"c4": GeneratedScheme(4, min_distance=4, seed=1)})
    assert (_stage(plain, "c4").num_branches, _stage(plain, "c4").num_active) == (10, 3)


def test_per_block_schemes_of_one_branch_count_keep_the_first_blocks_size():
    config = cr.model_config("coded_resnext_mini", 100, schemes={"c4": ("paper:cifar100/8/20", "paper:cifar100/4/20")})
    assert (_stage(config, "c4").num_branches, _stage(config, "c4").num_active) == (20, 8)
    model = cr.CodedResNeXt(config)
    assert [i.scheme.num_active for i in model.coded_blocks if i.stage == "c4"] == [8, 4]


def test_per_block_schemes_disagreeing_on_the_branch_count_are_a_one_line_error_naming_the_stage():
    schemes = {"c4": ("paper:cifar10/3/10", GeneratedScheme(4, num_branches=12))}
    with pytest.raises(cr.ModelConfigError) as err:
        cr.create_model("coded_resnext_mini", 10, schemes=schemes)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("schemes['c4']: the blocks of stage c4 must share one branch count")
    assert "[10, 12] branches" in message


@pytest.mark.parametrize(("active", "branches"), [(5, 5), (6, 4), (0, None)])
def test_impossible_generator_sizes_are_one_line_errors(active, branches):
    with pytest.raises(cr.CodingSchemeError) as err:
        GeneratedScheme(active, num_branches=branches)
    assert "\n" not in str(err.value) and "1 <= num_active < num_branches" in str(err.value)


def test_the_concat_width_check_counts_the_resized_branches():
    # with branch_merge="concat" every branch needs an output channel of its own: c2's 48 * 0.25 = 12
    # channels serve its preset 10 branches, not the 20 of a 20-branch scheme
    ok = cr.model_config("coded_resnext_mini", 100, branch_merge="concat", width_multiplier=0.25)
    assert _stage(ok, "c2").num_branches == 10
    with pytest.raises(cr.ModelConfigError, match="stage c2 has 12 output channels for 20 branches"):
        cr.model_config(
            "coded_resnext_mini",
            100,
            branch_merge="concat",
            width_multiplier=0.25,
            schemes={"c2": "paper:cifar100/8/20"},
        )
