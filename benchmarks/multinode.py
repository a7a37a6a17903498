"""A sweep on a two-node Ray cluster that shares no disk, end to end, on one machine (run as root):

    python benchmarks/multinode.py                      # about 10 minutes on 2 busy cores
    python benchmarks/multinode.py --keep /tmp/mn       # keep the work directory (logs, reports) to look into
    python benchmarks/multinode.py --json figures.json

What it stands up, all on 127.0.0.1, each stopped through the process (group) it started:

* object storage: moto's S3-compatible server (``python -m moto.server``), buckets ``tune`` and ``mlflow``.
  It stands in for a real object store (S3, GCS), none of which these machines can reach; the code talks
  to it as to S3 (pyarrow for Tune, boto3 inside the MLflow server), pointed there by ``AWS_ENDPOINT_URL``.
* PostgreSQL (a throwaway cluster, as the tests start it) with two databases: ``mlflow`` and ``optuna``.
* an MLflow tracking server: PostgreSQL backend store, artifacts proxied to ``s3://mlflow/``.
* a Ray head (``ray start --head``, no CPUs: the driver's node, where no trial runs) and a Ray worker node
  (2 CPUs) whose raylet runs in its own mount namespace (``unshare --mount``): a private tmpfs over
  ``/tmp`` (the head's Ray session, temporary files and every driver's working directory are not there)
  and a private copy of the checkout bind-mounted over the checkout's path. Every trial runs on it, and
  can only reach what a real remote node could: the servers over the network.

Then, from three working directories that are nothing alike (the worker sees none of them):

1. ``coded-resnext tune`` (driver A) with ``--storage-path s3://tune/sweeps``, ``--tracking-uri`` the
   server and ``--searcher-storage`` the ``optuna`` database, killed outright (SIGKILL of its process
   group) once one trial has finished and another has logged an epoch;
2. the same command with ``--resume`` from driver B's empty directory: a fresh driver with nothing local;
3. ``coded-resnext evaluate --sweep NAME --front`` and ``coded-resnext report`` from directory C.

It prints (and writes to ``--json``) the wall time of each step, where every artifact and checkpoint ended
up (the objects in each bucket by kind, the files in each driver's directory), and the kill-and-resume
outcome: trials finished before the kill and run again, metric steps logged twice, runs left RUNNING,
the interrupted trial continued in its own run, the Optuna study's states. ``tests/test_multinode.py``
runs it and checks those figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the throwaway PostgreSQL and MLflow server the tests use

from servers import MlflowServer, PostgresCluster, free_port, postgres_unavailable  # noqa: E402

SWEEP = "multinode"
TRIALS = 4
# The stand-in's credentials: any value works with moto; long enough to be redacted like a real secret.
S3_KEY, S3_SECRET = "moto-access-key", "moto-secret-access-key"

# The worker node's mount namespace: its own tmpfs (a copy of the checkout, its own /tmp) and nothing of
# the head's /tmp. The checkout's .venv is bound in as it is (a node has the environment installed).
WORKER_NAMESPACE = r"""
set -eu
private=$1; checkout=$2; shift 2
mount -t tmpfs -o size=4g tmpfs "$private"
mkdir -p "$private/checkout" "$private/tmp"
tar -C "$checkout" --exclude=./.venv --exclude=./runs --exclude=./.git -cf - . | tar -C "$private/checkout" -xf -
if [ -d "$checkout/.venv" ]; then
  mkdir -p "$private/checkout/.venv"
  mount --bind "$checkout/.venv" "$private/checkout/.venv"
