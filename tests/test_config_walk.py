"""Every key of the run config does what it says.

The walk lists every field of every section of ``RunConfig``. Each one has a probe: a new value, and
what the code builds from the config (the model, the optimizer, the data, the loaders, the evaluation
suite's output, the Ray resources, the MLflow run) where that value must show. The test changes one
key at a time and requires the probe's observation to change, so a key that is validated, hashed and
logged but never used fails here. A key may instead be listed in ``INERT`` with the reason it changes
nothing observable; a field with neither fails the test, so a new key cannot be added silently.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from coded_resnext.orchestration.config import RunConfig, config_from_dict, load_config
from tests.conftest import randomize_batchnorm

BASE = ["data.name=synthetic", "data.ood=null", "train.progress=none"]


def _cfg(*overrides: str) -> RunConfig:
    return load_config(None, [*BASE, *overrides])


def _with(cfg: RunConfig, key: str, value: Any) -> RunConfig:
    data = cfg.to_dict()
    node = data
    *path, last = key.split(".")
    for part in path:
        node = node[part]
    node[last] = value
    return config_from_dict(data)


# ---- observers: what the code builds from a config ---------------------------------------------------
def _model(cfg: RunConfig):
    """The model as ``train_loop`` builds it: under the run's seed."""
    from coded_resnext.orchestration.build import build_model, seed_everything

    seed_everything(cfg.seed)
    return build_model(cfg, 10, 1)


def _model_shape(cfg: RunConfig) -> tuple:
    model = _model(cfg)
    return (
        sum(p.numel() for p in model.parameters()),
        len(model.coded_blocks),
        tuple(sorted(model.scheme_hashes().items())),
        tuple(getattr(b, "materialize", None) for b in model.blocks),
    )


def _scheme_of(stage: str, preset: str = "coded_resnext_mini") -> Callable[[RunConfig], Any]:
    def observe(cfg: RunConfig) -> Any:
        from coded_resnext.orchestration.build import build_model

        cfg = _with(cfg, "model.name", preset)
        with torch.device("meta"):
            return build_model(cfg, 10, 3).scheme_hashes().get(stage)

    return observe


def _loss(cfg: RunConfig) -> tuple[float, float, float]:
    """The three terms of Eq. 6 on a fixed batch, in training mode (DropSubNNs drawn from a fixed seed).
    The BatchNorm gammas are randomized: zero-initialized ones would hide what the branches do."""
    model = _model(cfg).train()
    randomize_batchnorm(model)
    torch.manual_seed(1)
    x, y = torch.randn(8, 1, 28, 28), torch.arange(8) % 10
    parts = model.loss_parts(model.forward_with_aux(x), y)
    return round(parts.total.item(), 6), round(parts.classification.item(), 6), round(parts.coding.item(), 6)


def _weights_and_gradients(cfg: RunConfig) -> tuple:
    """The first coded block's expand-weight std at init, and the gradient Eq. 6 sends to its reduce conv."""
    model = _model(cfg).train()
    block = model.coded_block_modules[0]
    init_std = round(block.conv_expand.weight.std().item(), 6)
    randomize_batchnorm(model)
    torch.manual_seed(1)
    x, y = torch.randn(8, 1, 28, 28), torch.arange(8) % 10
    model.loss(model.forward_with_aux(x, targets=y), y).backward()  # as TrainStep calls it
    return init_std, round(block.conv_reduce.weight.grad.abs().sum().item(), 5)


def _optimizer(cfg: RunConfig) -> tuple:
    """The optimizer's settings and the learning rates of the first, second and last of 100 steps."""
    from coded_resnext.orchestration.optimizer import make_optimizer

    opt, scheduler = make_optimizer(_model(cfg), cfg, steps_per_epoch=10)
    group = dict(opt.param_groups[0])
    rates = []
    for _ in range(100):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    settings = tuple(group[k] for k in ("momentum", "nesterov", "weight_decay"))
    groups = tuple((len(g["params"]), g["weight_decay"]) for g in opt.param_groups)
    return settings, groups, round(rates[0], 8), round(rates[1], 8), round(rates[-1], 8)


def _bundle(cfg: RunConfig) -> tuple:
    from coded_resnext.datasets import build_dataset
    from coded_resnext.orchestration.build import data_spec

    bundle = build_dataset(data_spec(cfg))
    views = tuple(
        None if getattr(bundle, role) is None else tuple(getattr(bundle, role).indices.tolist())
        for role in ("train", "val", "test")
    )
    transforms = tuple(type(t).__name__ for t in bundle.train.transform.transforms)
    return bundle.num_classes, bundle.image_size, views, transforms


