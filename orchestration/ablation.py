"""An ablation: cells (a grid of settings, or named variants) x seeds, the plain-ResNeXt control always
included, run as one grid batch on Tune and summarized per cell against the control on the same seed.

```yaml
base: quickstart_train.yaml
config: {train: {epochs: 4}}
grid:                       # cells: the product of these values ...
  loss.mu: [0, 3, 6]
  loss.p_drop: [0.0, 0.1]
variants:                   # ... and/or named cells, each a set of overrides
  c3_off: {coding.c3: "off"}
seeds: [0, 1, 2]
metrics: [val/accuracy, binary/f1_mean]
tune: {max_concurrent_trials: 2}
```

Each trial's MLflow run carries the tag ``ablation_cell`` (``loss.mu=3,loss.p_drop=0.1``, a variant's
name, or ``control``) and the param ``seed``; the parent run has role ``ablation``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any

import yaml

from coded_resnext.orchestration.search_space import (
    CELL_KEY,
    Domain,
    SearchSpace,
    SearchSpaceError,
    space_from_document,
    validate,
)
from coded_resnext.results.ablation import summarize_ablation
from coded_resnext.results.runs import load_runs
from coded_resnext.results.schema import CONTROL_CELL, Role

CONTROL = CONTROL_CELL
DEFAULT_METRICS = ["val/accuracy", "binary/f1_mean", "binary/param_fraction", "early_exit/compute_at_99pct_accuracy"]


def _label(overrides: dict[str, Any]) -> str:
    return ",".join(f"{k}={json.dumps(v) if isinstance(v, dict | list) else v}" for k, v in overrides.items())


def load_ablation(path: str | Path, overrides: list[str] | None = None) -> tuple[SearchSpace, list[str]]:
    """The ablation as a grid search space over (cell, seed), and the metrics to summarize."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise SearchSpaceError(f"{path}: no such ablation file") from None
    except (IsADirectoryError, yaml.YAMLError) as err:
        raise SearchSpaceError(f"{path}: not a readable YAML file ({type(err).__name__})") from None
    if not isinstance(raw, dict):
        raise SearchSpaceError(f"{path}: expected a mapping with base/config/grid/variants/seeds/metrics/tune")
    unknown = sorted(set(raw) - {"base", "config", "grid", "variants", "seeds", "metrics", "tune"})
    if unknown:
        raise SearchSpaceError(
            f"{path}: unknown section(s) {unknown}; valid: base, config, grid, variants, seeds, metrics, tune"
        )
    grid = raw.get("grid") or {}
    variants = raw.get("variants") or {}
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise SearchSpaceError(
            f"{path}: grid: expected dotted keys with non-empty lists of values, e.g. loss.mu: [0, 3, 6]"
        )
    if not isinstance(variants, dict) or not all(isinstance(v, dict) for v in variants.values()):
        raise SearchSpaceError(
            f"{path}: variants: expected names mapping to overrides, e.g. c3_off: {{coding.c3: off}}"
        )
    if not grid and not variants:
        raise SearchSpaceError(f"{path}: an ablation needs a grid or variants to compare with the control")
    seeds = raw.get("seeds", [0])
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    ):
        raise SearchSpaceError(f"{path}: seeds: expected a non-empty list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise SearchSpaceError(f"{path}: seeds: {seeds} repeats a seed; pairing with the control needs distinct seeds")
    metrics = raw.get("metrics", DEFAULT_METRICS)
    if not isinstance(metrics, list) or not all(isinstance(m, str) and "/" in m for m in metrics):
        raise SearchSpaceError(f"{path}: metrics: expected a list of metric names like val/accuracy")

    cells: dict[str, dict[str, Any]] = {CONTROL: {"model.control": True}}
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)) if keys else []:
        setting = dict(zip(keys, values, strict=True))
        cells[_label(setting)] = setting
    for name, setting in variants.items():
        if str(name) in cells:
            raise SearchSpaceError(f"{path}: variants: {name!r} clashes with another cell's name")
        cells[str(name)] = dict(setting)

    # The ablation is a search space without a search: a grid over (cell, seed).
    space_doc = {k: raw[k] for k in ("base", "config", "tune") if k in raw}
    tune = dict(space_doc.get("tune") or {})
    if tune.get("algorithm", "grid") != "grid":
        raise SearchSpaceError(f"{path}: tune.algorithm: an ablation runs a grid; leave algorithm out")
    tune.update({"algorithm": "grid", "num_samples": 1})
    space_doc["tune"] = tune
    space = _space_from(path, space_doc, overrides)
    space.cells = cells
    space.role = Role.ABLATION
    space.domains = {
        CELL_KEY: Domain("grid", values=tuple(cells)),
        "seed": Domain("grid", values=tuple(seeds)),
    }
    validate(space)
    return space, metrics


def _space_from(path: Path, doc: dict[str, Any], overrides: list[str] | None) -> SearchSpace:
    """The base/config/tune part, resolved and checked as a search space's."""
    space = space_from_document(doc, path, path.read_text(), overrides)
    if space.tune.name is None:
        space.tune = dataclasses.replace(space.tune, name=path.stem)
    return space


def summarize(space: SearchSpace, metrics: list[str], parent_run_id: str, tracking_uri: str):
    """The per-cell summary table of the ablation's finished trials (see ``results.summarize_ablation``)."""
    runs = load_runs(space.base_config().tracking.experiment, tracking_uri, parent_run_id=parent_run_id)
    return summarize_ablation(runs, metrics, cell_column=f"tags.{CELL_KEY}", control_cell=CONTROL)


def smoke_test_ablation(space: SearchSpace, cells: int = 2, seeds: int = 2) -> None:
    """Shrink the ablation to a few runs, as ``tune --smoke-test`` does: the control and the first
    ``cells - 1`` cells, on the first ``seeds`` seeds (two, so the paired difference is exercised)."""
    keep = list(space.cells)[:cells]  # the control comes first
    space.cells = {name: space.cells[name] for name in keep}
    space.domains[CELL_KEY] = Domain("grid", values=tuple(keep))
    space.domains["seed"] = Domain("grid", values=space.domains["seed"].values[:seeds])
