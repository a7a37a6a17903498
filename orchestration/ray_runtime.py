"""Connecting to Ray: a local instance started for this command, or an existing cluster (``--address``).

Trials and workers keep the driver's working directory (``RAY_CHDIR_TO_TRIAL_DIR=0``), so relative
paths in configs mean the same thing everywhere on one machine; on a cluster, paths must be shared
(see docs/cluster.md). Worker output is not forwarded to the driver: progress comes from our one-line
Tune callback, and a failed trial's error file is named at the end.

Before anything starts, the places a cluster must reach are tried with a bounded time-out, each a one-line
error otherwise: the Ray address (``check_address``: Ray itself would retry an address that refuses
connections for minutes) and an object-store storage path (``check_storage``: its endpoint, credentials
and bucket, through the same pyarrow filesystem Tune uses).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pyarrow
import pyarrow.fs
import ray

from coded_resnext.orchestration.errors import UserError

JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by Ray's job supervisor for a job's driver only
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
    """Ray for the duration of a command; shuts down only what it started.

    Without ``address``, a command run as a Ray Job (``ray job submit -- coded-resnext tune ...``) joins the
    cluster the job runs on: Ray's job supervisor names it in ``RAY_ADDRESS``; anywhere else a new local
    instance is started."""
    quiet_ray_env()
    if not address and os.environ.get(JOB_CONFIG_ENV) and os.environ.get("RAY_ADDRESS"):
        address = os.environ["RAY_ADDRESS"]  # the GCS of the cluster this job's driver runs on

    if ray.is_initialized():  # a caller (e.g. a test) already connected
        yield
        return
    if address:
        check_address(address)
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


ADDRESS_TIMEOUT_S = 10.0
_DEFAULT_PORTS = {"ray://": 10001, "": 6379}  # Ray Client's server; the GCS of `ray start --head`


def check_address(address: str) -> None:
    """A Ray address that nothing answers at is a one-line error after ``ADDRESS_TIMEOUT_S``; ``auto`` and
    ``local`` are Ray's to resolve (it fails at once when no cluster runs on this machine)."""
    if address in ("auto", "local"):
        return
    scheme = "ray://" if address.startswith("ray://") else ""
    body = address.removeprefix(scheme).split("/", 1)[0]
    host, _, port = body.rpartition(":") if ":" in body else (body, "", "")
    try:
        port_number = int(port) if port else _DEFAULT_PORTS[scheme]
    except ValueError:
        raise UserError(f"--address {address}: not host:port (e.g. 10.0.0.5:6379, ray://head:10001 or auto)") from None
    try:
        with socket.create_connection((host or "127.0.0.1", port_number), timeout=ADDRESS_TIMEOUT_S):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise UserError(
            f"--address {address}: no Ray cluster answers at {host or '127.0.0.1'}:{port_number} ({reason}); start one "
            "with `ray start --head` there, or leave --address out for a local Ray"
        ) from None


_BUCKET_SCHEMES = ("s3", "gs", "gcs", "abfs", "abfss")  # the path's first part is a bucket (container)


def check_storage(uri: str) -> None:
    """An object-store storage path (``s3://``, ``gs://``, ...) that cannot be listed (an endpoint that does
    not answer, a missing bucket, refused credentials) is a one-line error before Ray starts; a prefix that
    does not exist yet is fine. Local paths are created by Tune."""
    if "://" not in uri:
        return
    try:
        fs, path = pyarrow.fs.FileSystem.from_uri(uri)
        bucket = path.split("/", 1)[0]
        if uri.split("://", 1)[0] in _BUCKET_SCHEMES and fs.get_file_info(bucket).type == pyarrow.fs.FileType.NotFound:
            raise OSError(f"bucket {bucket!r} does not exist")
        fs.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))
    except (OSError, pyarrow.ArrowException, ValueError) as err:
        reason = " ".join(str(err).split())
        if "NO_SUCH_BUCKET" in reason or "does not exist" in reason:
            fix = "create the bucket first, or fix its name"
        else:
            fix = "check the endpoint (AWS_ENDPOINT_URL for an S3-compatible server), credentials and network"
        raise UserError(f"--storage-path {uri}: cannot use it ({reason[:200]}); {fix}") from None


def storage_uri(path: str | None, default: Path) -> str:
    """``train``/``tune`` storage: an object-store URI as given (s3://, gs://, ...), a local path made absolute."""
    if path and "://" in path:
        return path
    return str(Path(path or default).expanduser().resolve())