def _data_error(cfg: RunConfig) -> str:
    """The outcome of building the data: the sizes, or the error's first words."""
    from coded_resnext.datasets import DataError, build_dataset
    from coded_resnext.orchestration.build import data_spec

    try:
        return str(build_dataset(data_spec(cfg)).sizes())
    except DataError as err:
        return str(err).split(";")[0].split(":")[0]


def _ood(cfg: RunConfig) -> Any:
    from coded_resnext.datasets import build_dataset
    from coded_resnext.orchestration.build import data_spec, suite_data

    data = suite_data(build_dataset(data_spec(cfg)), cfg, test=False)
    return None if data.ood is None else len(data.ood)


def _loader(cfg: RunConfig) -> tuple:
    from coded_resnext.datasets import build_dataset
    from coded_resnext.orchestration.build import data_spec, train_loader

    loader = train_loader(build_dataset(data_spec(cfg)), cfg, epoch=0)
    return loader.batch_size, loader.num_workers, loader.prefetch_factor


def _train_step(cfg: RunConfig) -> tuple:
    """What ``train_loop`` sets up around its train step, as it does (``orchestration.acceleration``): the
    loss of one step under the resolved precision, whether the step is compiled, how many BatchNorms are
    synchronized over ``train.num_workers`` ranks, and whether deterministic algorithms are on (restored after)."""
    from coded_resnext.layers.sync_batchnorm import SyncBatchNorm2d
    from coded_resnext.orchestration import acceleration
    from coded_resnext.orchestration.training import TrainStep

    device = torch.device("cpu")
    precision = acceleration.resolve_precision(cfg.train.precision, device)
    model = acceleration.sync_batchnorm(_model(cfg), cfg.train.sync_batchnorm, cfg.train.num_workers)
    synced = sum(isinstance(m, SyncBatchNorm2d) for m in model.modules())
    step = acceleration.compile_step(TrainStep(model), cfg.train.compile)
    torch.manual_seed(1)
    x, y = torch.randn(8, 1, 28, 28), torch.arange(8) % 10
    with precision.autocast():
        loss = round(TrainStep(model)(x, y)["total"].item(), 6)
    was = torch.are_deterministic_algorithms_enabled()
    try:
        acceleration.set_determinism(cfg.train.deterministic, device)
        deterministic = torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(was)
    return loss, type(step).__name__, synced, deterministic


def _resources(cfg: RunConfig) -> tuple:
    from coded_resnext.orchestration.lineage import Lineage
    from coded_resnext.orchestration.ray_train import make_trainer
    from coded_resnext.orchestration.trial import trial_resources

    trainer = make_trainer(cfg, Lineage(), storage_path="/nonexistent", name="probe")
    scaling = trainer.scaling_config
    resources = tuple(sorted(trial_resources(cfg).items()))
    return (
        resources,
        scaling.num_workers,
        tuple(sorted(scaling.resources_per_worker.items())),
        (trainer.run_config.failure_config.max_failures),
    )


def _device(cfg: RunConfig) -> str:
    from coded_resnext.orchestration.build import resolve_device
    from coded_resnext.orchestration.errors import UserError

    try:
        return str(resolve_device(cfg.train.device))
    except UserError as err:
        return f"refused: {err}"


def _schedule(cfg: RunConfig) -> tuple:
    """Over a 6-epoch run: after which epochs a checkpoint is written and the whole suite runs."""
    from coded_resnext.orchestration.training import checkpoint_due, suite_due

    cfg = _with(cfg, "train.epochs", 6)
    return tuple(checkpoint_due(cfg, e) for e in range(6)), tuple(suite_due(cfg, e) for e in range(6))


def _progress(cfg: RunConfig) -> tuple:
    from coded_resnext.orchestration.training import Progress

    progress = Progress(cfg.train.progress, cfg.train.epochs)
    return progress.bar_mode, progress.quiet


def _system_metrics(cfg: RunConfig) -> tuple | None:
    """What ``train_loop`` asks of a one-process run's tracker: sampling, and how often (None: no sampling)."""
    from coded_resnext.orchestration.sessions import LocalSession
    from coded_resnext.orchestration.tracking import start_on_every_rank

    class Recorder:
        run_id, uri, started = "run", "sqlite:///unused.db", None

        def start_system_metrics(self, interval: float, node_id: str | None = None) -> None:
            self.started = (interval, node_id)

    tracker = Recorder()
    start_on_every_rank(cfg.tracking, LocalSession(Path("unused"), False, 1), tracker, tracker.uri)
    return tracker.started


