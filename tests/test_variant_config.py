"""The model variants and the paper-faithful choices from the run config: each key reaches the model or the
data pipeline, per-block scheme runs go through the config, search spaces and checkpoints, and bad values
are one-line errors naming the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from coded_resnext.layers.concat_expand import ConcatExpand
from coded_resnext.orchestration.build import build_model, model_from_checkpoint, saved_schemes
from coded_resnext.orchestration.checkpoint import training_state
from coded_resnext.orchestration.config import ConfigError, load_config
from coded_resnext.orchestration.errors import UserError
from coded_resnext.orchestration.search_space import SearchSpaceError, load_search_space

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
RUNS = "[{scheme: paper:cifar10/3/10, blocks: 1}, {scheme: {active: 5, min_distance: 4}, blocks: 1}]"


def _cfg(*overrides: str):
    return load_config(None, ["data.name=synthetic", *overrides])


def test_model_keys_reach_the_model():
    model = build_model(_cfg("model.branch_merge=concat", "model.mask_grads=true"), 10, 1)
    assert isinstance(model.blocks[-1].conv_expand, ConcatExpand) and model.config.mask_grads
    dense = build_model(_cfg("model.expand_init=fan_out_dense"), 10, 1)
    assert dense.config.expand_init == "fan_out_dense" and build_model(_cfg(), 10, 1).config.expand_init == (
        "fan_out_grouped"
    )


def test_scheme_runs_build_a_stage_whose_scheme_changes_inside_it():
    cfg = _cfg(f"coding.c4={RUNS}")
    model = build_model(cfg, 10, 1)
    assert [i.scheme.num_active for i in model.coded_blocks if i.stage == "c4"] == [3, 5]
    assert cfg.flat()["coding.c4"] == "paper:cifar10/3/10 x1; generate:active=5,min_distance=4,seed=0 x1"
    off_first = build_model(_cfg("coding.c4=[{scheme: off, blocks: 1}, {scheme: null, blocks: 1}]"), 10, 1)
    assert [i.stage for i in off_first.coded_blocks] == ["c3", "c3", "c4"]


def test_a_checkpoint_rebuilds_a_model_with_per_block_schemes():
    cfg = _cfg(f"coding.c4={RUNS}", "model.branch_merge=concat")
    model = build_model(cfg, 10, 1).eval()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    state = training_state(model, opt, scheduler, 0, "run", cfg, 28)
    saved = json.loads(state["schemes"])
    assert isinstance(saved["c3"], dict) and isinstance(saved["c4"], list) and len(saved["c4"]) == 2
    rebuilt = model_from_checkpoint(state)
    assert rebuilt.block_schemes == model.block_schemes
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(rebuilt(x), model(x))
    assert saved_schemes(build_model(_cfg(), 10, 1)).keys() == {"c3", "c4"}  # uniform stages: as before


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("coding.c4=[{scheme: paper:cifar10/3/10, blocks: 3}]", "coding.c4: the runs cover 3 blocks but stage c4"),
        ("coding.c4=[{scheme: paper:cifar10/3/10, blocks: 0}]", "coding.c4[0].blocks: must be >= 1, got 0"),
        ("coding.c3={active: 0}", "coding.c3.active: must be >= 1, got 0"),
        ("model.branch_merge=mean", "model.branch_merge: must be one of ['sum', 'concat', 'concat_coded']"),
        ("model.expand_init=xavier", "model.expand_init: must be one of"),
        ("data.randaugment=[3, 11]", "data.randaugment: magnitude M must be in 0..10"),
        ("data.randaugment=[-1, 4]", "data.randaugment: must be [N, M] with N, M >= 0"),
        ("data.randaugment_order=middle", "data.randaugment_order: must be one of"),
        ("optim.schedule_step=step", "optim.schedule_step: must be one of ['epoch', 'batch']"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_key(override, message):
    with pytest.raises((ConfigError, UserError)) as exc:
        build_model(_cfg(override), 10, 1)
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_a_search_space_chooses_among_scheme_runs_and_validation_builds_them(tmp_path):
    def space(choices) -> Path:
        doc = {
            "base": str(ROOT / "search_spaces" / "quickstart_train.yaml"),
            "config": {"data": {"name": "synthetic", "ood": None}, "model": {"branch_merge": "concat"}},
            "search": {"coding.c4": {"choice": choices}, "model.mask_grads": {"choice": [False, True]}},
            "tune": {"name": "runs"},
        }
        path = tmp_path / "space.yaml"
        path.write_text(yaml.safe_dump(doc))
        return path

    good = yaml.safe_load(RUNS)
    loaded = load_search_space(space([good, "paper:cifar10/3/10"]))
    trial = loaded.trial_config({"coding.c4": loaded.param_space()["coding.c4"].categories[0]})
    assert [run.blocks for run in trial.coding.c4] == [1, 1]
    with pytest.raises(SearchSpaceError, match="the runs cover 3 blocks"):
        load_search_space(space([good, [{"scheme": "paper:cifar10/3/10", "blocks": 3}]]))
