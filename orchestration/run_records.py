"""What a training run records in MLflow besides its per-epoch metrics: its parameters and config
artifacts at the start, its evaluation tables and plots, final checkpoint and model at the end.

Kept beside the loop rather than inside it, so ``training.py`` reads as the loop; every write goes
through the run's ``RunTracker`` (exactly-once, buffered: ``tracking.py``).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from coded_resnext import CodedResNeXt
from coded_resnext.datasets import DatasetBundle
from coded_resnext.evaluation.suite import SuiteResult
from coded_resnext.orchestration.checkpoint import save_checkpoint
from coded_resnext.orchestration.config import RunConfig
from coded_resnext.orchestration.provenance import log_provenance
from coded_resnext.orchestration.tracking import RunTracker
from coded_resnext.results.run_plots import write_run_plots
from coded_resnext.results.schema import TEST_PREFIX, Tag

logger = logging.getLogger(__name__)


def log_run_start(
    tracker: RunTracker, cfg: RunConfig, model: CodedResNeXt, bundle: DatasetBundle, *, measure_test: bool
) -> None:
    """The run's parameters (the flattened config, the mu used, scheme hashes, sizes), its config
    artifacts and its provenance (code, environment, data splits)."""
    params = cfg.flat()
    params["loss.mu"] = model.config.coding_loss_weight  # the weight used (``loss.mu: null``: the preset's)
    params.update({f"scheme.{stage}": h for stage, h in model.scheme_hashes().items()})
    params.update({"model.params": sum(p.numel() for p in model.parameters()), "data.num_classes": bundle.num_classes})
    params.update({f"data.{role}_size": n for role, n in bundle.sizes().items()})
    tracker.log_params(params)
    log_config_artifacts(tracker, cfg, model)
    splits = {"train": bundle.train_eval, "val": bundle.val, "test": bundle.test if measure_test else None}
    log_provenance(tracker, cfg.data.name, cfg.data.root, splits)


def finish_run(
    tracker: RunTracker,
    suite: SuiteResult,
    bundle: DatasetBundle,
    state: dict[str, Any],
    model: CodedResNeXt,
    examples: Iterable,
    cfg: RunConfig,
    *,
    plots: bool = True,
) -> None:
    """The end of a run: its evaluation's tables (and with ``plots`` its plots), the final checkpoint, the
    model, FINISHED."""
    log_suite_artifacts(tracker, suite, bundle, plots=plots)
    if any(key.startswith(TEST_PREFIX) for key in suite.metrics):
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC by coded-resnext train", time.gmtime())
        tracker.set_tags({Tag.TEST_EVALUATED: stamp})
    with tempfile.TemporaryDirectory() as tmp:
        final = save_checkpoint(Path(tmp), state["epoch"], state)
        tracker.log_artifact(final, "checkpoint")
    if cfg.tracking.log_model:
        logger.info("logging the model to MLflow")
        example, _ = next(iter(examples))
        device = next(model.parameters()).device
        tracker.log_model(model.cpu().eval(), example[:2].cpu())
        model.to(device)
    tracker.finish("FINISHED")


def log_config_artifacts(tracker: RunTracker, cfg: RunConfig, model: CodedResNeXt) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "config.yaml").write_text(cfg.to_yaml())
        schemes = {stage: s.to_dict() for stage, s in model.schemes.items()}
        (tmp_path / "coding_schemes.json").write_text(json.dumps(schemes, indent=1))
        tracker.log_artifacts(tmp_path)


def log_suite_artifacts(tracker: RunTracker, suite: SuiteResult, bundle: DatasetBundle, *, plots: bool = True) -> None:
    """The suite's tables (``tables/<name>.csv``) and, with ``plots``, its per-run plots (``plots/*.png``).

    A search's trials log the tables only: drawing the plots took 1-2.5 s of a quickstart trial's ~60 s
    (``benchmarks/evaluation_cost.py``) for figures the search never reads; every plot is drawn from the
    tables (``results.run_plots``), and ``coded-resnext report`` draws the best run's information paths
    from its ``energy_by_class`` table."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        tables = tmp_path / "tables"
        tables.mkdir()
        for name, rows in suite.tables.items():
            if rows:
                frame = pd.DataFrame(rows)
                if name.endswith("energy_by_class") and bundle.class_names:  # labels for the report's heatmap
                    frame["class_name"] = [bundle.class_names[k] for k in frame["class"]]
                frame.to_csv(tables / f"{name}.csv", index=False)
        tracker.log_artifacts(tables, "tables")
        if not plots:
            logger.info("evaluation: %d tables logged (plots: drawn by coded-resnext report)", len(suite.tables))
            return
        directory = tmp_path / "plots"
        written = write_run_plots(suite, directory, class_names=bundle.class_names)
        logger.info("evaluation: %d tables, %d plots logged", len(suite.tables), len(written))
        tracker.log_artifacts(directory, "plots")