SUITE_BASE = [
    "eval.binary_classes=3",
    "eval.binary_fit_samples=30",
    "eval.removal_samples=10",
    "eval.invariance_samples=4",
    "eval.early_exit_thresholds=4",
    "eval.limit_val=40",
    "eval.negatives_per_positive=2",
    "eval.removal_block=-1",
]


def _evaluation(cfg: RunConfig) -> tuple:
    """What the evaluation suite reports for a fixed small model on the synthetic data (16x16 images)."""
    from coded_resnext.datasets import build_dataset
    from coded_resnext.orchestration.build import data_spec
    from coded_resnext.orchestration.training import run_evaluation

    cfg = _with(cfg, "data.image_size", 16)
    bundle = build_dataset(data_spec(cfg))
    model = _model(cfg).eval()
    result = run_evaluation(model, bundle, cfg, torch.device("cpu"), test=False)
    binary = result.tables["binary_classifiers"]
    return (
        tuple(r["class"] for r in binary),
        sum(r["fit_positives"] for r in binary),
        sum(r["fit_negatives"] for r in binary),
        sum(r.get("ood_negatives", 0) for r in binary),
        tuple(round(r["threshold"], 5) for r in binary),
        "refit_f1" in binary[0],
        sum(r["negatives"] for r in binary),
        len(result.tables["early_exit_curve"]),
        tuple(sorted({r["block"] for r in result.tables["removal_curve"]})),
        result.tables["removal_curve"][0]["samples"],
        result.tables.get("invariance", [{}])[0].get("samples"),
        result.tables["decode_accuracy"][0]["samples"],
    )


# ---- the walk ------------------------------------------------------------------------------------------
Probe = tuple[Any, Callable[[RunConfig], Any], list[str]]  # (new value, observer, base overrides)

