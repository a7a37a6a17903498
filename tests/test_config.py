"""The run config: YAML + --set overrides, one-line errors naming the key, stable experiment hash."""

from pathlib import Path

import pytest

from coded_resnext.orchestration.config import ConfigError, load_config, smoke_test_config

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "search_spaces").glob("*_train.yaml")) + sorted((ROOT / "search_spaces").glob("*_paper.yaml"))


def _one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_configs_load_and_start_with_a_header_comment(path):
    cfg = load_config(path)
    assert cfg.train.epochs >= 1
    assert path.read_text().startswith("# ")
    assert "Hardware" in path.read_text()


def test_overrides_change_values_with_yaml_types():
    cfg = load_config(
        ROOT / "search_spaces/quickstart_train.yaml",
        ["loss.mu=3", "data.randaugment=[2, 5]", "seed=7", "model.control=true", "coding.c3=paper:cifar10/3/10"],
    )
    assert cfg.loss.mu == 3.0 and isinstance(cfg.loss.mu, float)
    assert cfg.data.randaugment == [2, 5] and cfg.seed == 7 and cfg.model.control is True
    assert cfg.coding.c3 == "paper:cifar10/3/10"


def test_generator_spec_for_a_stage():
    cfg = load_config(None, ["coding.c4={active: 3, min_distance: 4, seed: 2}"])
    assert (cfg.coding.c4.active, cfg.coding.c4.min_distance, cfg.coding.c4.seed) == (3, 4, 2)
    assert cfg.flat()["coding.c4"] == "generate:active=3,min_distance=4,seed=2"


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("loss.mux=3", "loss.mux: unknown key; valid keys in loss: mu, p_drop"),
        ("lossy.mu=3", "lossy: unknown key; valid keys: model, coding"),
        ("loss.mu=abc", "loss.mu: must be a number, got 'abc'"),
        ("loss.p_drop=1.5", "loss.p_drop: must be in [0, 1)"),
        ("train.epochs=0", "train.epochs: must be >= 1"),
        ("train.epochs=2.5", "train.epochs: must be an integer"),
        ("model.name=resnet", "model.name: unknown preset 'resnet'; choose one of"),
        ("data.name=mnist", "data.name: unknown dataset 'mnist'; choose one of"),
        ("train.device=tpu", "train.device: must be one of ['auto', 'cpu', 'cuda']"),
        ("eval.binary_fit_samples=2", "eval.binary_fit_samples: must be >= 10"),
        ("model.control=maybe", "model.control: must be true or false"),
        ("nonsense", "expected section.key=value"),
        ("optim.momentum=1.0", "optim.momentum: must be in [0, 1), got 1.0"),
        ("optim.momentum=-0.1", "optim.momentum: must be in [0, 1), got -0.1"),
        ("optim.lr_min=-0.001", "optim.lr_min: must be in [0, optim.lr], got -0.001"),
        ("optim.lr_min=0.2", "optim.lr_min: must be in [0, optim.lr], got 0.2"),  # above the default lr 0.1
        ("loss.label_smoothing=1.0", "loss.label_smoothing: must be in [0, 1), got 1.0"),
        ("loss.label_smoothing=-0.1", "loss.label_smoothing: must be in [0, 1), got -0.1"),
    ],
)
def test_bad_values_are_one_line_errors_naming_the_key(override, fragment):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert fragment in _one_line(err)


def test_range_limits_themselves_are_accepted():
    cfg = load_config(None, ["optim.momentum=0", "optim.lr_min=0.1", "optim.lr=0.1", "loss.label_smoothing=0"])
    assert (cfg.optim.momentum, cfg.optim.lr_min, cfg.loss.label_smoothing) == (0.0, 0.1, 0.0)
    assert load_config(None, ["optim.lr_min=0"]).optim.lr_min == 0.0


def test_bad_yaml_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  name: [unclosed\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert "malformed YAML at line" in _one_line(err)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(bad)
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")


def test_experiment_hash_is_stable_and_tracks_what_changes_results():
    a = load_config(ROOT / "search_spaces/quickstart_train.yaml")
    b = load_config(ROOT / "search_spaces/quickstart_train.yaml")
    assert a.experiment_hash == b.experiment_hash
    assert load_config(ROOT / "search_spaces/quickstart_train.yaml", ["seed=1"]).experiment_hash != a.experiment_hash
    # where results are tracked does not change them
    assert load_config(ROOT / "search_spaces/quickstart_train.yaml", ["tracking.experiment=x"]).experiment_hash == (
        a.experiment_hash
    )


def test_smoke_test_shrinks_everything():
    cfg = smoke_test_config(load_config(ROOT / "search_spaces/quickstart_train.yaml"))
    assert cfg.train.epochs <= 2 and cfg.data.limit_train <= 512 and cfg.eval.binary_classes <= 3
    assert cfg.eval.limit_val <= 256


def test_a_number_in_exponent_notation_is_a_number_where_a_number_is_expected(tmp_path):
    # PyYAML (YAML 1.1) reads 1e-4, without a dot, as a string; a float key takes it as the number it is
    path = tmp_path / "run.yaml"
    path.write_text("optim: {lr: 1e-2, lr_min: 5E-5}\n")
    cfg = load_config(path, ["optim.weight_decay=-0e-4", "optim.warmup_lr_init=+1e-3"])
    assert (cfg.optim.lr, cfg.optim.lr_min, cfg.optim.weight_decay, cfg.optim.warmup_lr_init) == (1e-2, 5e-5, 0.0, 1e-3)
    with pytest.raises(ConfigError) as err:
        load_config(None, ["optim.lr=1e-4x"])
    assert _one_line(err) == "optim.lr: must be a number, got '1e-4x'"
    with pytest.raises(ConfigError, match="must be an integer"):
        load_config(None, ["train.epochs=1e1"])  # an integer key stays strict


def test_keys_added_later_leave_the_hash_of_configs_written_before_them_at_their_defaults():
    """--resume finds a run's checkpoints by this hash: the quickstart's, as computed before the eval.binary_fit_*
    and eval.ood_negatives_per_positive keys existed, stays; a non-default value of each changes it."""
    path = ROOT / "search_spaces/quickstart_train.yaml"
    assert load_config(path).experiment_hash == "d51f3d97eede"
    for changed in (
        "eval.binary_fit_augmented=false",
        "eval.binary_fit_negatives_per_positive=null",
        "eval.binary_fit_draws=3",
        "eval.ood_negatives_per_positive=9",
    ):
        assert load_config(path, [changed]).experiment_hash != "d51f3d97eede", changed