fi
case "$checkout" in /tmp/*)
  mkdir -p "$private/tmp/${checkout#/tmp/}"
  mount --rbind "$private/checkout" "$private/tmp/${checkout#/tmp/}";;
esac
mount --rbind "$private/checkout" "$checkout"
mount --rbind "$private/tmp" /tmp
cd /tmp
exec "$@"
"""


def unavailable() -> str | None:
    """Why this machine cannot run the stack, or None."""
    if os.geteuid() != 0:
        return "needs root (a mount namespace for the worker node, PostgreSQL as its own user)"
    if shutil.which("unshare") is None:
        return "needs unshare (util-linux)"
    if reason := postgres_unavailable():
        return reason
    try:
        import boto3  # noqa: F401
        import moto  # noqa: F401
    except ImportError as err:
        return f"needs {err.name} (the dev extras: pip install -e '.[dev]')"
    return None


def _space(path: Path) -> Path:
    doc = {
        "base": str(ROOT / "search_spaces" / "quickstart_train.yaml"),
        "config": {  # generated data: nothing on disk for the worker to read
            "data": {"name": "synthetic", "ood": None, "limit_train": 512, "limit_val": 256, "limit_test": 256},
            "train": {"epochs": 2, "cpus_per_worker": 1},
            "optim": {"batch_size": 64, "warmup_epochs": 0.0},
            "tracking": {"experiment": SWEEP, "log_model": False, "system_metrics": False},
            "eval": {
                "binary_classes": 2,
                "binary_fit_samples": 256,
                "invariance_samples": 32,
                "removal_samples": 128,
                "early_exit_thresholds": 6,
                "limit_val": 256,
            },
        },
        "search": {"loss.mu": {"loguniform": [1.0, 12.0]}, "loss.p_drop": {"choice": [0.0, 0.1, 0.2]}},
        "tune": {"name": SWEEP, "algorithm": "motpe", "num_samples": TRIALS, "max_concurrent_trials": 2},
    }
    path.write_text(yaml.safe_dump(doc))
    return path


class Stack:
    """Every process this script starts, stopped in reverse order through its own process group."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.groups: list[tuple[str, subprocess.Popen]] = []
        self.exits: contextlib.ExitStack = contextlib.ExitStack()

    def spawn(self, name: str, argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - closed with the stack
        self.exits.callback(log.close)
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.groups.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 60) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        time.sleep(1)  # children of the group (raylet, GCS) that outlive their parent briefly
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    def close(self) -> None:
        for _name, proc in reversed(self.groups):
            self.stop(proc)
        self.exits.close()


def _wait_http(url: str, timeout: float, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(Exception), urllib.request.urlopen(url, timeout=2):
            return
        time.sleep(0.3)
    raise RuntimeError(f"{what} not up after {timeout:.0f} s")


def _wait_nodes(address: str, count: int, env: dict[str, str], timeout: float) -> None:
    probe = (
        "import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR', include_dashboard=False);"
        "print(sum(n['Alive'] for n in ray.nodes()))"
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = subprocess.run([sys.executable, "-c", probe, address], env=env, capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.strip().splitlines()[-1:] == [str(count)]:
            return
        time.sleep(2)
    raise RuntimeError(f"the Ray cluster at {address} did not reach {count} nodes in {timeout:.0f} s")


def _files(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


def _objects(s3, bucket: str) -> list[str]:
    keys, token = [], None
    while True:
        page = s3.list_objects_v2(Bucket=bucket, **({"ContinuationToken": token} if token else {}))
        keys += [o["Key"] for o in page.get("Contents", [])]
        token = page.get("NextContinuationToken")
        if not token:
            return keys


def _kind(key: str) -> str:
    """What an object is, by where it sits (for the table of where everything ended up)."""
    name = key.rsplit("/", 1)[-1]
    if key.endswith("/"):
        return "directory markers"  # pyarrow's create_dir on an object store: an empty object per folder
    if "/checkpoint_" in key:
        return "trial checkpoint files"
    for prefix, kind in (
        ("experiment_state", "Tune experiment state"),
        ("searcher-state", "searcher state"),
        ("callback-states", "Tune callback state"),
        (".validate_storage_marker", "Tune's storage check"),
        ("search_gen_state", "search generator state"),
        ("tuner.pkl", "tuner"),
        ("trainable.pkl", "trainable"),
        ("basic-variant-state", "variant state"),
    ):
        if name.startswith(prefix):
            return kind
    if "/artifacts/" in key:
        part = key.split("/artifacts/", 1)[1].split("/", 1)[0]
        return f"MLflow artifact: {part}"
    return f"other: {name}"


def measure(work: Path) -> dict:
    import boto3
    import optuna
    from mlflow.tracking import MlflowClient

    started = time.monotonic()
    figures: dict = {"phases_s": {}}
    phase_start = started

    def phase(name: str) -> None:
        nonlocal phase_start
        figures["phases_s"][name] = round(time.monotonic() - phase_start, 1)
        phase_start = time.monotonic()

    stack = Stack(work)
    try:
        # ---- object storage (moto stands in for S3) ------------------------------------------------
        s3_port = free_port()
        endpoint = f"http://127.0.0.1:{s3_port}"
        s3_env = {
            "AWS_ACCESS_KEY_ID": S3_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,  # pyarrow (Tune storage) and boto3
            "MLFLOW_S3_ENDPOINT_URL": endpoint,  # MLflow's artifact repository (inside the server)
        }
        env = {**os.environ, **s3_env, "MLFLOW_DISABLE_TELEMETRY": "true", "RAY_USAGE_STATS_ENABLED": "0"}
        env["RAY_AUTH_MODE"] = "disabled"  # loopback only: the nodes, the drivers and this script
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
        moto = stack.spawn(
            "moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)], env, work
        )
        _wait_http(endpoint, 120, moto, "moto server")
        s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=S3_KEY, aws_secret_access_key=S3_SECRET)
        for bucket in ("tune", "mlflow"):
            s3.create_bucket(Bucket=bucket)
        # ---- PostgreSQL and the tracking server -------------------------------------------------------
        pg = stack.exits.enter_context(PostgresCluster())
        tracking_db, optuna_url = pg.create_database("mlflow"), pg.create_database("optuna")
        server = stack.exits.enter_context(
            MlflowServer(tracking_db, "s3://mlflow/", workers=2, env=s3_env, log_dir=stack.logs)
        )
        uri = server.uri
        phase("servers_up")
        # ---- Ray: a head without CPUs, a worker node that sees none of the head's files ----------------
        ray_bin = [sys.executable, "-m", "ray.scripts.scripts"]  # the `ray` command of this interpreter's Ray
        port = free_port()
        address = f"127.0.0.1:{port}"
        stack.spawn(
            "ray-head",
            [*ray_bin, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "0",
             "--include-dashboard=false", "--disable-usage-stats", "--block"],
            env, work,
        )  # fmt: skip
        private = work / "worker-private"
        private.mkdir()
        stack.spawn(
            "ray-worker",
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", WORKER_NAMESPACE, "worker-namespace",
             str(private), str(ROOT),
             *ray_bin, "start", "--address", address, "--node-ip-address", "127.0.0.1", "--num-cpus", "2",
             "--disable-usage-stats", "--block"],
            env, work,
        )  # fmt: skip
        _wait_nodes(address, 2, env, 300)
        phase("ray_cluster_up")
        # ---- driver A, killed --------------------------------------------------------------------------
        space = _space(work / "space.yaml")
        drivers = {name: work / f"driver-{name}" for name in "abc"}
        for directory in drivers.values():
            directory.mkdir()
        command = [
            sys.executable, "-m", "coded_resnext.orchestration.cli", "tune", str(space), "--address", address,
            "--storage-path", "s3://tune/sweeps", "--tracking-uri", uri, "--searcher-storage", optuna_url,
        ]  # fmt: skip
        client = MlflowClient(uri)

        def trial_runs():
            with contextlib.suppress(Exception):
                exp = client.get_experiment_by_name(SWEEP)
                runs = client.search_runs([exp.experiment_id]) if exp else []
                return [r for r in runs if r.data.tags.get("role") == "trial"]
            return []

        driver = stack.spawn("driver-a", command, env, drivers["a"])
        deadline = time.monotonic() + 1200
        midway = None
        while time.monotonic() < deadline and driver.poll() is None:
            runs = trial_runs()
            finished = [r for r in runs if r.info.status == "FINISHED"]
            running = [r for r in runs if r.info.status == "RUNNING" and "train/loss" in r.data.metrics]
            if finished and running:
                midway = running[0].info.run_id
                break
            time.sleep(1)
        stack.stop(driver, signal.SIGKILL)
        figures["driver_a_exit"] = driver.returncode
        before = {r.info.run_id: r.info.end_time for r in trial_runs() if r.info.status == "FINISHED"}
        figures["trials_finished_before_the_kill"] = len(before)
        figures["interrupted_trial_epochs_before_the_kill"] = (
            len(client.get_metric_history(midway, "train/loss")) if midway else 0
        )
        phase("driver_a_until_killed")
        # ---- driver B: --resume from a fresh directory --------------------------------------------------
        resumed = stack.spawn("driver-b", [*command, "--resume"], env, drivers["b"])
        resumed.wait(timeout=1800)
        figures["resume_exit"] = resumed.returncode
        phase("driver_b_resume")
        runs = trial_runs()
        figures["trial_runs"] = len(runs)
        figures["trial_runs_finished"] = sum(r.info.status == "FINISHED" for r in runs)
        figures["runs_left_running"] = sum(r.info.status == "RUNNING" for r in runs)
        figures["finished_trials_run_again"] = sum(
            client.get_run(run_id).info.end_time != end for run_id, end in before.items()
        )
        doubled = 0
        for run in runs:
            for key in ("train/loss", "val/accuracy"):
                steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
                doubled += len(steps) - len(set(steps))
        figures["metric_steps_logged_twice"] = doubled
        if midway:
            resumed_run = client.get_run(midway)
            figures["interrupted_trial_finished_in_its_own_run"] = resumed_run.info.status == "FINISHED"
            figures["interrupted_trial_epochs_after"] = sorted(
                m.step for m in client.get_metric_history(midway, "train/loss")
            )
        states = Counter(t.state.name for t in optuna.load_study(study_name=SWEEP, storage=optuna_url).trials)
        figures["optuna_trial_states"] = dict(states)
        # ---- directory C: the front on the test split, and the report -----------------------------------
        cli = [sys.executable, "-m", "coded_resnext.orchestration.cli"]
        evaluate = stack.spawn(
            "driver-c-evaluate", [*cli, "evaluate", "--sweep", SWEEP, "--front", "--tracking-uri", uri], env,
            drivers["c"],
        )  # fmt: skip
        figures["evaluate_front_exit"] = evaluate.wait(timeout=1200)
        report = stack.spawn(
            "driver-c-report", [*cli, "report", SWEEP, "--out", "report", "--tracking-uri", uri], env, drivers["c"]
        )
        figures["report_exit"] = report.wait(timeout=1200)
        phase("driver_c_evaluate_and_report")
        # ---- where everything ended up ------------------------------------------------------------------
        figures["objects"] = {
            bucket: dict(Counter(_kind(k) for k in _objects(s3, bucket))) for bucket in ("tune", "mlflow")
        }
        figures["tune_experiment_prefixes"] = sorted(
            {k.split("/")[1] for k in _objects(s3, "tune") if k.count("/") > 1}
        )
        figures["files_in_driver_directories"] = {name: _files(d) for name, d in drivers.items()}
        figures["checkpoints_on_s3"] = figures["objects"]["tune"].get("trial checkpoint files", 0)
        figures["wall_s"] = round(time.monotonic() - started, 1)
    finally:
        stack.close()
    return figures


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="work in this new directory under /tmp and keep it")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if reason := unavailable():
        raise SystemExit(f"multinode: {reason}")
    json_out = args.json.resolve() if args.json else None
    if args.keep:
        work = args.keep.resolve()
        if not str(work).startswith("/tmp/"):
            raise SystemExit("multinode: --keep must be under /tmp (the worker node hides /tmp, and so the drivers)")
        work.mkdir(parents=True)
        figures = measure(work)
    else:
        with tempfile.TemporaryDirectory(prefix="multinode-", dir="/tmp", ignore_cleanup_errors=True) as tmp:
            figures = measure(Path(tmp))
    print(json.dumps(figures, indent=1))
    if json_out:
        json_out.write_text(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    main()
