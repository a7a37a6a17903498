"""Checkpoints the library loads on its own: ``checkpoint_state`` gives the weights and the model config (every
scheme as codewords), ``load_checkpoint`` rebuilds the model from them without Ray, MLflow or a run config,
to the same outputs; a checkpoint of before (the run's config only) is refused in one line by the library and
still read by orchestration.

tests/data/checkpoint_before_model_config.pt was written by the code of commit 7c8e6cf, before checkpoints
carried the model config, as ``coded-resnext train`` writes one: ``build_model`` of the RunConfig
``data.name=synthetic model.name=coded_resnext_mini model.width_multiplier=0.125`` for 10 classes and 1
channel (after ``torch.manual_seed(0)``), four SGD steps of ``make_optimizer`` on random 16x1x28x28 batches
(so BatchNorm statistics and the zero-initialised BN gammas move), then eval mode, ``_state(model, opt,
scheduler, 0, "fixture-run", cfg, 28)`` and ``save_checkpoint``. Beside it,
checkpoint_before_model_config_logits.pt holds a fixed input (4x1x28x28, the next ``torch.randn``) and the
saved model's logits of it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import coded_resnext as cr
from coded_resnext.coding import CodingScheme, paper_scheme
from coded_resnext.coding.defaults import GeneratedScheme

DATA = Path(__file__).resolve().parent / "data"
BEFORE = DATA / "checkpoint_before_model_config.pt"
BEFORE_LOGITS = DATA / "checkpoint_before_model_config_logits.pt"
SMALL = {"width_multiplier": 0.125, "in_chans": 1}


def _trained(model: cr.CodedResNeXt, seed: int = 0) -> cr.CodedResNeXt:
    """A few SGD steps, so weights and BatchNorm statistics are not their initial values."""
    torch.manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for _ in range(2):
        x, y = torch.randn(8, model.config.in_chans, 28, 28), torch.randint(0, model.num_classes, (8,))
        loss = model.loss(model.forward_with_aux(x, targets=y), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _assert_same_model(rebuilt: cr.CodedResNeXt, model: cr.CodedResNeXt) -> None:
    assert not rebuilt.training
    assert rebuilt.block_schemes == model.block_schemes
    # the shapes as built (a stage's num_active may now say its scheme's: it only picks a scheme for a
    # block without one, and a saved config gives every block its scheme)
    assert [b.num_branches for b in rebuilt.blocks] == [b.num_branches for b in model.blocks]
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    x = torch.randn(3, model.config.in_chans, 28, 28)
    with torch.no_grad():
        out, expected = rebuilt.forward_with_aux(x), model.forward_with_aux(x)
    assert torch.equal(out.logits, expected.logits)
    assert all(torch.equal(a, b) for a, b in zip(out.energies, expected.energies, strict=True))


CASES = {
    "paper": {},  # the preset's published schemes, c3 paper:cifar10/5/10 and c4 paper:cifar10/3/10
    "generated": {"schemes": {"c4": GeneratedScheme(4, min_distance=4, seed=1)}},
    "per-block": {"schemes": {"c4": ("paper:cifar10/3/10", GeneratedScheme(5, min_distance=4)), "c3": "off"}},
    "resized": {"schemes": {"c3": GeneratedScheme(4, min_distance=4, num_branches=12)}},
    "control": {"control": True},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_state_round_trips_to_identical_outputs(case):
    model = _trained(cr.create_model("coded_resnext_mini", 10, **SMALL, **CASES[case]))
    state = cr.checkpoint_state(model)
    assert set(state) == {"model", "model_config"}
    json.dumps(state["model_config"])  # plain data
    _assert_same_model(cr.load_checkpoint(state), model)


def test_a_per_block_state_stores_each_blocks_codewords_and_its_plain_blocks():
    model = cr.create_model("coded_resnext_mini", 10, **SMALL, **CASES["per-block"])
    schemes = cr.checkpoint_state(model)["model_config"]["schemes"]
    assert schemes["c3"] == "off"  # a coded stage made plain stays plain
    first, second = schemes["c4"]
    assert first["name"] == "paper:cifar10/3/10" and second["num_active"] == 5
    assert CodingScheme.from_dict(second) == model.block_schemes["c4"][1]
    control = cr.checkpoint_state(cr.create_model("coded_resnext_mini", 10, **SMALL, control=True))
    assert control["model_config"]["control"] is True and not cr.load_checkpoint(control).coded_blocks


def test_a_checkpoint_keeps_its_codes_when_the_scheme_file_moves(tmp_path):
    path = tmp_path / "c4.json"
    words = np.asarray(paper_scheme("paper:cifar10/3/10").codewords)[::-1].copy()  # classes in reverse
    CodingScheme(words, name="reversed").save(path)
    model = _trained(cr.create_model("coded_resnext_mini", 10, **SMALL, schemes={"c4": str(path)}))
    file = tmp_path / "model.pt"
    torch.save(cr.checkpoint_state(model), file)
    path.unlink()
    rebuilt = cr.load_checkpoint(file)
    assert rebuilt.schemes["c4"] == CodingScheme(words)
    _assert_same_model(rebuilt, model)


def test_the_generator_changing_does_not_change_a_loaded_model(monkeypatch):
    import coded_resnext.coding.defaults as defaults

    model = cr.create_model("coded_resnext_mini", 10, **SMALL, **CASES["generated"])
    state = cr.checkpoint_state(model)
    monkeypatch.setattr(defaults, "generated_scheme", lambda *args: pytest.fail("the generator ran"))
    assert cr.load_checkpoint(state).schemes["c4"] == model.schemes["c4"]


def test_a_state_saved_by_orchestration_loads_from_its_file(tmp_path):
    """The orchestration's checksummed envelope around a state that carries the library's entries."""
    from coded_resnext.orchestration.checkpoint import save_checkpoint

    model = _trained(cr.create_model("coded_resnext_mini", 10, **SMALL))
    written = save_checkpoint(tmp_path, 3, {"epoch": 3, "config": "model: {}", **cr.checkpoint_state(model)})
    _assert_same_model(cr.load_checkpoint(written), model)


def test_a_config_round_trips_through_plain_data():
    config = cr.model_config("coded_resnext_mini", 100, schemes={"c3": "paper:cifar100/8/20"}, label_smoothing=0.1)
    data = json.loads(json.dumps(config.to_dict()))
    again = cr.CodedResNeXtConfig.from_dict(data)
    assert again == config.resolved()
    assert again.stages == config.stages and again.stages[1].num_branches == 20
    assert again.to_dict() == data


def test_the_library_refuses_a_checkpoint_written_before_it_carried_the_model_config():
    with pytest.raises(cr.ModelCheckpointError) as err:
        cr.load_checkpoint(BEFORE)
    message = str(err.value)
    assert "\n" not in message and isinstance(err.value, ValueError)
    assert message.startswith(f"{BEFORE}: written before checkpoints carried the model config")
    assert "`coded-resnext evaluate` and `coded-resnext extract` still read it" in message


def test_orchestration_still_loads_a_checkpoint_written_before_to_its_saved_outputs():
    from coded_resnext.orchestration.build import model_from_checkpoint
    from coded_resnext.orchestration.checkpoint import load_checkpoint

    model = model_from_checkpoint(load_checkpoint(BEFORE))
    saved = torch.load(BEFORE_LOGITS, weights_only=True)
    with torch.no_grad():
        torch.testing.assert_close(model(saved["input"]), saved["logits"], rtol=1e-5, atol=1e-6)
    assert {s.name for s in model.schemes.values()} == {"paper:cifar10/5/10", "paper:cifar10/3/10"}


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ({"weights": {}}, "not a Coded ResNeXt checkpoint (no 'model' weights)"),
        ({"model": {}, "model_config": {"num_classes": 10}}, "model_config: model config: missing ['stages']"),
        ({"model": {}, "model_config": {"num_classes": 10, "stages": [], "colour": 1}}, "unknown model config key"),
    ],
)
def test_states_that_are_not_library_checkpoints_are_one_line_errors(content, fragment):
    with pytest.raises(cr.ModelCheckpointError) as err:
        cr.load_checkpoint(content)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_weights_that_do_not_fit_the_config_are_a_one_line_error():
    state = cr.checkpoint_state(cr.create_model("coded_resnext_mini", 10, **SMALL))
    other = cr.create_model("coded_resnext_mini", 10, width_multiplier=0.25, in_chans=1)
    with pytest.raises(cr.ModelCheckpointError) as err:
        cr.load_checkpoint({**state, "model": other.state_dict()})
    assert "weight stem.0.weight is (4, 1, 3, 3) but the model its model_config builds has (2, 1, 3, 3)" in str(
        err.value
    )
    bad = dataclasses.replace(cr.model_config("coded_resnext_mini", 10), control=True)
    with pytest.raises(cr.ModelCheckpointError, match="unexpected"):
        cr.load_checkpoint(
            {**state, "model_config": bad.to_dict(), "model": {**state["model"], "extra": torch.ones(1)}}
        )


def test_files_that_are_not_checkpoints_are_one_line_errors(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a zip file at all")
    for path, fragment in (
        (tmp_path / "missing.pt", "no such file"),
        (tmp_path, "is a directory"),
        (garbage, "not a checkpoint torch.load can read with weights_only=True"),
    ):
        with pytest.raises(cr.ModelCheckpointError) as err:
            cr.load_checkpoint(path)
        assert fragment in str(err.value) and "\n" not in str(err.value)