PROBES: dict[str, Probe] = {
    "model.name": ("coded_resnext_small", _model_shape, []),
    "model.width_multiplier": (1.5, _model_shape, []),
    "model.control": (True, _model_shape, []),
    "model.energy_impl": ("materialized", _model_shape, []),
    "model.branch_merge": ("concat", _model_shape, []),
    "model.mask_grads": (True, _weights_and_gradients, []),
    "model.expand_init": ("fan_out_dense", _weights_and_gradients, []),
    "coding.c2": ({"active": 5}, _scheme_of("c2"), []),
    "coding.c3": ({"active": 4, "min_distance": 4}, _scheme_of("c3"), []),
    "coding.c4": ("off", _scheme_of("c4"), []),
    "coding.c5": ({"active": 4}, _scheme_of("c5", "coded_resnext50_32x4d"), []),
    "loss.mu": (1.0, _loss, []),  # null (the default) is the preset's 6
    "loss.p_drop": (0.5, _loss, []),
    "loss.power": (2.0, _loss, []),
    "loss.threshold": (0.5, _loss, []),
    "loss.label_smoothing": (0.2, _loss, []),
    "optim.lr": (0.05, _optimizer, []),
    "optim.lr_min": (0.01, _optimizer, []),
    "optim.momentum": (0.5, _optimizer, []),
    "optim.nesterov": (False, _optimizer, []),
    "optim.weight_decay": (0.0, _optimizer, []),
    "optim.warmup_epochs": (1.0, _optimizer, []),
    "optim.batch_size": (64, _loader, []),
    "optim.schedule_step": ("batch", _optimizer, []),
    "optim.warmup_step": ("batch", _optimizer, ["optim.warmup_epochs=1"]),
    "optim.warmup_lr_init": (0.01, _optimizer, ["optim.warmup_epochs=1"]),
    "optim.decay_norm_and_bias": (False, _optimizer, []),
    "data.name": ("digits", _bundle, []),
    "data.root": ("{tmp}/typo", _data_error, ["data.name=fashion-mnist"]),
    "data.download": (True, _data_error, ["data.name=cifar10", "data.root={tmp}/cifar"]),
    "data.val_fraction": (0.2, _bundle, []),
    "data.split_seed": (1, _bundle, []),
    "data.augment": (False, _bundle, []),
    "data.randaugment": ([2, 5], _bundle, []),
    "data.randaugment_order": ("before_crop", _bundle, ["data.randaugment=[2, 5]"]),
    "data.image_size": (20, _bundle, []),
    "data.limit_train": (100, _bundle, []),
    "data.limit_val": (50, _bundle, []),
    "data.limit_test": (50, _bundle, []),
    "data.ood": ("digits", _ood, []),
    "train.epochs": (5, _optimizer, []),
    "train.num_workers": (2, _resources, []),
    "train.cpus_per_worker": (2.0, _resources, []),
    "train.gpus_per_worker": (0.5, _resources, []),
    "train.max_failures": (3, _resources, []),
    "train.loader_workers": (2, _loader, []),
    "train.prefetch_factor": (2, _loader, ["train.loader_workers=1"]),
    "train.precision": ("bf16", _train_step, []),
    "train.compile": (True, _train_step, []),
    "train.sync_batchnorm": (True, _train_step, ["train.num_workers=2"]),
    "train.deterministic": (True, _train_step, []),
    "train.device": ("cuda", _device, []),
    "train.checkpoint_every": (2, _schedule, []),
    "train.progress": ("line", _progress, []),
    "eval.every": (2, _schedule, []),
    "eval.binary_classes": (2, _evaluation, SUITE_BASE),
    "eval.binary_fit_samples": (20, _evaluation, SUITE_BASE),
    "eval.binary_refit": (False, _evaluation, SUITE_BASE),
    "eval.binary_fit_augmented": (False, _evaluation, SUITE_BASE),
    "eval.binary_fit_negatives_per_positive": (2, _evaluation, SUITE_BASE),
    # 9 per positive is all 27 negatives of 30 fit samples over 10 classes: draws need fewer than that
    "eval.binary_fit_draws": (3, _evaluation, [*SUITE_BASE, "eval.binary_fit_negatives_per_positive=2"]),
    "eval.negatives_per_positive": (1, _evaluation, SUITE_BASE),
    "eval.ood_negatives_per_positive": (2, _evaluation, [*SUITE_BASE, "data.ood=digits"]),
    "eval.early_exit_thresholds": (3, _evaluation, SUITE_BASE),
    "eval.removal_block": (0, _evaluation, SUITE_BASE),
    "eval.removal_samples": (6, _evaluation, SUITE_BASE),
    "eval.invariance_samples": (2, _evaluation, SUITE_BASE),
    "eval.limit_val": (30, _evaluation, SUITE_BASE),
    "tracking.system_metrics": (False, _system_metrics, []),
    "tracking.system_metrics_interval": (2.5, _system_metrics, []),
    "seed": (1, _loss, []),  # the initial weights are drawn from it (build_model runs under the seed's stream)
}
# tracking.*: one small end-to-end run shows all four (``test_tracking_keys_reach_the_mlflow_run``)
END_TO_END = {"tracking.uri", "tracking.experiment", "tracking.run_name", "tracking.log_model"}
# Keys that change nothing a probe could observe, each with the reason. (Empty: every key does something.)
INERT: dict[str, str] = {}


def _all_keys() -> list[str]:
    """``section.key`` for every field of every section, and the top-level keys (``seed``)."""
    defaults, keys = RunConfig(), []
    for field in dataclasses.fields(RunConfig):
        value = getattr(defaults, field.name)
        if dataclasses.is_dataclass(value):
            keys += [f"{field.name}.{f.name}" for f in dataclasses.fields(value)]
        else:
            keys.append(field.name)
    return keys


@pytest.mark.unit
def test_every_config_key_has_a_probe_or_a_reason():
    keys = set(_all_keys())
    covered = set(PROBES) | END_TO_END | set(INERT)
    assert keys - covered == set(), "config keys no test shows to do anything: add a probe (or an INERT reason)"
    assert covered - keys == set(), "probes for keys the config no longer has"


_BASE_OBSERVED: dict[tuple, Any] = {}  # an observer's view of a base config, shared by the keys probing it


@pytest.mark.parametrize("key", sorted(PROBES))
def test_changing_a_key_changes_what_it_names(key, monkeypatch, tmp_path_factory):
    import torchvision.datasets.cifar as tv_cifar

    def offline(*args, **kwargs):  # data.download: torchvision must try (and, here, fail) to download
        raise RuntimeError("offline (test)")

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", offline)
    tmp = tmp_path_factory.getbasetemp() / "walk"
    value, observe, base_overrides = PROBES[key]
    overrides = tuple(o.replace("{tmp}", str(tmp)) for o in base_overrides)
    value = value.replace("{tmp}", str(tmp)) if isinstance(value, str) else value
    base = _cfg(*overrides)
    changed = _with(base, key, value)
    assert getattr_path(changed, key) != getattr_path(base, key), f"{key}: the probe's value is the default"
    if (observe, overrides) not in _BASE_OBSERVED:
        _BASE_OBSERVED[(observe, overrides)] = observe(base)
    before, after = _BASE_OBSERVED[(observe, overrides)], observe(changed)
    assert before != after, f"{key}={value!r} changed nothing in {observe.__name__}: {before!r}"


