"""Resuming builds the model from the checkpoint's schemes, and refuses a config that now asks for another.

The codewords are non-persistent buffers: ``load_state_dict`` would load the weights of a model trained
with one code into a model built with another without complaint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import coded_resnext.orchestration.build as build
import coded_resnext.orchestration.sessions as sessions
import coded_resnext.orchestration.training as training
from coded_resnext.coding import generate_scheme
from coded_resnext.orchestration.config import load_config, smoke_test_config
from coded_resnext.orchestration.errors import UserError

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
GENERATED_C3 = "coding.c3={active: 4, min_distance: 4, seed: 0}"  # the config asks the generator for c3


def _cfg(*extra: str):
    return load_config(None, ["data.name=synthetic", GENERATED_C3, *extra])


def _state(**schemes) -> dict:
    return {"schemes": json.dumps({stage: scheme.to_dict() for stage, scheme in schemes.items()})}


def _built(cfg) -> dict:
    return build.build_model(cfg, 10, 1).schemes


def test_a_checkpoint_with_the_configs_schemes_resumes_with_exactly_those_codewords():
    cfg = _cfg()
    built = _built(cfg)
    schemes = build.resume_schemes(cfg, _state(**built), 10, 1)
    model = build.build_model(cfg, 10, 1, schemes)
    assert model.scheme_hashes() == {stage: s.content_hash for stage, s in built.items()}
    for info in model.coded_blocks:
        codewords = model.blocks[info.block_index].codewords.numpy()
        assert np.array_equal(codewords, built[info.stage].codewords)


def test_a_checkpoint_trained_with_another_scheme_is_a_one_line_error_naming_stage_and_both_hashes():
    cfg = _cfg()
    built = _built(cfg)
    other = generate_scheme(10, 10, 4, 4, seed=1)  # what another generator might have given back then
    assert other.content_hash != built["c3"].content_hash
    with pytest.raises(UserError) as err:
        build.resume_schemes(cfg, _state(c3=other, c4=built["c4"]), 10, 1)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("coding.c3: ")
    assert other.content_hash in message and built["c3"].content_hash in message


def test_a_checkpoint_of_an_uncoded_stage_does_not_resume_into_a_coded_one():
    cfg = _cfg()
    built = _built(cfg)
    with pytest.raises(
        UserError, match=f"coding.c4: the checkpoint was trained with scheme off .*{built['c4'].content_hash}"
    ):
        build.resume_schemes(cfg, _state(c3=built["c3"]), 10, 1)


def test_a_checkpoint_of_a_resized_stage_rebuilds_with_the_saved_branch_count(tmp_path: Path):
    """A scheme file with 12 branches resizes the 10-branch stage; rebuilding from the saved codewords
    alone (resume, ``model_from_checkpoint``) must resize it too."""
    scheme = generate_scheme(10, 12, 6, 4)
    scheme.save(tmp_path / "c3.json")
    cfg = load_config(None, ["data.name=synthetic", f"coding.c3={tmp_path / 'c3.json'}"])
    schemes = build.resume_schemes(cfg, _state(**_built(cfg)), 10, 1)
    assert build.build_model(cfg, 10, 1, schemes).schemes["c3"].num_branches == 12


@pytest.mark.slow
def test_resume_refuses_a_checkpoint_whose_generated_scheme_the_config_no_longer_gives(tmp_path, monkeypatch):
    """End to end: the first attempt's generator gave another c3 (as a time budget could, before the
    generator became deterministic); resuming with today's generator stops before anything is logged."""
    monkeypatch.chdir(tmp_path)
    cfg = smoke_test_config(
        load_config(
            None,
            [
                "data.name=synthetic",
                GENERATED_C3,
                "train.progress=none",
                "train.epochs=2",
                "tracking.log_model=false",
                f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
            ],
        )
    )
    then = generate_scheme(10, 10, 4, 4, seed=1)
    real_save = sessions.save_checkpoint

    def crash_after_first_checkpoint(directory, epoch, state):
        real_save(directory, epoch, state)
        raise KeyboardInterrupt

    import coded_resnext.coding.defaults as defaults

    with monkeypatch.context() as patch:
        patch.setattr(defaults, "generated_scheme", lambda *args: then)
        patch.setattr(sessions, "save_checkpoint", crash_after_first_checkpoint)
        with pytest.raises(KeyboardInterrupt):
            training.fit(cfg, checkpoint_root=tmp_path / "ckpt")
    now = defaults.generated_scheme(10, 10, 4, 4, 0)
    with pytest.raises(UserError, match=f"coding.c3: .*{then.content_hash}.*{now.content_hash}"):
        training.fit(cfg, resume=True, checkpoint_root=tmp_path / "ckpt")
