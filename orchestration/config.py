"""The run configuration: typed sections loaded from YAML, with ``--set section.key=value`` overrides.

Every key is a dataclass field; unknown keys, wrong types and out-of-range values are one-line
``ConfigError``s naming the key and the valid choices. The resolved config is saved with every run,
and its hash (``experiment_hash``) names the run's checkpoint directory, so ``--resume`` with the same
config finds its own checkpoints.

Why not pydantic or OmegaConf: their validation errors are multi-line reports; ours must be one line
naming the key, and the schema is a few flat dataclasses, which a short typed walker checks fully.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from coded_resnext.datasets import list_datasets
from coded_resnext.evaluation.settings import EvalSettings
from coded_resnext.models import list_models
from coded_resnext.orchestration.errors import UserError
from coded_resnext.validation import bounded, check_bounds


class ConfigError(UserError):
    """An invalid configuration; the message names the key."""


def _check(cond: bool, key: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {message}")


@dataclass
class ModelSection:
    name: str = "coded_resnext_mini"  # a preset from `coded-resnext models`
    width_multiplier: float = bounded(1.0, gt=0)  # scales stem, branch widths and block outputs
    control: bool = False  # plain ResNeXt with the same shape (every block N/N)
    energy_impl: Literal["gram", "materialized"] = "gram"
    # Section 4.3.1: sum (the method), or concatenate branch outputs in the coded blocks or in every block
    branch_merge: Literal["sum", "concat", "concat_coded"] = "sum"
    mask_grads: bool = False  # footnote 5: each sample's classification gradient reaches its class's branches only
    # coded expand conv's init: kaiming fan-out N*C_out (authors' grouped conv; the paper is silent) or C_out
    expand_init: Literal["fan_out_grouped", "fan_out_dense"] = "fan_out_grouped"

    def __post_init__(self) -> None:
        _check(self.name in list_models(), "model.name", f"unknown preset {self.name!r}; choose one of {list_models()}")
        check_bounds(self, "model.", ConfigError)


@dataclass
class SchemeGenerator:
    """Generator parameters for a stage's scheme (classes come from the data; branches from the model's
    stage unless given, in which case the stage gets that many branches of the same width each)."""

    active: int = bounded(ge=1)
    min_distance: int | None = bounded(None, ge=1, nullable=True)
    seed: int = 0
    branches: int | None = None

    def __post_init__(self) -> None:
        # ValueErrors, not ConfigErrors: build_dataclass prefixes them with where the mapping sits (coding.c3.active)
        check_bounds(self)
        if self.branches is not None and self.branches <= self.active:
            raise ValueError(f"branches: must be > active ({self.active}), got {self.branches}")


@dataclass
class SchemeRun:
    """``blocks`` consecutive blocks of a stage under one scheme (Appendix B: a scheme that changes inside
    a stage, e.g. ``c4: [{scheme: paper:imagenet/16/32, blocks: 3}, {scheme: paper:imagenet/8/32, blocks: 3}]``).
    ``scheme`` takes what a stage takes; the runs' blocks must add up to the stage's depth."""

    scheme: str | SchemeGenerator | bool | None = None
    blocks: int = bounded(1, ge=1)

    def __post_init__(self) -> None:
        if isinstance(self.scheme, bool):
            if self.scheme:
                raise ValueError("scheme: true is not a scheme; give a name, a JSON path, generator parameters or off")
            self.scheme = "off"
        check_bounds(self)  # build_dataclass prefixes the run's key


@dataclass
class CodingSection:
    """Per coded stage: a published name (``paper:cifar10/5/10``), a scheme JSON path, generator
    parameters, ``off`` (plain ResNeXt blocks), null for the default (the published scheme matching
    the stage, else generated), or a list of ``SchemeRun`` (the scheme changes inside the stage)."""

    c2: str | SchemeGenerator | bool | list[SchemeRun] | None = None
    c3: str | SchemeGenerator | bool | list[SchemeRun] | None = None
    c4: str | SchemeGenerator | bool | list[SchemeRun] | None = None
    c5: str | SchemeGenerator | bool | list[SchemeRun] | None = None

    def __post_init__(self) -> None:
        for stage in ("c2", "c3", "c4", "c5"):
            value = getattr(self, stage)
            if isinstance(value, bool):  # YAML reads a bare `off` as false
                _check(
                    not value,
                    f"coding.{stage}",
                    "true is not a scheme; give a name, a JSON path, generator parameters or off",
                )
                setattr(self, stage, "off")
            _check(
                value != [], f"coding.{stage}", "an empty list of runs; give [{scheme: ..., blocks: ...}, ...] or null"
            )


@dataclass
class LossSection:
    mu: float | None = bounded(
        None, ge=0, nullable=True
    )  # weight of the coding loss (Eq. 6); null: the preset's (6 for CIFAR nets, 1 ImageNet)
    p_drop: float = bounded(0.1, ge=0, lt=1)  # DropSubNNs probability
    power: float = bounded(4.0, gt=0)  # exponent of the coding loss (Eq. 5)
    threshold: float = bounded(0.0, ge=0)  # coding-loss deviations up to this are free
    label_smoothing: float = bounded(0.0, ge=0, lt=1)  # of the cross-entropy, in training and in the validation loss

    def __post_init__(self) -> None:
        check_bounds(self, "loss.", ConfigError)


@dataclass
class OptimSection:
    """SGD with Nesterov momentum and a cosine schedule with optional linear warm-up (docs/method.md section 5)."""

    lr: float = bounded(0.1, gt=0)
    lr_min: float = 1e-4  # cosine end value, in [0, lr]
    momentum: float = bounded(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = bounded(5e-4, ge=0)
    warmup_epochs: float = bounded(0.0, ge=0)
    batch_size: int = bounded(128, ge=1)  # global batch (split across Ray workers)
    # The paper is silent on these; the defaults follow the authors' code (see each paper recipe's header).
    schedule_step: Literal["epoch", "batch"] = "epoch"  # cosine lr held per epoch (authors' code) or moved per batch
    warmup_step: Literal["epoch", "batch"] = "epoch"  # linear warm-up per epoch (timm, authors' ImageNet run) or batch
    warmup_lr_init: float = (
        1e-4  # in [0, lr]: lr at the start of warm-up (timm's --warmup-lr default, authors' ImageNet run)
    )
    decay_norm_and_bias: bool = True  # weight decay on BatchNorm and biases too (CIFAR code); timm's ImageNet: false

    def __post_init__(self) -> None:
        check_bounds(self, "optim.", ConfigError)
        _check(0 <= self.lr_min <= self.lr, "optim.lr_min", f"must be in [0, optim.lr], got {self.lr_min}")
        _check(
            self.warmup_step == "batch" or float(self.warmup_epochs).is_integer(),
            "optim.warmup_epochs",
            f"must be a whole number of epochs with optim.warmup_step=epoch, got {self.warmup_epochs}; "
            "set optim.warmup_step=batch for a fraction",
        )
        _check(
            0 <= self.warmup_lr_init <= self.lr,
            "optim.warmup_lr_init",
            f"must be in [0, optim.lr], got {self.warmup_lr_init}",
        )


@dataclass
class DataSection:
    """Three roles: train; val, a stratified ``val_fraction`` hold-out of the training split (what searches
    select on); test, the dataset's own test split (measured once, at the end of a single run or by
    ``coded-resnext evaluate``). ``val_fraction: 0`` is the paper's protocol, for single runs only."""

    name: str = "fashion-mnist"  # cifar10 | cifar100 | fashion-mnist | imagefolder | digits | synthetic
    root: str | None = None  # data directory as named (never replaced by another copy); null: ./data, system copy
    download: bool = False  # let torchvision download CIFAR / Fashion-MNIST when online
    val_fraction: float = bounded(0.1, ge=0, lt=1)  # share of the training split held out for validation (0: none)
    split_seed: int = 0  # seed of the hold-out and the data limits (not the training seed: trials share them)
    augment: bool = True
    randaugment: list[int] | None = (
        None  # [N, M], timm's RandAugment (M on 0-10); paper: [3, 4] CIFAR-10, [1, 2] CIFAR-100
    )
    # RandAugment after the crop and flip (paper text; timm's ImageNet pipeline) or before them (authors' CIFAR code)
    randaugment_order: Literal["after_crop", "before_crop"] = "after_crop"
    image_size: int | None = bounded(None, ge=8, nullable=True)  # imagefolder / synthetic input size
    limit_train: int | None = bounded(None, ge=1, nullable=True)  # stratified seeded subset of the training split
    limit_val: int | None = bounded(None, ge=1, nullable=True)  # ... of the validation split
    limit_test: int | None = bounded(None, ge=1, nullable=True)  # ... of the test split
    ood: str | None = None  # out-of-distribution negatives for binary classifiers (cifar100 for cifar10, ...)

    def __post_init__(self) -> None:
        names = list_datasets()
        _check(self.name in names, "data.name", f"unknown dataset {self.name!r}; choose one of {names}")
        _check(
            self.ood is None or self.ood in names, "data.ood", f"unknown dataset {self.ood!r}; choose one of {names}"
        )
        check_bounds(self, "data.", ConfigError)
        if self.randaugment is not None:
            _check(
                len(self.randaugment) == 2 and all(v >= 0 for v in self.randaugment),
                "data.randaugment",
                f"must be [N, M] with N, M >= 0 (or null), got {self.randaugment}",
            )
            _check(
                self.randaugment[1] <= 10,
                "data.randaugment",
                f"magnitude M must be in 0..10 (timm's scale, M/10 of each op's maximum), got {self.randaugment[1]}",
            )


