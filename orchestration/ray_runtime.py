"""Connecting to Ray: a local instance started for this command, or an existing cluster (``--address``).

Trials and workers keep the driver's working directory (``RAY_CHDIR_TO_TRIAL_DIR=0``), so relative
paths in configs mean the same thing everywhere on one machine; on a cluster, paths must be shared
(see docs/cluster.md). Worker output is not forwarded to the driver: progress comes from our one-line
Tune callback, and a failed trial's error file is named at the end.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import ray

from coded_resnext.orchestration.errors import UserError

WORKER_ENV = {
    "RAY_CHDIR_TO_TRIAL_DIR": "0",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PYTHONWARNINGS": "ignore::DeprecationWarning,ignore::FutureWarning",
}


def quiet_ray_env() -> None:
    """Process-level settings for the driver, before Ray is imported."""
    for key, value in WORKER_ENV.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no CSV/JSON/TensorBoard trial loggers
    # Per-epoch reports carry accuracy; the binary/early-exit objectives arrive with the last epoch.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    # Save the experiment state on every controller step (each trial start, result and end), not every
    # 10+ s: a driver killed in between would otherwise forget trials that started or finished.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "0")


@contextlib.contextmanager
def ray_session(address: str | None, num_cpus: int | None = None, log_to_driver: bool = False) -> Iterator[None]:
    """Ray for the duration of a command; shuts down only what it started."""
    quiet_ray_env()

    if ray.is_initialized():  # a caller (e.g. a test) already connected
        yield
        return
    kwargs = {
        "runtime_env": {"env_vars": dict(WORKER_ENV)},
        "log_to_driver": log_to_driver,
        "include_dashboard": False,
        "configure_logging": True,
        "logging_level": "ERROR",
    }
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            # "local": always a new instance; plain ray.init() would attach to any cluster already running
            # on this machine (another user's `ray start`, another sweep), with its resources and state.
            ray.init(address="local", num_cpus=num_cpus, **kwargs)
    except ConnectionError as err:
        raise UserError(
            f"--address {address}: cannot connect to a Ray cluster ({err}); is `ray start` running there?"
        ) from None
    try:
        yield
    finally:
        ray.shutdown()


def storage_uri(path: str | None, default: Path) -> str:
    """``train``/``tune`` storage: an object-store URI as given (s3://, gs://, ...), a local path made absolute."""
    if path and "://" in path:
        return path
    return str(Path(path or default).expanduser().resolve())
