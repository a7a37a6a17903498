"""What a run records, by name: the MLflow tags, roles and metric keys the project writes and reads back.

One place for the names, so the code that writes a run (``coded_resnext.orchestration``) and the code that
reads it (this package, the report, ``evaluate``, resume) cannot drift apart. It lives in ``results/``, the
lowest layer that reads runs; the writers import it from here. ``tests/test_schema.py`` fails when a tag or
role name appears as a string literal anywhere else in the product code.

The metric keys are the evaluation suite's (``coded_resnext.evaluation``, which names what it measures);
the ones listed here are those other code selects, ranks or looks up by name.
"""

from __future__ import annotations


class Tag:
    """MLflow run tags (plain strings, so they go anywhere a string goes: dict keys, YAML, MLflow filters)."""

    ROLE = "role"  # what a run is: one of Role
    SWEEP = "sweep"  # the sweep or ablation a run belongs to (its name)
    TRIAL_ID = "trial_id"  # the Tune trial a child run served
    TUNE_EXPERIMENT = "tune_experiment"  # the Tune experiment of that trial (the sweep, or name-extK)
    STORAGE_PATH = "storage_path"  # where a sweep keeps its Tune state
    PLANNED_TRIALS = "planned_trials"  # prefix: planned_trials.<tune experiment> = trials it was to run
    INTERRUPTED = "interrupted"  # a sweep stopped by Ctrl-C ("true") or finished ("false")
    RUNS_DONE = "runs_done"  # "done/planned" trials when the sweep ended
    RESUME_COMMAND = "resume_command"  # the command that continues an interrupted sweep
    EXPERIMENT_HASH = "experiment_hash"  # RunConfig.experiment_hash: what the run computes
    RUN_KEY = "run_key"  # a single run's identity across Ray Train restarts
    RAY_TRAIN_RUN = "ray_train_run"  # the Ray Train run (storage/name) a data-parallel run continues
    INFEASIBLE = "infeasible"  # "true": a constraint on the architecture failed before training
    INFEASIBLE_REASON = "infeasible_reason"
    EARLY_STOPPED = "early_stopped"  # "true": a scheduler stopped the trial before its full budget
    STOPPED_AT_EPOCH = "stopped_at_epoch"
    REFERENCE_CONTROL = "reference_control"  # "true": the sweep's plain-control baseline trial
    ABLATION_CELL = "ablation_cell"  # an ablation trial's cell (its grid point; "control" for the control)
    TEST_EVALUATED = "test_evaluated"  # when and by what the test split was measured
    SOURCE_CHECKPOINT = "source_checkpoint"  # an extracted model's checkpoint
    GIT_COMMIT = "git_commit"
    PARENT_RUN = "mlflow.parentRunId"  # MLflow's own: the run a child is nested under
    NOTE = "mlflow.note.content"  # MLflow's own: a run's or experiment's description (Markdown)
    EXPERIMENT_KIND = "mlflow.experimentKind"  # MLflow 3's own experiment tag: which UI view it opens on
    SHARED_VIEW = "mlflow.sharedViewState."  # MLflow's own experiment-tag prefix: a runs-table view a link opens


# Tag.EXPERIMENT_KIND of the experiments the project creates: MLflow 3's "model development" (training runs,
# opened on the runs table); untagged, its UI may infer "GenAI development" and open on a tracing page. The
# value is the UI's own (``ExperimentKind.CUSTOM_MODEL_DEVELOPMENT`` in mlflow/server/js).
MODEL_DEVELOPMENT = "custom_model_development"


class Role:
    """Values of ``Tag.ROLE``."""

    SWEEP = "sweep"  # a search's parent run
    ABLATION = "ablation"  # an ablation's parent run
    TRIAL = "trial"  # a training run: a sweep's or ablation's child, or a single `train` run
    EXTRACT = "extract"  # a model extracted from a run's checkpoint


PARENT_ROLES = (Role.SWEEP, Role.ABLATION)
CONTROL_CELL = "control"  # Tag.ABLATION_CELL of an ablation's plain-control cell


class Metric:
    """Metric keys other code selects, ranks or looks up by name."""

    EPOCH = "epoch"  # Tune's time attribute: epochs done
    VAL_ACCURACY = "val/accuracy"
    VAL_LOSS = "val/loss"
    TRAIN_LOSS = "train/loss"
    TEST_ACCURACY = "test/accuracy"
    BINARY_PARAM_FRACTION = "binary/param_fraction"
    BINARY_F1_MEAN = "binary/f1_mean"
    EARLY_EXIT_COMPUTE_99 = "early_exit/compute_at_99pct_accuracy"
    EPOCH_SECONDS = "time/epoch_seconds"
    TRAIN_SECONDS = "time/train_s"  # all epochs of a run
    EVALUATION_SECONDS = "time/evaluation_s"  # the end-of-run evaluation suite
    SWEEP_HYPERVOLUME = "sweep/hypervolume"
    SWEEP_EPOCHS_USED = "sweep/epochs_used"
    SWEEP_TRIALS = "sweep/trials"
    SWEEP_FAILED = "sweep/failed"
    INFEASIBLE = "infeasible"  # a Tune result key: 1.0 when the trial ended on a failed constraint


TEST_PREFIX = "test/"  # test-split metrics: the validation names under this prefix

# What a multi-objective search optimizes unless told otherwise: accuracy against the size of the per-class
# binary classifiers and the compute early exit needs to keep 99% of the accuracy.
DEFAULT_OBJECTIVES: dict[str, str] = {
    Metric.VAL_ACCURACY: "max",
    Metric.BINARY_PARAM_FRACTION: "min",
    Metric.EARLY_EXIT_COMPUTE_99: "min",
}


def tag_column(tag: str) -> str:
    """The column of a tag in a run table (``results.runs``): ``tags.<name>``."""
    return f"tags.{tag}"


def names(namespace: type) -> dict[str, str]:
    """The names a namespace class above defines (attribute -> value)."""
    return {k: v for k, v in vars(namespace).items() if not k.startswith("_") and isinstance(v, str)}