@dataclass
class TrainSection:
    epochs: int = bounded(10, ge=1)
    num_workers: int = bounded(1, ge=1)  # Ray Train data-parallel workers (1: in-process, no worker group)
    cpus_per_worker: float = bounded(1.0, gt=0)  # Ray resources of each worker (a 1-worker trial: of the trial)
    gpus_per_worker: float = bounded(0.0, ge=0)  # > 0 trains on GPUs (NCCL); fractions share a GPU between trials
    max_failures: int = bounded(1, ge=0)  # Ray Train: restarts from the last checkpoint after a worker dies
    loader_workers: int | None = bounded(
        None, ge=0, nullable=True
    )  # DataLoader processes per training worker; null: 0 on CPU, up to 8 on a GPU
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: a GPU when there is one
    checkpoint_every: int = bounded(1, ge=1)  # epochs between checkpoints (and always at the end)
    progress: Literal["auto", "bar", "line", "none"] = "auto"  # auto: a bar on a terminal, else a line per epoch
    # See orchestration/acceleration.py for the next five.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # autocast; auto: bf16 on a GPU, fp32 on CPU
    compile: bool = False  # torch.compile the train step
    sync_batchnorm: bool = False  # BatchNorm statistics over the global batch (num_workers > 1 only)
    deterministic: bool = False  # deterministic algorithms (cuDNN, cuBLAS workspace too)
    prefetch_factor: int = bounded(4, ge=1)  # batches each loader process prepares ahead

    def __post_init__(self) -> None:
        check_bounds(self, "train.", ConfigError)
        _check(
            not (self.precision == "fp16" and self.device == "cpu"),
            "train.precision",
            "fp16 needs a CUDA GPU (its gradient scaler) but train.device=cpu; use bf16 (autocast works on CPU) or fp32",
        )
        _check(
            not self.sync_batchnorm or self.num_workers > 1,
            "train.sync_batchnorm",
            "needs train.num_workers > 1 (one worker's BatchNorm already sees the whole batch); set it false",
        )


