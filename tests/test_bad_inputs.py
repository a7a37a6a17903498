"""A corpus of bad inputs through the command line: each ends in one line naming the problem (and the
fix), a non-zero exit, no traceback, and leaves the tracking store and earlier results untouched.

Every case runs ``orchestration.cli.main`` in-process from a workspace that already holds an MLflow
store with a finished run, a checkpoint and a results directory; their bytes are compared before and
after. Cases are plain ``Case`` entries in per-topic lists; append to them (the search-space list is
for ``tune``/``ablate`` inputs).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from coded_resnext.orchestration.cli import main

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

# ``{d}``: the case's own scratch directory (for its bad files); ``{ws}``: the shared workspace.
TRAIN = ["train", "{d}/run.yaml", "--checkpoint-root", "{d}/ckpt", "--tracking-uri", "sqlite:///{ws}/runs/mlflow.db"]
QUICK = "data: {name: synthetic}\ntrain: {epochs: 1, progress: none}\ntracking: {log_model: false}\n"


@dataclasses.dataclass
class Case:
    id: str
    argv: list[str]
    problem: str  # a fragment of the message that names the problem
    fix: str | None = None  # a fragment that names the fix (None: the problem's wording is the fix)
    files: dict[str, str | bytes] = dataclasses.field(default_factory=dict)  # written under {d} first
    setup: Callable[[Path, pytest.MonkeyPatch], None] | None = None
    usage: bool = False  # an argument-syntax error: argparse's usage line and exit 2


def _idx_images(count: int, size: int = 28) -> bytes:
    return struct.pack(">HBBIII", 0, 0x08, 3, count, size, size) + bytes(count * size * size)


def _idx_labels(count: int) -> bytes:
    return struct.pack(">HBBI", 0, 0x08, 1, count) + bytes(count)


FASHION = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _no_system_fashion_mnist(d: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide Debian's /usr/share copy, so only data.root is searched."""
    import coded_resnext.datasets.fashion_mnist as fm

    monkeypatch.setattr(fm, "SYSTEM_DIRS", ())


