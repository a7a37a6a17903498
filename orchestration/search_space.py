"""A search-space YAML: a base run config, the keys to search and how, and the Tune settings.

```yaml
base: quickstart_train.yaml          # a run config, relative to this file (optional)
config: {train: {epochs: 3}}         # overrides of the base, same sections as a run config
search:                              # any config key, dotted; one domain each
  loss.mu: {loguniform: [1, 10]}
  loss.p_drop: {choice: [0.0, 0.1, 0.2]}
  coding.c3: {choice: ["paper:cifar10/5/10", {active: 4, min_distance: 4}, "off"]}
  model.width_multiplier: {uniform: [0.75, 1.25]}
  seed: {choice: [0, 1]}                 # grid: every value, with algorithm random or grid
tune: {algorithm: nsga2, num_samples: 8, max_concurrent_trials: 2}
```

Everything is validated before Ray starts: unknown keys and domains, and every sampled config must be
buildable (scheme vs classes, widths, batch vs workers); each problem is one line naming the key.
Choices that are not plain scalars (generator mappings) travel through Tune as JSON strings, since
Optuna's categorical distribution takes scalars only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from ray import tune

from coded_resnext.datasets import dataset_shape
from coded_resnext.orchestration.build import build_model
from coded_resnext.orchestration.config import (
    ConfigError,
    RunConfig,
    apply_overrides,
    build_dataclass,
    config_from_dict,
)
from coded_resnext.orchestration.constraints import ConstraintError, parse_constraints
from coded_resnext.orchestration.errors import UserError
from coded_resnext.orchestration.searcher import check_url
from coded_resnext.results.schema import DEFAULT_OBJECTIVES, Role, Tag
from coded_resnext.validation import bounded, check_bounds

DOMAIN_KINDS = ("choice", "grid", "uniform", "loguniform", "randint")
JSON_PREFIX = "json:"
MAX_COMBINATIONS_CHECKED = 64
# Metrics that lie in [0, 1]: for them the hypervolume's default reference point is the worst end (0 for a
# maximized one, 1 for a minimized one), the same for every sweep, so hypervolumes compare across sweeps.
UNIT_INTERVAL_METRICS = ("val/accuracy", "val/decode_accuracy/", "binary/", "early_exit/")
CELL_KEY = Tag.ABLATION_CELL  # an ablation's grid dimension over its cells (see ablation.py), and its runs' tag


class SearchSpaceError(UserError):
    """An invalid search space; the message names the key."""


@dataclass(frozen=True)
class Domain:
    kind: Literal["choice", "grid", "uniform", "loguniform", "randint"]
    values: tuple[Any, ...] = ()  # choice / grid
    low: float | None = None  # uniform / loguniform / randint (randint: high exclusive)
    high: float | None = None

    @classmethod
    def parse(cls, key: str, spec: Any) -> Domain:
        where = f"search.{key}"
        if not isinstance(spec, dict) or len(spec) != 1:
            raise SearchSpaceError(
                f"{where}: expected one domain like {{choice: [...]}}, {{grid: [...]}}, {{uniform: [low, high]}}, "
                f"{{loguniform: [low, high]}} or {{randint: [low, high]}}; got {spec!r} (constants go under config:)"
            )
        ((kind, arg),) = spec.items()
        if kind not in DOMAIN_KINDS:
            raise SearchSpaceError(f"{where}: unknown domain {kind!r}; choose one of {list(DOMAIN_KINDS)}")
        if kind in ("choice", "grid"):
            if not isinstance(arg, list) or not arg:
                raise SearchSpaceError(f"{where}: {kind} needs a non-empty list of values, got {arg!r}")
            return cls(kind, values=tuple(arg))
        if not (isinstance(arg, list) and len(arg) == 2 and all(_is_number(v) for v in arg)):
            raise SearchSpaceError(f"{where}: {kind} needs [low, high] numbers, got {arg!r}")
        low, high = arg
        if not low < high:
            raise SearchSpaceError(f"{where}: {kind} needs low < high, got [{low}, {high}]")
        if kind == "loguniform" and low <= 0:
            raise SearchSpaceError(f"{where}: loguniform needs low > 0, got {low}")
        if kind == "randint" and not all(isinstance(v, int) for v in arg):
            raise SearchSpaceError(f"{where}: randint needs integers [low, high), got {arg!r}")
        return cls(kind, low=low, high=high)

    def extremes(self) -> list[Any]:
        """Values that bound what can be sampled: every choice, or both ends of a range."""
        if self.kind in ("choice", "grid"):
            return list(self.values)
        if self.kind == "randint":
            return [int(self.low), int(self.high) - 1]
        return [self.low, self.high]

    def to_tune(self, exhaustive: bool = False):
        """The Ray Tune domain; ``exhaustive`` (algorithm grid) runs every choice as a grid dimension."""
        if self.kind == "grid" or (exhaustive and self.kind == "choice"):
            return tune.grid_search([encode(v) for v in self.values])
        if self.kind == "choice":
            return tune.choice([encode(v) for v in self.values])
        return {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint}[self.kind](
            self.low, self.high
        )


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def encode(value: Any) -> Any:
    return JSON_PREFIX + json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value


def decode(value: Any) -> Any:
    return json.loads(value[len(JSON_PREFIX) :]) if isinstance(value, str) and value.startswith(JSON_PREFIX) else value


@dataclass
class TuneSection:
    # optuna: TPE (one metric); nsga2 / motpe: multi-objective (Optuna's NSGA-II / multi-objective TPE)
    algorithm: Literal["random", "grid", "optuna", "nsga2", "motpe"] = "random"
    num_samples: int = bounded(4, ge=1)  # trials (grid: repeats of the whole grid)
    max_concurrent_trials: int = bounded(1, ge=1)
    metric: str = "val/accuracy"  # single-objective searches and ASHA
    mode: Literal["max", "min"] = "max"
    objectives: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_OBJECTIVES))  # nsga2
    # early stopping: asha (one metric) or moasha (multi-objective ASHA over `objectives`, see moasha.py)
    scheduler: Literal["none", "asha", "moasha"] = "none"
    grace_period: int = bounded(1, ge=1)  # ASHA / MO-ASHA: epochs before a trial can be stopped (the first rung)
    reduction_factor: float = bounded(2.0, gt=1)  # keep the top 1/reduction_factor at each rung
    max_t: int | None = bounded(
        None, ge=1, nullable=True
    )  # MO-ASHA: epochs a trial trains at most; default train.epochs
    # bounds on what the architecture fixes, checked before a trial trains, e.g. {binary/param_fraction: "<= 0.5"}
    constraints: dict[str, str] = field(default_factory=dict)
    reference_point: list[float] | None = None  # hypervolume reference, one value per objective (default: see sweep)
    reference_control: bool = False  # one extra plain-control trial (base config, model.control=true) as a baseline
    max_trial_failures: int = bounded(0, ge=0)  # Tune retries of a failed trial (from its last checkpoint)
    # every epoch's report carries every objective (the light rung evaluation after each epoch, not only at
    # MO-ASHA's rungs): learning curves that `coded-resnext simulate` can replay under any scheduler
    record_curves: bool = False
    seed: int = 0  # the searcher's seed
    name: str | None = None  # the sweep's name in storage and MLflow; default: the file's stem
    storage_path: str | None = None  # shared dir or object-store URI; default runs/ray
    # the Optuna study's database URL (e.g. the MLflow server's PostgreSQL); default: none, the study is
    # checkpointed with the sweep's Tune experiment in its storage path (searcher.py)
    searcher_storage: str | None = None

    def __post_init__(self) -> None:
        def check(ok: bool, key: str, msg: str) -> None:
            if not ok:
                raise ConfigError(f"tune.{key}: {msg}")

        check_bounds(self, "tune.", ConfigError)
        for key, mode in self.objectives.items():
            check(mode in ("max", "min"), f"objectives.{key}", f"must be max or min, got {mode!r}")
        check(bool(self.objectives), "objectives", "needs at least one metric: direction")
        if self.searcher_storage is not None:
            check_url(self.searcher_storage)
        check(
            not (self.scheduler == "asha" and self.multi_objective),
            "scheduler",
            f"ASHA stops trials on one metric; use it with algorithm random, grid or optuna, not {self.algorithm}",
        )
        self._check_moasha(check)

        try:
            parse_constraints(self.constraints)
        except ConstraintError as err:
            raise ConfigError(str(err)) from None

    def _check_moasha(self, check) -> None:
        """MO-ASHA and the settings that come with it (its budget against train.epochs: see ``validate``)."""
        if self.scheduler == "moasha":
            check(
                self.algorithm != "optuna",
                "scheduler",
                "moasha ranks several objectives; algorithm optuna optimizes one metric (use asha with it, or "
                "algorithm random, nsga2 or motpe with moasha)",
            )
            check(
                len(self.objectives) >= 2,
                "scheduler",
                f"moasha ranks several objectives but tune.objectives has {list(self.objectives)}; with one, use asha",
            )
        check(
            not (self.reference_control and self.scheduler == "asha"),
            "reference_control",
            "ASHA would stop the control trial like any other; use scheduler moasha (which exempts it) or none",
        )
        if self.reference_point is not None:
            names = (
                list(self.objectives) if self.multi_objective or self.algorithm in ("random", "grid") else [self.metric]
            )
            check(
                len(self.reference_point) == len(names),
                "reference_point",
                f"needs one value per objective {names}, got {len(self.reference_point)}: {self.reference_point}",
            )

    @property
    def multi_objective(self) -> bool:
        return self.algorithm in ("nsga2", "motpe") or self.scheduler == "moasha"


@dataclass
class SearchSpace:
    path: Path
    base: dict[str, Any]  # the run config (base + config overrides), as plain data
    domains: dict[str, Domain]
    tune: TuneSection
    text: str  # the file as written (logged with the sweep)
    cells: dict[str, dict[str, Any]] = field(default_factory=dict)  # ablation: label -> dotted overrides
    role: str = Role.SWEEP  # the parent run's role tag: Role.SWEEP | Role.ABLATION

    @property
    def name(self) -> str:
        return self.tune.name or self.path.stem

    @property
    def hash(self) -> str:
        canonical = json.dumps(
            {"base": self.base, "search": {k: dataclasses.asdict(d) for k, d in self.domains.items()}},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def base_config(self) -> RunConfig:
        return config_from_dict(self.base)

    def trial_config(self, sampled: dict[str, Any]) -> RunConfig:
        """The run config of one trial: the base with the sampled values (Tune's flat keys) applied."""
        overrides = {k: decode(v) for k, v in sampled.items() if k in self.domains and k != CELL_KEY}
        if CELL_KEY in sampled:
            overrides = {**self.cells[sampled[CELL_KEY]], **overrides}
        return config_from_dict(_set_keys(self.base, overrides))

    def param_space(self) -> dict[str, Any]:
        exhaustive = self.tune.algorithm == "grid"
        return {key: domain.to_tune(exhaustive) for key, domain in self.domains.items()}


def _set_keys(data: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    return apply_overrides(data, [f"{k}={json.dumps(v)}" for k, v in values.items()])


def load_search_space(path: str | Path, overrides: list[str] | None = None) -> SearchSpace:
    """Read, resolve and validate a search space (see the module docstring for the format)."""
    path = Path(path)
    try:
        text = path.read_text()
        raw = yaml.safe_load(text) or {}
    except FileNotFoundError:
        raise SearchSpaceError(f"{path}: no such search-space file") from None
    except IsADirectoryError:
        raise SearchSpaceError(f"{path}: is a directory, expected a YAML file") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SearchSpaceError(f"{path}: malformed YAML{where}: {getattr(err, 'problem', err)}") from None
    if not isinstance(raw, dict):
        raise SearchSpaceError(f"{path}: expected a mapping with base/config/search/tune, got {type(raw).__name__}")
    unknown = sorted(set(raw) - {"base", "config", "search", "tune"})
    if unknown:
        raise SearchSpaceError(f"{path}: unknown section(s) {unknown}; valid: base, config, search, tune")
    space = space_from_document(raw, path, text, overrides)
    validate(space)
    return space


def space_from_document(raw: dict[str, Any], path: Path, text: str, overrides: list[str] | None = None) -> SearchSpace:
    """The parsed document's space (base resolved relative to ``path``), not yet validated as a whole."""
    base: dict[str, Any] = {}
    if raw.get("base") is not None:
        base_path = (path.parent / str(raw["base"])).resolve()
        if not base_path.is_file():
            raise SearchSpaceError(f"{path}: base config {raw['base']!r} not found (looked at {base_path})")
        base = yaml.safe_load(base_path.read_text()) or {}
    config = raw.get("config") or {}
    if not isinstance(config, dict):
        raise SearchSpaceError(f"{path}: config: expected a mapping of run-config sections, got {config!r}")
    merged = _merge(base, config)
    merged = apply_overrides(merged, overrides or [])
    try:
        config_from_dict(merged)
    except ConfigError as err:
        raise SearchSpaceError(f"{path}: config: {err}") from None

    search = raw.get("search") or {}
    if not isinstance(search, dict):
        raise SearchSpaceError(f"{path}: search: expected a mapping of dotted config keys to domains")
    domains = {str(k): Domain.parse(str(k), v) for k, v in search.items()}
    try:
        tune_section = build_dataclass(TuneSection, raw.get("tune") or {}, "tune")
    except ConfigError as err:
        raise SearchSpaceError(f"{path}: {err}") from None
    return SearchSpace(path, merged, domains, tune_section, text)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Section by section: ``over``'s keys replace ``base``'s (a scheme mapping is replaced whole)."""
    out = json.loads(json.dumps(base))
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def validate(space: SearchSpace) -> None:
    """Every key valid and every combination of extreme values buildable, before anything launches."""
    t = space.tune
    if t.algorithm in ("optuna", "nsga2", "motpe"):
        grids = [k for k, d in space.domains.items() if d.kind == "grid"]
        if grids:
            raise SearchSpaceError(
                f"search.{grids[0]}: grid values need tune.algorithm random or grid; with {t.algorithm} use choice"
            )
    if t.algorithm in ("optuna", "nsga2", "motpe") and not space.domains:
        raise SearchSpaceError(f"search: tune.algorithm {t.algorithm} needs at least one key to search")
    for key, domain in space.domains.items():
        for value in domain.extremes():
            _check_config(space, {key: value}, f"search.{key}={value!r}")
    grids = [[(k, v) for v in d.extremes()] for k, d in space.domains.items()]
    combos = list(itertools.islice(itertools.product(*grids), MAX_COMBINATIONS_CHECKED + 1))
    if len(combos) > MAX_COMBINATIONS_CHECKED:  # too many to build: each key on its own was checked above
        combos = []

    for combo in combos:
        values = dict(combo)
        cfg = _check_config(space, values, ", ".join(f"{k}={v!r}" for k, v in values.items()) or "config")
        classes, chans = dataset_shape(cfg.data.name) or (None, None)
        if classes is None:
            continue  # imagefolder: its class count is known only from the data

        where = ", ".join(f"{k}={v!r}" for k, v in values.items()) or "the base config"
        try:
            with torch.device("meta"):
                build_model(cfg, classes, chans)
        except UserError as err:
            raise SearchSpaceError(f"{space.path}: {where}: {err}") from None
        except (ValueError, TypeError) as err:  # ModelConfigError / CodingSchemeError are ValueErrors
            raise SearchSpaceError(f"{space.path}: {where}: {err}") from None
    _check_budget(space)
    _check_reference(space)
    metric_keys = {t.metric} | (set(t.objectives) if t.multi_objective else set())
    for key in metric_keys:
        if "/" not in key:
            raise SearchSpaceError(
                f"tune: {key!r} is not a metric the runs report (e.g. val/accuracy, binary/param_fraction)"
            )


def _check_budget(space: SearchSpace) -> None:
    """MO-ASHA's rungs against the trials' epochs: every trial has the same budget, and rungs below it."""
    t = space.tune
    if t.scheduler != "moasha":
        return
    if "train.epochs" in space.domains:
        raise SearchSpaceError(
            "search.train.epochs: moasha gives every trial the same budget (tune.max_t); set train.epochs under config:"
        )
    epochs = space.base_config().train.epochs
    max_t = t.max_t or epochs
    if max_t > epochs:
        raise SearchSpaceError(
            f"tune.max_t={max_t} exceeds train.epochs={epochs}; trials never train past train.epochs"
        )
    if t.grace_period >= max_t:
        raise SearchSpaceError(
            f"tune.grace_period={t.grace_period} must be below tune.max_t={max_t} (default train.epochs), "
            "or no trial is ever judged before it ends"
        )


def default_reference_point(objectives: dict[str, str]) -> list[float]:
    """The hypervolume reference for objectives in [0, 1]: each one's worst value."""
    return [0.0 if mode == "max" else 1.0 for mode in objectives.values()]


def _check_reference(space: SearchSpace) -> None:
    t = space.tune
    if not (t.multi_objective or t.algorithm in ("random", "grid")) or t.reference_point is not None:
        return  # (random and grid sweeps measure their hypervolume over tune.objectives too)
    other = [k for k in t.objectives if not k.startswith(UNIT_INTERVAL_METRICS)]
    if other:
        raise SearchSpaceError(
            f"tune.reference_point: needed for objectives outside [0, 1] ({', '.join(other)}); give one value per "
            f"objective {list(t.objectives)}, each worse than any trial should be"
        )


def _check_config(space: SearchSpace, values: dict[str, Any], where: str) -> RunConfig:
    if CELL_KEY in values:
        values = {**space.cells[values[CELL_KEY]], **{k: v for k, v in values.items() if k != CELL_KEY}}
    try:
        cfg = config_from_dict(_set_keys(space.base, values))
    except ConfigError as err:
        raise SearchSpaceError(f"{space.path}: {where}: {err}") from None
    if cfg.data.val_fraction == 0:
        what = "an ablation" if space.role == Role.ABLATION else "a search"
        raise SearchSpaceError(
            f"{space.path}: {where}: data.val_fraction is 0, but {what} needs a validation split to select on "
            "(the test split is measured once, by coded-resnext evaluate); set it in (0, 1), e.g. 0.1"
        )
    return cfg