# Keys that change how fast, where or how visibly a run computes, not what: left out of the experiment hash.
# tests/test_config_walk.py checks every other key of the walk changes the hash.
HASH_NEUTRAL_KEYS = frozenset(
    [f"train.{key}" for key in ("progress", "loader_workers", "cpus_per_worker", "gpus_per_worker", "max_failures")]
    + ["train.prefetch_factor"]
    + [f"tracking.{key}" for key in ("uri", "experiment", "run_name", "log_model", "system_metrics")]
    + ["tracking.system_metrics_interval"]
)
# Keys added after runs were already hashed: left out of the hash at their default value, so --resume still
# finds checkpoints written before them (a resumed run then evaluates as the new default says).
_HASH_NEUTRAL_DEFAULTS = {
    "train.precision": "auto",
    "train.compile": False,
    "train.sync_batchnorm": False,
    "train.deterministic": False,
    "eval.binary_fit_augmented": True,
    "eval.binary_fit_negatives_per_positive": 9,
    "eval.binary_fit_draws": 10,
    "eval.ood_negatives_per_positive": None,
}


@dataclass
class TrackingSection:
    uri: str | None = None  # MLflow tracking URI; default: sqlite:///<cwd>/runs/mlflow.db
    experiment: str = "coded-resnext"
    run_name: str | None = None
    log_model: bool = True  # log the final model with mlflow.pytorch
    system_metrics: bool = True  # CPU, memory, disk, network (and GPU) as system/... metrics of the run
    system_metrics_interval: float = bounded(10.0, gt=0, unit="seconds")  # seconds between samples

    def __post_init__(self) -> None:
        check_bounds(self, "tracking.", ConfigError)