END_TO_END_VALUES = {
    "tracking.uri": "sqlite:///elsewhere.db",
    "tracking.experiment": "another",
    "tracking.run_name": "named",
    "tracking.log_model": False,
}


@pytest.mark.unit
@pytest.mark.parametrize("key", sorted(PROBES) + sorted(END_TO_END))
def test_a_key_changes_the_experiment_hash_unless_it_changes_only_how_a_run_computes(key, tmp_path):
    """The hash names a run's checkpoints and identifies its results: every key of the walk changes it,
    except those listed as changing how fast, where or how visibly a run computes (``HASH_NEUTRAL_KEYS``)."""
    from coded_resnext.orchestration.config import HASH_NEUTRAL_KEYS

    value, _, base_overrides = PROBES.get(key, (END_TO_END_VALUES.get(key), None, []))
    overrides = [o.replace("{tmp}", str(tmp_path)) for o in base_overrides]
    value = value.replace("{tmp}", str(tmp_path)) if isinstance(value, str) else value
    base = _cfg(*overrides)
    changed = _with(base, key, value)
    assert getattr_path(changed, key) != getattr_path(base, key), f"{key}: the probe's value is the default"
    if key in HASH_NEUTRAL_KEYS:
        assert changed.experiment_hash == base.experiment_hash, f"{key} is listed hash-neutral but changes the hash"
    else:
        assert changed.experiment_hash != base.experiment_hash, f"{key}={value!r} changes results, not the hash"


@pytest.mark.unit
def test_every_hash_neutral_key_is_a_key_the_walk_knows():
    from coded_resnext.orchestration.config import HASH_NEUTRAL_KEYS

    assert set(HASH_NEUTRAL_KEYS) <= set(_all_keys())


def getattr_path(cfg: RunConfig, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


@pytest.mark.unit
def test_mu_null_means_the_presets_own_weight():
    from coded_resnext.orchestration.build import build_model

    for preset, mu in (("coded_resnext_mini", 6.0), ("coded_resnext50_32x4d", 1.0)):
        with torch.device("meta"):
            model = build_model(_cfg(f"model.name={preset}"), 10, 3)
        assert model.config.coding_loss_weight == mu, preset
    with torch.device("meta"):
        assert build_model(_cfg("model.name=coded_resnext50_32x4d", "loss.mu=6"), 10, 3).config.coding_loss_weight == 6


def test_label_smoothing_is_the_cross_entropy_in_training_and_validation():
    """Eq. 6's first term with smoothing eps: (1 - eps) * CE + eps * mean over classes of -log p."""
    from coded_resnext.evaluation import evaluate

    cfg = _cfg("loss.label_smoothing=0.2")
    model = _model(cfg).eval()
    x, y = torch.randn(16, 1, 28, 28), torch.arange(16) % 10
    with torch.no_grad():
        out = model.forward_with_aux(x)
        log_p = torch.log_softmax(out.logits, 1)
        expected = (0.8 * -log_p[torch.arange(16), y] - 0.2 * log_p.mean(1)).mean().item()
        assert model.loss_parts(out, y).classification.item() == pytest.approx(expected, rel=1e-5)
    assert evaluate(model, [(x, y)], torch.device("cpu"))["val/loss"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.slow
def test_tracking_keys_reach_the_mlflow_run(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from coded_resnext.orchestration.config import smoke_test_config
    from coded_resnext.orchestration.training import fit

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    overrides = [f"tracking.uri={uri}", "tracking.experiment=walk", "tracking.run_name=probe-run"]
    cfg = smoke_test_config(_cfg(*overrides, "tracking.log_model=false", "train.epochs=1", "eval.invariance_samples=0"))
    result = fit(cfg, checkpoint_root=tmp_path / "ckpt")
    assert Path(tmp_path / "elsewhere.db").is_file() and not (tmp_path / "runs" / "mlflow.db").exists()
    client = MlflowClient(uri)
    run = client.get_run(result.run_id)
    assert client.get_experiment(run.info.experiment_id).name == "walk" and run.info.run_name == "probe-run"
    import mlflow

    mlflow.set_tracking_uri(uri)
    assert not mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    assert math.isfinite(run.data.metrics["val/accuracy"])  # log_model=true logs one: test_training shows it