def _corrupt_only_checkpoint(d: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from coded_resnext.orchestration.config import load_config
    from coded_resnext.orchestration.training import checkpoint_dir_for

    cfg = load_config(d / "run.yaml")
    directory = checkpoint_dir_for(cfg, d / "ckpt")
    directory.mkdir(parents=True)
    (directory / "epoch-0000.pt").write_bytes(b"PK\x03\x04 this is not a checkpoint")


CONFIG_CASES = [
    Case(
        "config-unknown-key",
        TRAIN,
        "model.nme: unknown key",
        "valid keys in model: name",
        {"run.yaml": "model: {nme: x}\n"},
    ),
    Case("config-wrong-type", TRAIN, "loss.mu: must be a number, got 'high'", None, {"run.yaml": "loss: {mu: high}\n"}),
    Case(
        "config-bad-value",
        TRAIN,
        "loss.p_drop: must be in [0, 1), got 1.5",
        None,
        {"run.yaml": "loss: {p_drop: 1.5}\n"},
    ),
    Case("config-malformed-yaml", TRAIN, "malformed YAML at line 2", None, {"run.yaml": "model: {name: [\n"}),
    Case("config-not-a-mapping", TRAIN, "expected a mapping of sections", "model:, data:", {"run.yaml": "- a\n- b\n"}),
    Case("config-missing-file", TRAIN, "no such config file", None),
    Case("config-is-a-directory", ["train", "{d}"], "is a directory, expected a YAML file", None),
    Case(
        "config-unknown-preset",
        TRAIN,
        "unknown preset 'resnet9000'",
        "choose one of",
        {"run.yaml": "model: {name: resnet9000}\n"},
    ),
    Case(
        "config-unknown-dataset",
        TRAIN,
        "unknown dataset 'mnist-nope'",
        "choose one of",
        {"run.yaml": "data: {name: mnist-nope}\n"},
    ),
    Case("config-section-not-mapping", TRAIN, "loss: must be a mapping", None, {"run.yaml": "loss: 3\n"}),
    Case(
        "config-bad-literal",
        TRAIN,
        "train.device: must be one of",
        "'auto', 'cpu', 'cuda'",
        {"run.yaml": "train: {device: tpu}\n"},
    ),
    Case(
        "override-without-equals",
        [*TRAIN, "--set", "loss.mu"],
        "expected section.key=value",
        "--set loss.mu=3",
        {"run.yaml": QUICK},
    ),
    Case("override-into-a-value", [*TRAIN, "--set", "seed.x=1"], "seed: must be an integer", None, {"run.yaml": QUICK}),
    Case(
        "override-out-of-range",
        [*TRAIN, "--set", "train.epochs=0"],
        "train.epochs: must be >= 1",
        None,
        {"run.yaml": QUICK},
    ),
    Case(
        "override-momentum-out-of-range",
        [*TRAIN, "--set", "optim.momentum=1"],
        "optim.momentum: must be in [0, 1), got 1",
        None,
        {"run.yaml": QUICK},
    ),
    Case(
        "config-stage-not-in-model",
        TRAIN,
        "has no stage c5",
        "its stages are",
        {"run.yaml": QUICK + "coding: {c5: paper:cifar10/5/10}\n"},
    ),
    Case(
        "config-removal-block-out-of-range",
        TRAIN,
        "eval.removal_block=9: model coded_resnext_mini has 4 coded blocks",
        "null for all of them",
        {"run.yaml": QUICK + "eval: {removal_block: 9}\n"},
    ),
    Case(
        "config-randaugment-magnitude-above-timms-scale",
        TRAIN,
        "data.randaugment: magnitude M must be in 0..10",
        None,
        {"run.yaml": QUICK.replace("{name: synthetic}", "{name: synthetic, randaugment: [3, 11]}")},
    ),
    Case(
        "config-randaugment-negative-n",
        TRAIN,
        "data.randaugment: must be [N, M] with N, M >= 0",
        None,
        {"run.yaml": QUICK.replace("{name: synthetic}", "{name: synthetic, randaugment: [-1, 4]}")},
    ),
    Case(
        "config-unknown-branch-merge",
        TRAIN,
        "model.branch_merge: must be one of",
        "'sum', 'concat'",
        {"run.yaml": QUICK + "model: {branch_merge: mean}\n"},
    ),
    Case(
        "config-scheme-runs-miss-the-stage-depth",
        TRAIN,
        "coding.c4: the runs cover 3 blocks but stage c4 of coded_resnext_mini has 2",
        "make their blocks add up to 2",
        {"run.yaml": QUICK + "coding: {c4: [{scheme: paper:cifar10/3/10, blocks: 3}]}\n"},
    ),
]

SCHEME_CASES = [
    Case("scheme-malformed-json", ["codes", "check", "{d}/s.json"], "malformed JSON", None, {"s.json": "{oops"}),
    Case(
        "scheme-duplicate-codewords",
        ["codes", "check", "{d}/s.json"],
        "distinct",
        None,
        {"s.json": '{"codewords": ["1100", "1100"]}'},
    ),
    Case(
        "scheme-ragged-codewords",
        ["codes", "check", "{d}/s.json"],
        "same length",
        None,
        {"s.json": '{"codewords": ["1100", "011"]}'},
    ),
    Case(
        "scheme-non-binary", ["codes", "check", "{d}/s.json"], "2", None, {"s.json": '{"codewords": ["1120", "0110"]}'}
    ),
    Case(
        "scheme-unequal-weights",
        ["codes", "check", "{d}/s.json"],
        "rule A",
        None,
        {"s.json": '{"codewords": ["1100", "1000"]}'},
    ),
    Case("scheme-empty", ["codes", "check", "{d}/s.json"], "codeword", None, {"s.json": '{"codewords": []}'}),
    Case("scheme-not-an-object", ["codes", "check", "{d}/s.json"], "s.json", None, {"s.json": "[1, 2, 3]"}),
    Case("scheme-missing-file", ["codes", "check", "{d}/none.json"], "no such file", None),
    Case("scheme-unknown-published-name", ["codes", "check", "paper:cifar10/9/99"], "paper:cifar10/9/99", None),
    Case(
        "scheme-bad-file-in-config",
        TRAIN,
        "distinct",
        None,
        {"run.yaml": QUICK + "coding: {c3: '{d}/dup.json'}\n", "dup.json": '{"codewords": ["1100", "1100"]}'},
    ),
    Case(
        "scheme-missing-file-in-config",
        TRAIN,
        "none.json",
        None,
        {"run.yaml": QUICK + "coding: {c3: '{d}/none.json'}\n"},
    ),
]

DATA_CASES = [
    Case(
        "data-fashion-empty-root",
        TRAIN,
        "data.root={d}/empty holds no Fashion-MNIST IDX files",
        "fix the path",
        {
            "run.yaml": "data: {name: fashion-mnist, root: '{d}/empty'}\ntrain: {epochs: 1, progress: none}\n",
            "empty/.keep": "",
        },
        _no_system_fashion_mnist,
    ),
    Case(
        "data-fashion-garbage-idx",
        TRAIN,
        "not an IDX file",
        "corrupt or wrong file",
        {"run.yaml": "data: {name: fashion-mnist, root: '{d}/fm'}\ntrain: {epochs: 1, progress: none}\n"}
        | {f"fm/{name}": b"this is not an idx file at all" for name in FASHION},
        _no_system_fashion_mnist,
    ),
    Case(
        "data-fashion-truncated-idx",
        TRAIN,
        "train-images-idx3-ubyte is corrupt or truncated",
        "fetch the file again",
        {"run.yaml": "data: {name: fashion-mnist, root: '{d}/fm'}\ntrain: {epochs: 1, progress: none}\n"}
        | {
            "fm/train-images-idx3-ubyte": _idx_images(100)[:5000],
            "fm/train-labels-idx1-ubyte": _idx_labels(100),
            "fm/t10k-images-idx3-ubyte": _idx_images(10),
            "fm/t10k-labels-idx1-ubyte": _idx_labels(10),
        },
        _no_system_fashion_mnist,
    ),
    Case(
        "data-fashion-gzip-corrupt",
        TRAIN,
        "cannot read IDX file",
        "fetch it again",
        {"run.yaml": "data: {name: fashion-mnist, root: '{d}/fm'}\ntrain: {epochs: 1, progress: none}\n"}
        | {f"fm/{name}.gz": gzip.compress(_idx_labels(10))[:-12] for name in FASHION},
        _no_system_fashion_mnist,
    ),
    Case(
        "data-imagefolder-empty-tree",
        TRAIN,
        "no usable class folders",
        None,
        {
            "run.yaml": "data: {name: imagefolder, root: '{d}/tree'}\ntrain: {epochs: 1, progress: none}\n",
            "tree/train/.keep": "",
        },
    ),
    Case(
        "data-root-typo",
        TRAIN,
        "data.root={d}/typo does not exist",
        "fix the path",
        {"run.yaml": "data: {name: fashion-mnist, root: '{d}/typo'}\ntrain: {epochs: 1, progress: none}\n"},
    ),
    Case(
        "data-val-fraction-one",
        [*TRAIN, "--set", "data.val_fraction=1"],
        "data.val_fraction: must be in [0, 1), got 1",
        None,
        {"run.yaml": QUICK},
    ),
    Case(
        "data-val-fraction-negative",
        [*TRAIN, "--set", "data.val_fraction=-0.1"],
        "data.val_fraction: must be in [0, 1), got -0.1",
        None,
        {"run.yaml": QUICK},
    ),
    Case(
        "data-imagefolder-no-root",
        TRAIN,
        "imagefolder needs data.root=DIR",
        None,
        {"run.yaml": "data: {name: imagefolder}\ntrain: {epochs: 1, progress: none}\n"},
    ),
]

CHECKPOINT_CASES = [
    Case(
        "extract-unknown-run",
        [
            "extract",
            "--run-id",
            "0123456789abcdef",
            "--class",
            "0",
            "--out",
            "{d}/x.pt2",
            "--tracking-uri",
            "sqlite:///{ws}/runs/mlflow.db",
        ],
        "run 0123456789abcdef: no final checkpoint found",
        None,
    ),
    Case(
        "extract-missing-checkpoint",
        ["extract", "--checkpoint", "{d}/nope.pt", "--class", "0", "--out", "{d}/x.pt2"],
        "no such checkpoint",
        "check the path",
    ),
    Case(
        "extract-corrupt-checkpoint",
        ["extract", "--checkpoint", "{d}/bad.pt", "--class", "0", "--out", "{d}/x.pt2"],
        "corrupt or not a checkpoint",
        "previous checkpoint",
        {"bad.pt": b"\x80\x04garbage"},
    ),
    Case(
        "extract-class-out-of-range",
        ["extract", "--checkpoint", "{ws}/good.pt", "--class", "99", "--out", "{d}/x.pt2"],
        "--class 99 out of range",
        "classes 0..9",
    ),
    Case(
        "extract-out-dir-missing",
        ["extract", "--checkpoint", "{ws}/good.pt", "--class", "0", "--out", "{d}/no/x.pt2"],
        "does not exist",
        "create it first",
    ),
    Case(
        "train-resume-without-checkpoint",
        [*TRAIN, "--resume"],
        "--resume: no checkpoint",
        "run without --resume",
        {"run.yaml": QUICK},
    ),
    Case(
        "train-resume-only-corrupt-checkpoint",
        [*TRAIN, "--resume"],
        "every checkpoint in",
        "delete the directory",
        {"run.yaml": QUICK},
        _corrupt_only_checkpoint,
    ),
]

EVALUATE = ["evaluate", "--tracking-uri", "sqlite:///{ws}/runs/mlflow.db"]
EVALUATE_CASES = [
    Case(
        "evaluate-unknown-run",
        [*EVALUATE, "--run-id", "0123456789abcdef"],
        "run 0123456789abcdef: no such run",
        "check the id",
    ),
    Case("evaluate-run-without-checkpoint", [*EVALUATE, "--run-id", "{run:earlier}"], "has no final checkpoint", None),
    Case("evaluate-unfinished-run", [*EVALUATE, "--run-id", "{run:unfinished}"], "is RUNNING", "only a finished run"),
    Case(
        "evaluate-twice-without-force",
        [*EVALUATE, "--run-id", "{run:tested}"],
        "already has test figures",
        "pass --force",
    ),
    Case("evaluate-unknown-sweep", [*EVALUATE, "--sweep", "nope", "--front"], "no sweep named 'nope'", None),
    Case(
        "evaluate-unfinished-sweep",
        [*EVALUATE, "--sweep", "halfway", "--front"],
        "sweep 'halfway' is RUNNING",
        "--resume",
    ),
    Case("evaluate-sweep-without-front", [*EVALUATE, "--sweep", "halfway"], "--sweep NAME needs --front", "--all"),
    Case("evaluate-all-without-sweep", [*EVALUATE, "--run-id", "x", "--all"], "--all goes with --sweep", None),
    Case("evaluate-front-without-sweep", [*EVALUATE, "--run-id", "x", "--front"], "--front goes with --sweep", None),
]

CLI_CASES = [
    Case(
        "codes-negative-classes",
        ["codes", "generate", "--classes", "-3", "-N", "10", "-A", "3", "--out", "{d}/s.json"],
        "-3",
        None,
    ),
    Case(
        "codes-zero-active", ["codes", "generate", "-K", "10", "-N", "10", "-A", "0", "--out", "{d}/s.json"], "0", None
    ),
    Case(
        "codes-active-above-branches",
        ["codes", "generate", "-K", "10", "-N", "4", "-A", "5", "--out", "{d}/s.json"],
        "5",
        None,
    ),
    Case(
        "codes-out-dir-missing",
        ["codes", "generate", "-K", "4", "-N", "4", "-A", "2", "--out", "{d}/no/s.json"],
        "does not exist",
        "create it first",
    ),
    Case("bench-unknown-preset", ["bench", "model", "--preset", "nope"], "unknown preset 'nope'", "choose one of"),
    Case(
        "bench-zero-batch",
        ["bench", "model", "--preset", "coded_resnext_mini", "--batch-size", "0"],
        "--batch-size 0: must be >= 1",
        None,
    ),
    Case(
        "tracking-uri-unsupported",
        [*TRAIN, "--tracking-uri", "ftp://nowhere/x"],
        "ftp://nowhere/x",
        "sqlite:///",
        {"run.yaml": QUICK},
    ),
    Case("usage-unknown-command", ["frobnicate"], "invalid choice", usage=True),
    Case("usage-train-without-config", ["train"], "the following arguments are required: config", usage=True),
    Case(
        "usage-classes-not-an-integer",
        ["codes", "generate", "-K", "ten", "-N", "4", "-A", "2", "--out", "x"],
        "invalid int value",
        usage=True,
    ),
    Case(
        "usage-extract-two-sources",
        ["extract", "--run-id", "a", "--checkpoint", "b", "--class", "0", "--out", "x"],
        "not allowed with",
        usage=True,
    ),
]

# `tune SEARCH_SPACE.yaml` / `ablate ABLATION.yaml` inputs: append Case(...) entries here.
TUNE = ["tune", "{d}/space.yaml", "--tracking-uri", "sqlite:///{d}/other.db"]
ABLATE = ["ablate", "{d}/abl.yaml", "--tracking-uri", "sqlite:///{d}/other.db"]
SEARCH_SPACE_CASES: list[Case] = [
    Case("space-missing-file", TUNE, "no such search-space file", None),
    Case("space-malformed-yaml", TUNE, "malformed YAML", None, {"space.yaml": "search: {loss.mu: [\n"}),
    Case(
        "space-unknown-section",
        TUNE,
        "unknown section(s) ['serch']",
        "valid: base, config, search, tune",
        {"space.yaml": "serch: {}\n"},
    ),
    Case(
        "space-unknown-domain",
        TUNE,
        "search.loss.mu: unknown domain 'normal'",
        "choose one of",
        {"space.yaml": "search: {loss.mu: {normal: [0, 1]}}\n"},
    ),
    Case(
        "space-reversed-range",
        TUNE,
        "search.loss.mu: uniform needs low < high",
        None,
        {"space.yaml": "search: {loss.mu: {uniform: [3, 1]}}\n"},
    ),
    Case(
        "space-unknown-key",
        TUNE,
        "loss.mew: unknown key",
        "valid keys in loss",
        {"space.yaml": "search: {loss.mew: {choice: [1, 2]}}\n"},
    ),
    Case(
        "space-unbuildable-scheme",
        TUNE,
        "coding.c3='paper:cifar100/8/20'",
        "100",
        {"space.yaml": "search: {coding.c3: {choice: ['paper:cifar100/8/20']}}\n"},
    ),
    Case(
        "space-grid-with-optuna",
        TUNE,
        "grid values need tune.algorithm random or grid",
        "use choice",
        {"space.yaml": "search: {seed: {grid: [0, 1]}}\ntune: {algorithm: optuna}\n"},
    ),
    Case(
        "space-asha-multi-objective",
        TUNE,
        "tune.scheduler: ASHA stops trials on one metric",
        "not nsga2",
        {"space.yaml": "search: {loss.mu: {choice: [1]}}\ntune: {algorithm: nsga2, scheduler: asha}\n"},
    ),
    Case(
        "space-missing-base",
        TUNE,
        "base config 'nope.yaml' not found",
        None,
        {"space.yaml": "base: nope.yaml\nsearch: {loss.mu: {choice: [1]}}\n"},
    ),
    Case(
        "space-search-without-val-split",
        TUNE,
        "data.val_fraction is 0, but a search needs a validation split",
        "set it in (0, 1)",
        {"space.yaml": "config: {data: {val_fraction: 0}}\nsearch: {loss.mu: {choice: [1]}}\n"},
    ),
    Case(
        "ablation-without-val-split",
        ABLATE,
        "data.val_fraction is 0, but an ablation needs a validation split",
        "set it in (0, 1)",
        {"abl.yaml": "config: {data: {val_fraction: 0}}\ngrid: {loss.mu: [1, 3]}\n"},
    ),
    Case(
        "space-resume-nothing",
        [*TUNE, "--resume", "--storage-path", "{d}/ray"],
        "nothing to resume",
        "without --resume",
        {"space.yaml": "search: {loss.mu: {choice: [1]}}\n"},
    ),
    Case(
        "space-unknown-scheduler",
        TUNE,
        "tune.scheduler: must be one of",
        "moasha",
        {"space.yaml": "search: {loss.mu: {choice: [1]}}\ntune: {scheduler: hyperband}\n"},
    ),
    Case(
        "space-moasha-one-objective",
        TUNE,
        "moasha ranks several objectives",
        "use asha",
        {
            "space.yaml": "search: {loss.mu: {choice: [1]}}\n"
            "tune: {algorithm: motpe, scheduler: moasha, objectives: {val/accuracy: max}}\n"
        },
    ),
    Case(
        "space-moasha-grace-period",
        TUNE,
        "tune.grace_period=3 must be below tune.max_t=2",
        None,
        {
            "space.yaml": "config: {train: {epochs: 2}}\nsearch: {loss.mu: {choice: [1]}}\n"
            "tune: {algorithm: random, scheduler: moasha, grace_period: 3}\n"
        },
    ),
    Case(
        "space-constraint-unknown-metric",
        TUNE,
        "tune.constraints.val/accuracy: unknown metric",
        "binary/param_fraction",
        {"space.yaml": "search: {loss.mu: {choice: [1]}}\ntune: {constraints: {val/accuracy: '>= 0.9'}}\n"},
    ),
    Case(
        "space-constraint-bad-bound",
        TUNE,
        "cannot parse '<= half'",
        'e.g. "<= 0.5"',
        {"space.yaml": "search: {loss.mu: {choice: [1]}}\ntune: {constraints: {binary/param_fraction: '<= half'}}\n"},
    ),
    Case(
        "space-reference-point-length",
        TUNE,
        "tune.reference_point: needs one value per objective",
        None,
        {"space.yaml": "search: {loss.mu: {choice: [1]}}\ntune: {algorithm: motpe, reference_point: [0, 1]}\n"},
    ),
    Case("ablation-no-cells", ABLATE, "needs a grid or variants", None, {"abl.yaml": "seeds: [0, 1]\n"}),
    Case(
        "ablation-repeated-seed",
        ABLATE,
        "repeats a seed",
        "distinct seeds",
        {"abl.yaml": "grid: {loss.mu: [1, 3]}\nseeds: [0, 0]\n"},
    ),
]


def _study_of_another_space(d: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An Optuna study named like the sweep ('space'), made by another search space."""
    import optuna

    study = optuna.create_study(study_name="space", storage=f"sqlite:///{d}/s.db", directions=["maximize"])
    study.set_user_attr("search_space_hash", "0123456789ab")


MOTPE = "search: {loss.mu: {uniform: [1, 3]}}\ntune: {algorithm: optuna, searcher_storage: '%s'}\n"
OBSERVABILITY_CASES: list[Case] = [
    Case(
        "system-metrics-interval-zero",
        TRAIN,
        "tracking.system_metrics_interval: must be > 0 seconds",
        None,
        {"run.yaml": QUICK + "tracking: {system_metrics_interval: 0}\n"},
    ),
    Case(
        "searcher-storage-malformed",
        TUNE,
        "not a database URL",
        "postgresql+psycopg2://",
        {"space.yaml": MOTPE % "not a url"},
    ),
    Case(
        "searcher-storage-unknown-kind",
        TUNE,
        "unknown database kind 'oracle+nothing'",
        "postgresql+psycopg2://",
        {"space.yaml": MOTPE % "oracle+nothing://u@h/db"},
    ),
    Case(
        "searcher-storage-unreachable",
        TUNE,
        "cannot connect",
        "check the host, port",
        {"space.yaml": MOTPE % "postgresql+psycopg2://nobody@127.0.0.1:1/optuna"},
    ),
    Case(
        "searcher-storage-missing-dir",
        TUNE,
        "its directory does not exist",
        "create it",
        {"space.yaml": MOTPE % "sqlite:///{d}/no/such/dir/s.db"},
    ),
    Case(
        "searcher-study-of-another-space",
        TUNE,
        "was made by another search space",
        "set tune.name",
        {"space.yaml": MOTPE % "sqlite:///{d}/s.db"},
        setup=_study_of_another_space,
    ),
    Case(
        "searcher-storage-flag-malformed",
        [*TUNE, "--searcher-storage", "nope"],
        "not a database URL",
        None,
        {"space.yaml": "search: {loss.mu: {uniform: [1, 3]}}\ntune: {algorithm: optuna}\n"},
    ),
]


def _no_cuda(d: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


# Issue 18: the GPU train path and early exit.
EXTRACT_EE = ["extract", "--checkpoint", "{ws}/good.pt", "--early-exit", "--out", "{d}/ee.pt2"]
BENCH_EE = ["bench", "early-exit", "--preset", "coded_resnext_mini"]
ACCELERATION_CASES = [
    Case(
        "train-fp16-without-cuda",
        TRAIN,
        "train.precision=fp16 needs a CUDA GPU",
        "use train.precision=bf16",
        {"run.yaml": QUICK.replace("progress: none", "progress: none, precision: fp16")},
        _no_cuda,
    ),
    Case(
        "config-fp16-on-cpu-device",
        TRAIN,
        "train.precision: fp16 needs a CUDA GPU",
        "use bf16",
        {"run.yaml": QUICK.replace("progress: none", "progress: none, precision: fp16, device: cpu")},
    ),
    Case(
        "config-sync-batchnorm-one-worker",
        TRAIN,
        "train.sync_batchnorm: needs train.num_workers > 1",
        "set it false",
        {"run.yaml": QUICK.replace("progress: none", "progress: none, sync_batchnorm: true")},
    ),
    Case("extract-ee-threshold-not-a-number", [*EXTRACT_EE, "--threshold", "high"], "--threshold 'high': not a number"),
    Case(
        "extract-ee-threshold-wrong-length",
        [*EXTRACT_EE, "--threshold", "0.2,0.3"],
        "2 per-block values but the model has 4 coded blocks",
        "give one number or 4 comma-separated",
    ),
    Case(
        "extract-ee-at-accuracy-above-1", [*EXTRACT_EE, "--at-accuracy", "1.5"], "--at-accuracy 1.5: must be in (0, 1]"
    ),
    Case("extract-ee-at-accuracy-zero", [*EXTRACT_EE, "--at-accuracy", "0"], "--at-accuracy 0.0: must be in (0, 1]"),
    Case(
        "extract-ee-run-without-curve",
        EXTRACT_EE,
        "has no tables/early_exit_curve.csv",
        "give --threshold instead",
    ),
    Case(
        "extract-threshold-without-early-exit",
        ["extract", "--checkpoint", "{ws}/good.pt", "--class", "0", "--threshold", "0.3", "--out", "{d}/x.pt2"],
        "choose an early-exit operating point",
        "give them with --early-exit",
    ),
    Case("bench-ee-threshold-not-a-number", [*BENCH_EE, "--threshold", "x"], "--threshold 'x': not a number"),
    Case(
        "bench-ee-threshold-wrong-length",
        [*BENCH_EE, "--threshold", "0.1,0.2,0.3"],
        "3 per-block values but the model has 4 coded blocks",
    ),
    Case("bench-ee-exit-rate-out-of-range", [*BENCH_EE, "--exit-rate", "1.2"], "--exit-rate 1.2: must be in (0, 1)"),
    Case(
        "bench-ee-at-accuracy-needs-a-run",
        [*BENCH_EE, "--at-accuracy", "0.99"],
        "--at-accuracy reads a run's validation curve",
        "give --run-id or --checkpoint",
    ),
    Case(
        "bench-ee-thread-clock-needs-one-thread",
        [*BENCH_EE, "--clock", "thread-cpu"],
        "--clock thread-cpu measures one thread's CPU time",
        "give --threads 1",
    ),
    Case(
        "usage-extract-class-and-early-exit",
        ["extract", "--checkpoint", "b", "--class", "0", "--early-exit", "--out", "x"],
        "not allowed with",
        usage=True,
    ),
]


def _s3_endpoint_nobody_answers(d: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An S3-compatible endpoint on a closed loopback port (what a mistyped AWS_ENDPOINT_URL gives)."""
    for key, value in {"AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ACCESS_KEY_ID": "testing"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


ONE_TRIAL = "search: {loss.mu: {choice: [1]}}\ntune: {num_samples: 1}\n"
# Issue 20: what a cluster throws. A missing bucket needs an S3 server: test_missing_bucket_is_one_line below.
CLUSTER_CASES = [
    Case(
        "ray-address-refuses-connections",
        [*TUNE, "--address", "127.0.0.1:1", "--storage-path", "{d}/ray"],
        "--address 127.0.0.1:1: no Ray cluster answers at 127.0.0.1:1",
        "ray start --head",
        {"space.yaml": ONE_TRIAL},
    ),
    Case(
        "ray-address-not-host-port",
        [*TUNE, "--address", "head:port", "--storage-path", "{d}/ray"],
        "--address head:port: not host:port",
        "ray://head:10001",
        {"space.yaml": ONE_TRIAL},
    ),
    Case(
        "storage-s3-endpoint-unreachable",
        [*TUNE, "--storage-path", "s3://bucket/sweeps"],
        "--storage-path s3://bucket/sweeps: cannot use it",
        "check the endpoint (AWS_ENDPOINT_URL",
        {"space.yaml": ONE_TRIAL},
        _s3_endpoint_nobody_answers,
    ),
    Case(
        "train-storage-s3-endpoint-unreachable",
        [*TRAIN, "--set", "train.num_workers=2", "--storage-path", "s3://bucket/train"],
        "--storage-path s3://bucket/train: cannot use it",
        "check the endpoint",
        {"run.yaml": QUICK},
        _s3_endpoint_nobody_answers,
    ),
    Case(
        "searcher-storage-no-answer",
        TUNE,
        "cannot connect",
        "check the host, port",
        {"space.yaml": MOTPE % "postgresql+psycopg2://nobody@10.255.255.1:5432/optuna"},  # unroutable: time-out
    ),
    Case(
        "config-model-too-large-for-memory",
        [*TRAIN, "--set", "model.width_multiplier=1000"],
        "model.width_multiplier=1000: training needs about",
        "choose a smaller width multiplier",
        {"run.yaml": QUICK},
    ),
    Case(
        "config-batch-too-large-for-memory",
        [*TRAIN, "--set", "optim.batch_size=50000000"],
        "optim.batch_size=50000000: training needs about",
        "choose a smaller batch",
        {"run.yaml": QUICK},
    ),
]

CASES = (
    CONFIG_CASES
    + SCHEME_CASES
    + DATA_CASES
    + CHECKPOINT_CASES
    + EVALUATE_CASES
    + CLI_CASES
    + SEARCH_SPACE_CASES
    + OBSERVABILITY_CASES
    + ACCELERATION_CASES
    + CLUSTER_CASES
)


# ---- the workspace: an MLflow store with a finished run, a checkpoint, earlier results ---------------
@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    from coded_resnext.orchestration.build import build_model
    from coded_resnext.orchestration.checkpoint import save_checkpoint
    from coded_resnext.orchestration.config import load_config
    from coded_resnext.orchestration.tracking import RunTracker

    ws = tmp_path_factory.mktemp("workspace")
    cwd = os.getcwd()
    os.chdir(ws)
    try:
        tracker = RunTracker(f"sqlite:///{ws}/runs/mlflow.db", "earlier", run_name="earlier")
        tracker.log_params({"seed": 0})
        tracker.log_metrics({"val/accuracy": 0.5}, 0)
        (ws / "results").mkdir()
        (ws / "results" / "runs.csv").write_text("run,accuracy\nearlier,0.5\n")
        tracker.log_artifact(ws / "results" / "runs.csv")
        tracker.finish()
        runs = {"earlier": tracker.run_id}
        tested = RunTracker(f"sqlite:///{ws}/runs/mlflow.db", "earlier", run_name="tested")
        tested.log_metrics({"val/accuracy": 0.5, "test/accuracy": 0.5}, 0)
        tested.finish()
        unfinished = RunTracker(f"sqlite:///{ws}/runs/mlflow.db", "earlier", run_name="unfinished")
        unfinished.flush()  # left RUNNING
        sweep = RunTracker(f"sqlite:///{ws}/runs/mlflow.db", "earlier", tags={"role": "sweep", "sweep": "halfway"})
        sweep.flush()  # an interrupted sweep: its parent run is RUNNING
        runs.update(tested=tested.run_id, unfinished=unfinished.run_id)
        (ws / "run_ids.json").write_text(json.dumps(runs))
        cfg = load_config(None, ["data.name=synthetic"])
        model = build_model(cfg, 10, 1)
        state = {
            "model": model.state_dict(),
            "epoch": 0,
            "run_id": tracker.run_id,
            "config": cfg.to_yaml(),
            "num_classes": 10,
            "in_chans": 1,
            "image_size": 28,
            "schemes": json.dumps({stage: s.to_dict() for stage, s in model.schemes.items()}),
        }
        save_checkpoint(ws / "ckpt", 0, state).rename(ws / "good.pt")
    finally:
        os.chdir(cwd)
    return ws


def _snapshot(ws: Path) -> dict[str, str]:
    """Every file under the workspace with the SHA-256 of its bytes (the store, artifacts, results)."""
    return {
        str(p.relative_to(ws)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(ws.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize(
    "case",
    [c for c in CASES],
    ids=[c.id for c in CASES],
)
def test_bad_input_is_one_line_nonzero_no_traceback_and_changes_nothing(case, workspace, tmp_path, monkeypatch, capsys):
    _check(case, workspace, tmp_path, monkeypatch, capsys)


def _check(case: Case, workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    d = tmp_path
    for name, content in case.files.items():
        path = d / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content.replace("{d}", str(d)))
    if case.setup is not None:
        case.setup(d, monkeypatch)
    argv = [arg.replace("{d}", str(d)).replace("{ws}", str(workspace)) for arg in case.argv]
    for name, run_id in json.loads((workspace / "run_ids.json").read_text()).items():  # runs of the workspace
        argv = [arg.replace(f"{{run:{name}}}", run_id) for arg in argv]
    monkeypatch.chdir(workspace)  # the default store runs/mlflow.db and results/ are the workspace's
    before = _snapshot(workspace)
    capsys.readouterr()

    try:
        code = main(argv)
    except SystemExit as exit:  # argparse's own usage errors
        code = exit.code
    out, err = capsys.readouterr()

    assert code not in (0, None), (case.id, out, err)
    assert "Traceback" not in err and "Traceback" not in out
    lines = [line for line in err.splitlines() if line.strip()]
    if case.usage:
        assert code == 2 and lines[0].startswith("usage: coded-resnext") and lines[-1].startswith("coded-resnext")
        assert "error:" in lines[-1] and case.problem in lines[-1], err
    else:
        assert len(lines) == 1, err
        assert lines[0].startswith("coded-resnext: error: "), err
        assert case.problem.replace("{d}", str(d)) in lines[0], err
        if case.fix:
            assert case.fix in lines[0], err
    assert _snapshot(workspace) == before  # the store, its artifacts and the results are untouched
    assert not list(d.rglob("*.pt2"))  # no half-made output either
    if case.id.startswith("codes-"):
        assert not list(d.rglob("s.json"))


def test_the_corpus_covers_every_kind_of_input():
    kinds = {"config": CONFIG_CASES, "scheme": SCHEME_CASES, "data": DATA_CASES, "checkpoint": CHECKPOINT_CASES}
    assert all(kinds.values()) and len(CASES) >= 25 and len({c.id for c in CASES}) == len(CASES)


@pytest.fixture(scope="module")
def s3_server():
    """moto's S3-compatible server on 127.0.0.1 (a stand-in for an object store), stopped after the module."""
    from moto.server import ThreadedMotoServer
    from servers import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_a_storage_path_in_a_missing_bucket_is_one_line(s3_server, workspace, tmp_path, monkeypatch, capsys):
    def endpoint(d: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        _s3_endpoint_nobody_answers(d, monkeypatch)
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)

    case = Case(
        "storage-s3-missing-bucket",
        [*TUNE, "--storage-path", "s3://no-such-bucket/sweeps"],
        "--storage-path s3://no-such-bucket/sweeps: cannot use it",
        "create the bucket first",
        {"space.yaml": ONE_TRIAL},
        endpoint,
    )
    _check(case, workspace, tmp_path, monkeypatch, capsys)