@dataclass
class RunConfig:
    model: ModelSection = field(default_factory=ModelSection)
    coding: CodingSection = field(default_factory=CodingSection)
    loss: LossSection = field(default_factory=LossSection)
    optim: OptimSection = field(default_factory=OptimSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSettings = field(default_factory=EvalSettings)
    tracking: TrackingSection = field(default_factory=TrackingSection)
    seed: int = 0

    def __post_init__(self) -> None:
        _check(
            self.optim.batch_size % self.train.num_workers == 0,
            "optim.batch_size",
            f"the global batch {self.optim.batch_size} must split evenly over train.num_workers="
            f"{self.train.num_workers}; pick a multiple of {self.train.num_workers}",
        )

    # ---- derived ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def flat(self) -> dict[str, Any]:
        """``section.key -> value`` (MLflow params); generator specs become compact strings."""
        out: dict[str, Any] = {}
        for key, value in self.to_dict().items():
            if isinstance(value, dict):
                for sub, v in value.items():
                    if isinstance(v, list) and v and isinstance(v[0], dict):  # scheme runs inside a stage
                        v = "; ".join(f"{_flat_scheme(run['scheme'])} x{run['blocks']}" for run in v)
                    out[f"{key}.{sub}"] = _flat_scheme(v)
            else:
                out[key] = value
        return out

    @property
    def experiment_hash(self) -> str:
        """Stable hash of everything that changes results (tracking settings and progress display
        excluded)."""
        data = self.to_dict()
        for key in HASH_NEUTRAL_KEYS:
            section, name = key.split(".")
            data[section].pop(name)
        data.pop("tracking")  # empty now; its absence keeps the hashes of earlier runs
        for key, default in _HASH_NEUTRAL_DEFAULTS.items():  # so configs from before these keys keep their hash
            section, name = key.split(".")
            if name in data[section] and data[section][name] == default:
                data[section].pop(name)
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _flat_scheme(value: Any) -> Any:
    """A scheme generator spec as a compact string (MLflow params); anything else as it is."""
    if isinstance(value, dict):
        return "generate:" + ",".join(f"{k}={x}" for k, x in value.items() if x is not None or k == "min_distance")
    return value


# ---- loading ------------------------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if isinstance(tp, type):
        return {"str": "a string", "int": "an integer", "float": "a number", "bool": "true/false"}.get(
            tp.__name__, f"a mapping ({tp.__name__})" if dataclasses.is_dataclass(tp) else tp.__name__
        )
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (list,):
        return f"a list of {_type_name(args[0])}"
    return " or ".join(_type_name(a) for a in args) + (" or null" if type(None) in typing.get_args(tp) else "")


def _same_shape(tp: Any, value: Any) -> bool:
    """``value`` is a list for a list type or a mapping for a dataclass."""
    if typing.get_origin(tp) is list:
        return isinstance(value, list | tuple)
    return dataclasses.is_dataclass(tp) and isinstance(value, dict)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """``value`` as type ``tp`` or a ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        _check(value in choices, key, f"must be one of {list(choices)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            _check(type(None) in args, key, f"must be {_type_name(tp)}, got null")
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, key)
            except ConfigError as err:
                errors.append((arg, err))
        # a list or mapping that fails its own arm: that arm's error names the inner key
        shaped = [err for arg, err in errors if _same_shape(arg, value)]
        if len(errors) == 1 or len(shaped) == 1:
            raise (shaped or [errors[-1][1]])[0]
        raise ConfigError(f"{key}: must be {_type_name(tp)}, got {value!r}")
    if origin is dict:  # e.g. tune.objectives {metric: max}: keys and values checked like any field
        _check(isinstance(value, dict), key, f"must be a mapping, got {value!r}")
        key_type, value_type = typing.get_args(tp)
        return {_coerce(key_type, k, key): _coerce(value_type, v, f"{key}.{k}") for k, v in value.items()}
    if origin is list:
        _check(isinstance(value, list | tuple), key, f"must be {_type_name(tp)}, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        _check(isinstance(value, dict), key, f"must be {_type_name(tp)}, got {value!r}")
        return build_dataclass(tp, value, key)
    if tp is bool:
        _check(isinstance(value, bool), key, f"must be true or false, got {value!r}")
        return value
    if tp is int:
        _check(isinstance(value, int) and not isinstance(value, bool), key, f"must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
            return float(value)  # PyYAML (YAML 1.1) reads 1e-4, without a dot, as a string
        _check(isinstance(value, int | float) and not isinstance(value, bool), key, f"must be a number, got {value!r}")
        return float(value)
    if tp is str:
        _check(isinstance(value, str), key, f"must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {key}")  # a bug in this file, not user input


_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def build_dataclass(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """An instance of dataclass ``cls`` from plain data, every field checked against its type; errors are one
    ``ConfigError`` line naming the key under ``prefix`` (``tune``, ``coding.c3``)."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            where = f"{prefix}.{key}" if prefix else key
            raise ConfigError(
                f"{where}: unknown key; valid keys{' in ' + prefix if prefix else ''}: {', '.join(names)}"
            )
    kwargs = {}
    for name in names:
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], f"{prefix}.{name}" if prefix else name)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except ValueError as err:  # a library dataclass's own check, "key: problem"
        raise ConfigError(f"{prefix}.{err}" if prefix else str(err)) from None
    except TypeError as err:  # a required field is missing
        raise ConfigError(f"{prefix or 'config'}: {err}") from None


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"config: expected a mapping of sections, got {type(data).__name__}")
    return build_dataclass(RunConfig, data)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``section.key=value`` -> (["section", "key"], value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. --set loss.mu=3")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"--set {key}: cannot parse value {raw!r}") from None
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    data = json.loads(json.dumps(data))  # deep copy of plain data
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {'.'.join(path)}: {part} is not a section")
            node = child
        node[path[-1]] = value
    return data


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config (or defaults when ``path`` is None), apply overrides, validate."""
    data: Any = {}
    if path is not None:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file") from None
        except IsADirectoryError:
            raise ConfigError(f"{path}: is a directory, expected a YAML file") from None
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(f"{path}: malformed YAML{where}: {getattr(err, 'problem', err)}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of sections (model:, data:, ...), got {type(data).__name__}")
    return config_from_dict(apply_overrides(data, overrides or []))


def smoke_test_config(cfg: RunConfig) -> RunConfig:
    """Shrink data, epochs and evaluation so the whole path runs in about a minute."""
    cfg = dataclasses.replace(cfg)
    cfg.data = dataclasses.replace(
        cfg.data, limit_train=min(cfg.data.limit_train or 512, 512), limit_val=256, limit_test=256
    )
    cfg.train = dataclasses.replace(cfg.train, epochs=min(cfg.train.epochs, 2))
    # warm-up kept (at most one epoch) so a smoke test runs the recipe's whole schedule
    warmup = min(cfg.optim.warmup_epochs, 1.0)
    cfg.optim = dataclasses.replace(cfg.optim, batch_size=min(cfg.optim.batch_size, 64), warmup_epochs=warmup)
    cfg.eval = dataclasses.replace(
        cfg.eval,
        binary_classes=min(cfg.eval.binary_classes, 3),
        binary_fit_samples=min(cfg.eval.binary_fit_samples, 256),
        invariance_samples=min(cfg.eval.invariance_samples, 64),
        removal_samples=min(cfg.eval.removal_samples, 256),
        # the removal curves of the last coded block only: over every block they take longer than the
        # training itself (a paper recipe's 6 or 9 coded blocks, each with one pass per removed count)
        removal_block=-1 if cfg.eval.removal_block is None else cfg.eval.removal_block,
        early_exit_thresholds=min(cfg.eval.early_exit_thresholds, 11),
        limit_val=min(cfg.eval.limit_val or 256, 256),
    )
    return cfg
