"""Reliability: checkpoints survive corruption, full disks and hostile files; tracking survives a
flaky or restarted server and never records a secret; many trials log to a real MLflow server
(PostgreSQL and SQLite backends) and every metric step and artifact arrives exactly once.

Figures for docs/reliability.md come from this file; run it with ``pytest tests/test_reliability.py -v``.
"""

from __future__ import annotations

import errno
import os
import pickle
import socket
import time
import zipfile
from pathlib import Path

import pytest
import torch
from servers import MlflowServer, PostgresCluster, is_loopback, listening_addresses, postgres_unavailable

import coded_resnext.orchestration.checkpoint as ckpt
from coded_resnext.orchestration.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_latest_checkpoint,
    save_checkpoint,
)
from coded_resnext.orchestration.store import TrackingError

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def _state(epoch: int, secret_uri: str = "sqlite:///runs/mlflow.db") -> dict:
    g = torch.Generator().manual_seed(epoch)
    return {
        "model": {"w": torch.randn(64, 32, generator=g), "b": torch.zeros(32), "steps": torch.tensor(epoch)},
        "optimizer": {"state": {0: {"momentum_buffer": torch.ones(3)}}, "param_groups": [{"lr": 0.1, "params": [0]}]},
        "epoch": epoch,
        "run_id": "abc",
        "rng": {"torch": torch.get_rng_state(), "python": "[3, [1, 2, 3], null]"},
        "config": f"tracking:\n  uri: {secret_uri}\n",
        "flags": (True, None, 1.5),
    }


def _assert_same(a, b) -> None:
    assert type(a) is type(b)
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            _assert_same(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    else:
        assert a == b


def _flip_a_byte_in_tensor_data(path: Path) -> None:
    """Corrupt one byte of the largest tensor record inside the checkpoint's zip, leaving the zip
    structure readable: only a checksum can tell."""
    with zipfile.ZipFile(path) as zf:
        info = max((i for i in zf.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    # the record starts after its local header, whose extra field (torch pads it) is read from the file
    raw = bytearray(path.read_bytes())
    name_len = int.from_bytes(raw[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_len = int.from_bytes(raw[info.header_offset + 28 : info.header_offset + 30], "little")
    offset = info.header_offset + 30 + name_len + extra_len
    raw[offset + info.file_size // 2] ^= 0x40
    path.write_bytes(bytes(raw))


# ---- checkpoints ----------------------------------------------------------------------------------
def test_checkpoint_round_trips_exactly_and_keeps_the_last_two(tmp_path):
    for epoch in range(4):
        save_checkpoint(tmp_path, epoch, _state(epoch))
    assert [p.name for p in list_checkpoints(tmp_path)] == ["epoch-0002.pt", "epoch-0003.pt"]
    _assert_same(load_checkpoint(tmp_path / "epoch-0003.pt"), _state(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-0002.pt", "epoch-0003.pt"]  # no temporaries


@pytest.mark.parametrize("damage", ["truncated", "bit-flip", "garbage", "empty"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one_and_says_so(tmp_path, damage, log_lines):
    save_checkpoint(tmp_path, 0, _state(0))
    newest = save_checkpoint(tmp_path, 1, _state(1))
    if damage == "truncated":
        newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    elif damage == "bit-flip":
        _flip_a_byte_in_tensor_data(newest)
    elif damage == "garbage":
        newest.write_bytes(os.urandom(4096))
    else:
        newest.write_bytes(b"")

    with pytest.raises(CheckpointError, match=r"epoch-0001\.pt: (checksum mismatch|corrupt)"):
        load_checkpoint(newest)
    said = log_lines
    path, state = load_latest_checkpoint(tmp_path)
    assert path.name == "epoch-0000.pt"
    _assert_same(state, _state(0))
    assert len(said) == 1 and "epoch-0001.pt" in said[0] and "falling back to epoch-0000.pt" in said[0]
    if damage == "bit-flip":
        assert "checksum mismatch" in said[0]
    # the path-only helper that training uses takes the same fallback
    said.clear()
    assert latest_checkpoint(tmp_path).name == "epoch-0000.pt" and len(said) == 1


def test_when_every_checkpoint_is_corrupt_the_error_names_them_and_the_fix(tmp_path):
    for epoch in range(2):
        save_checkpoint(tmp_path, epoch, _state(epoch)).write_bytes(b"PK\x03\x04broken")
    with pytest.raises(
        CheckpointError, match=r"every checkpoint in .* is corrupt \(epoch-0000.pt, epoch-0001.pt\).*delete"
    ):
        load_latest_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="every checkpoint"):
        latest_checkpoint(tmp_path)


def test_a_full_disk_is_a_clear_error_and_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, 0, _state(0))
    real_save = torch.save

    def save_onto_a_full_disk(obj, f, *args, **kwargs):
        # the real failure: torch writing its zip onto a device with no space left
        with open("/dev/full", "wb") as full:
            real_save(obj, full, *args, **kwargs)

    if not Path("/dev/full").exists():

        def save_onto_a_full_disk(obj, f, *args, **kwargs):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ckpt.torch, "save", save_onto_a_full_disk)
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(tmp_path, 1, _state(1))
    message = str(info.value)
    assert "\n" not in message
    assert "epoch-0001.pt" in message and "disk full" in message
    assert "previous checkpoint is intact" in message and "free space" in message and "--resume" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-0000.pt"]  # no temporary, no partial file
    _assert_same(load_checkpoint(tmp_path / "epoch-0000.pt"), _state(0))


def test_a_temporary_left_by_a_killed_writer_is_cleaned_up(tmp_path):
    save_checkpoint(tmp_path, 0, _state(0))
    leftover = tmp_path / ".epoch-0001.pt.tmp-999999999"  # no such pid
    leftover.write_bytes(b"half a checkpoint")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["epoch-0000.pt"]  # never mistaken for one
    save_checkpoint(tmp_path, 1, _state(1))
    assert not leftover.exists()


class _RunsCode:
    """Unpickling this calls Path.touch(marker): what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("container", ["torch.save", "raw pickle"])
def test_a_checkpoint_crafted_to_run_code_is_refused_and_runs_nothing(tmp_path, container, capsys):
    marker = tmp_path / "pwned"
    evil = {"model": {"w": torch.zeros(2)}, "epoch": 0, "payload": _RunsCode(marker)}
    path = tmp_path / "ckpt" / "epoch-0000.pt"
    path.parent.mkdir()
    if container == "torch.save":
        torch.save(evil, path)
    else:
        path.write_bytes(pickle.dumps(evil))
    # sanity: the file really is armed (plain pickle would run the payload)
    assert b"touch" in path.read_bytes()

    with pytest.raises(CheckpointError, match="corrupt or not a checkpoint"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError):
        load_latest_checkpoint(path.parent)
    from coded_resnext.orchestration.cli import main

    assert main(["extract", "--checkpoint", str(path), "--class", "0", "--out", str(tmp_path / "x.pt2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("coded-resnext: error:") and "Traceback" not in err
    assert not marker.exists()


def test_checkpoints_never_store_tracking_credentials(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "hunter2-very-secret")
    state = _state(0, secret_uri="http://alice:s3cr3t-pw@mlflow.example:5000")
    state["note"] = "token hunter2-very-secret in text"
    path = save_checkpoint(tmp_path, 0, state)
    raw = path.read_bytes()
    assert b"s3cr3t-pw" not in raw and b"hunter2-very-secret" not in raw
    loaded = load_checkpoint(path)
    assert "http://***@mlflow.example:5000" in loaded["config"] and loaded["note"] == "token *** in text"
    _assert_same(loaded["rng"], state["rng"])  # data untouched


# ---- tracking: retries, buffering, secrets (a local store with injected faults) -----------------
class _Outage:
    """Wraps client methods: raises a connection error while ``down``; ``lose_reply`` makes the next
    call reach the store and then fail, as when a server dies after committing but before answering."""

    def __init__(self, tracker, names=("log_batch", "log_artifact", "log_artifacts", "get_run", "set_terminated")):
        import requests

        self.down = False
        self.lose_reply = 0
        self.failures = 0
        self._error = requests.exceptions.ConnectionError
        for name in names:
            setattr(tracker.client, name, self._wrap(getattr(tracker.client, name)))

    def _wrap(self, real):
        def call(*args, **kwargs):
            if self.down:
                self.failures += 1
                raise self._error("Connection refused (injected)")
            result = real(*args, **kwargs)
            if self.lose_reply:
                self.lose_reply -= 1
                self.failures += 1
                raise self._error("Connection reset by peer after commit (injected)")
            return result

        return call


def _tracker(tmp_path, **kwargs):
    from coded_resnext.orchestration.tracking import RunTracker

    kwargs.setdefault("retry_base", 0.01)
    kwargs.setdefault("retry_max", 0.05)
    return RunTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "reliability", **kwargs)


def _history(tracker, key):
    return [(m.step, m.value) for m in tracker.client.get_metric_history(tracker.run_id, key)]


def test_an_outage_is_buffered_and_flushed_in_order_with_every_step_exactly_once(tmp_path, monkeypatch, log_lines):
    monkeypatch.chdir(tmp_path)
    tracker, said = _tracker(tmp_path), log_lines
    outage = _Outage(tracker)
    expected = {}
    for step in range(12):
        if step == 2:
            outage.lose_reply = 1  # committed, reply lost: the resend must not duplicate it
        outage.down = 4 <= step < 8
        values = {"train/loss": 1.0 / (step + 1), "val/accuracy": step / 12}
        for key, value in values.items():
            expected.setdefault(key, []).append((step, value))
        assert tracker.log_metrics(values, step) == 2
        if outage.down:
            assert tracker.pending() > 0  # buffered, training went on
        time.sleep(0.01)
    assert tracker.log_metrics({"train/loss": 9.0}, step=11) == 0  # a (key, step) already taken: dropped
    tracker.finish()
    assert tracker.pending() == 0 and outage.failures >= 3  # the lost reply + knocks during the outage
    for key, rows in expected.items():
        assert _history(tracker, key) == rows, key
    assert tracker.client.get_run(tracker.run_id).info.status == "FINISHED"
    assert tracker.stats.outages >= 1 and tracker.stats.buffered_max >= 4
    assert any("unreachable" in line and "buffering" in line for line in said)
    assert any("is back" in line for line in said)


def test_artifacts_logged_during_an_outage_arrive_after_the_caller_deleted_its_files(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.chdir(tmp_path)
    tracker = _tracker(tmp_path)
    outage = _Outage(tracker)
    outage.down = True
    with tempfile.TemporaryDirectory() as tmp:  # what training does: write, log, delete
        (Path(tmp) / "plots").mkdir()
        (Path(tmp) / "plots" / "a.csv").write_text("x,y\n1,2\n")
        (Path(tmp) / "config.yaml").write_text("seed: 0\n")
        tracker.log_artifacts(Path(tmp) / "plots", "plots")
        tracker.log_artifact(Path(tmp) / "config.yaml")
        assert tracker.pending() == 2
    outage.down = False
    tracker.finish()
    local = Path(tracker.client.download_artifacts(tracker.run_id, "", str(tmp_path / "dl")))
    assert (local / "plots" / "a.csv").read_text() == "x,y\n1,2\n" and (
        local / "config.yaml"
    ).read_text() == "seed: 0\n"
    assert sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file()) == ["config.yaml", "plots/a.csv"]


def test_a_store_that_stays_down_fails_the_flush_with_a_clear_count(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tracker = _tracker(tmp_path, flush_timeout=0.3)
    outage = _Outage(tracker)
    outage.down = True
    tracker.log_metrics({"a": 1.0, "b": 2.0}, 0)
    with pytest.raises(TrackingError, match=r"still unreachable; 2 buffered values were not logged.*--resume"):
        tracker.finish()


def test_a_refusal_is_an_error_not_a_retry(tmp_path, monkeypatch):
    from mlflow.exceptions import MlflowException

    monkeypatch.chdir(tmp_path)
    tracker = _tracker(tmp_path)
    calls = []

    def refuse(*args, **kwargs):
        calls.append(1)
        raise MlflowException.invalid_parameter_value("Changing param values is not allowed")

    tracker.client.log_batch = refuse
    with pytest.raises(TrackingError, match=r"refused metrics.*Changing param values"):
        tracker.log_metrics({"a": 1.0}, 0)
    assert len(calls) == 1 and tracker.pending() == 0


def test_a_server_whose_database_is_out_of_connections_is_retried_not_a_refusal(tmp_path, monkeypatch):
    """MLflow answers 400 when its SQLAlchemy pool times out under load (benchmarks/tracking_load.py, 64
    writers): the batch waits and goes through once the server has a connection again, exactly once."""
    from mlflow.exceptions import RestException

    monkeypatch.chdir(tmp_path)
    tracker = _tracker(tmp_path)
    real, calls = tracker.client.log_batch, []

    def overloaded_then_fine(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RestException(
                {"error_code": "BAD_REQUEST", "message": "QueuePool limit of size 5 overflow 10 reached, connection "
                 "timed out, timeout 30.00 (Background on this error at: https://sqlalche.me/e/21/3o7r)"}
            )  # fmt: skip
        return real(*args, **kwargs)

    tracker.client.log_batch = overloaded_then_fine
    tracker.log_metrics({"a": 1.0}, 0)  # buffered, not raised
    assert tracker.pending() == 1
    tracker.finish()
    assert len(calls) == 2 and [m.step for m in tracker.client.get_metric_history(tracker.run_id, "a")] == [0]


def test_an_unreachable_server_at_start_is_one_clear_line(tmp_path):
    from coded_resnext.orchestration.tracking import RunTracker

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TrackingError, match=r"unreachable for \d+ s.*start the server or check --tracking-uri") as info:
        RunTracker(f"http://u:pw-hidden@127.0.0.1:{port}", "x", connect_timeout=0.5, retry_base=0.1)
    assert "pw-hidden" not in str(info.value) and "\n" not in str(info.value)


def test_no_secret_reaches_params_tags_or_artifacts(tmp_path, monkeypatch, log_lines):
    monkeypatch.chdir(tmp_path)
    secrets = {
        "MLFLOW_TRACKING_PASSWORD": "pw-0123-secret",
        "MLFLOW_TRACKING_TOKEN": "tok-4567-secret",
        "AWS_SECRET_ACCESS_KEY": "aws/8910+secret",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    uri_secret = "http://alice:uri-pass-secret@tracking.example:5000"
    tracker, said = _tracker(tmp_path, tags={"note": f"token {secrets['MLFLOW_TRACKING_TOKEN']}"}), log_lines
    tracker.log_params({"tracking.uri": uri_secret, "seed": 0, "x": f"key={secrets['AWS_SECRET_ACCESS_KEY']}"})
    tracker.set_tags({"store": f"postgresql+psycopg2://mlflow:{secrets['MLFLOW_TRACKING_PASSWORD']}@db/mlflow"})
    art = tmp_path / "art"
    art.mkdir()
    (art / "config.yaml").write_text(f"tracking:\n  uri: {uri_secret}\n  experiment: x\n")
    (art / "clean.txt").write_text("nothing to hide\n")
    (art / "blob.bin").write_bytes(b"\x00\x01" + secrets["MLFLOW_TRACKING_PASSWORD"].encode() + b"\xff")
    tracker.log_artifacts(art)
    tracker.log_artifact(art / "blob.bin", "single")  # alone: nothing left to upload, and no error
    tracker.finish()

    run = tracker.client.get_run(tracker.run_id)
    recorded = [*run.data.params.values(), *run.data.tags.values()]
    local = Path(tracker.client.download_artifacts(tracker.run_id, "", str(tmp_path / "dl")))
    files = {p.name: p.read_bytes() for p in local.rglob("*") if p.is_file()}
    everything = "\n".join(recorded).encode() + b"\n".join(files.values())
    for value in [*secrets.values(), "uri-pass-secret"]:
        assert value.encode() not in everything, value
    assert run.data.params["tracking.uri"] == "http://***@tracking.example:5000" and run.data.params["seed"] == "0"
    assert files["config.yaml"] == b"tracking:\n  uri: http://***@tracking.example:5000\n  experiment: x\n"
    assert files["clean.txt"] == b"nothing to hide\n" and "blob.bin" not in files
    assert sum("blob.bin" in line and "not uploaded" in line for line in said) == 2
    assert (art / "config.yaml").read_text().count("uri-pass-secret") == 1  # the caller's file is untouched


# ---- a training process killed mid-epoch ------------------------------------------------------------
KILL_CONFIG = """\
model: {name: coded_resnext_mini}
data: {name: synthetic, limit_val: 256}
optim: {batch_size: 64}
train: {epochs: 2, progress: line, device: cpu}
eval: {binary_classes: 2, binary_fit_samples: 64, invariance_samples: 16, removal_samples: 64,
       early_exit_thresholds: 5, limit_val: 128}
tracking: {experiment: killed, log_model: false}
"""


@pytest.mark.slow
def test_a_training_process_killed_mid_epoch_resumes_into_the_same_run_without_duplicates(tmp_path):
    import signal
    import subprocess
    import sys

    from mlflow.tracking import MlflowClient

    config = tmp_path / "run.yaml"
    config.write_text(KILL_CONFIG)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    command = [sys.executable, "-m", "coded_resnext.orchestration.cli", "train", str(config), "--tracking-uri", uri]
    command += ["--checkpoint-root", str(tmp_path / "ckpt")]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    log = tmp_path / "first.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 600
        while not list((tmp_path / "ckpt").glob("*/epoch-0000.pt")) and proc.poll() is None:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        assert proc.poll() is None, log.read_text()  # still training: epoch 1 has begun
        bound = listening_addresses(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)  # no cleanup, no finally blocks: a lost worker
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert all(is_loopback(address) for address, _ in bound), bound  # `train` listens on nothing public
    (ckpt_dir,) = (tmp_path / "ckpt").iterdir()
    assert [p.name for p in list_checkpoints(ckpt_dir)] == ["epoch-0000.pt"]  # killed before epoch 1 ended
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("killed").experiment_id])
    assert run.info.status == "RUNNING"  # nobody marked it: the process died
    before = {k: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, k)] for k in run.data.metrics}
    assert before["val/accuracy"] and all(step == 0 for step, _ in before["val/accuracy"])

    resumed = subprocess.run([*command, "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr and "epoch 1 of 2 done" in resumed.stderr
    (after,) = client.search_runs([client.get_experiment_by_name("killed").experiment_id])
    assert after.info.run_id == run.info.run_id and after.info.status == "FINISHED"
    for key in ("train/loss", "val/accuracy", "val/loss"):
        history = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
        assert sorted(step for step, _ in history) == [0, 1], (key, history)
        assert [row for row in history if row[0] == 0] == before[key]  # epoch 0 as logged before the kill
    assert [p.name for p in list_checkpoints(ckpt_dir)] == ["epoch-0000.pt", "epoch-0001.pt"]


# ---- a real tracking server: PostgreSQL or SQLite behind `mlflow server`, trials over HTTP -------

TRIALS = 8
STEPS = 20
KEYS = ("train/loss", "train/coding_loss", "val/accuracy", "val/loss")


@pytest.fixture(scope="module")
def postgres_server(tmp_path_factory):
    if reason := postgres_unavailable():
        pytest.skip(reason)
    with PostgresCluster() as pg:
        uri = pg.create_database("mlflow")
        with MlflowServer(uri, tmp_path_factory.mktemp("pg-artifacts")) as server:
            yield server


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("sqlite-store")
    with MlflowServer(f"sqlite:///{root / 'mlflow.db'}", root / "artifacts") as server:
        yield server


def _value(trial: int, step: int, key: str) -> float:
    return round(1.0 / (1 + step + trial) + KEYS.index(key) * 0.125, 12)


def _trial(uri: str, experiment: str, index: int, *, pace: float = 0.0, progress=None) -> dict:
    """What a training trial logs: params (with a credentialed URI), tags, a batch of metrics per
    step, an artifact mid-run and a directory at the end, each from a temporary directory deleted
    right after the call."""
    import tempfile

    from coded_resnext.orchestration.tracking import RunTracker

    tracker = RunTracker(
        uri,
        experiment,
        run_name=f"trial-{index}",
        tags={"role": "trial", "trial_index": str(index)},
        retry_base=0.2,
        retry_max=2.0,
        flush_timeout=180,
    )
    tracker.log_params({"seed": index, "loss.mu": 6.0, "tracking.uri": "http://bob:do-not-log@h:1"})
    artifacts = {
        "config.yaml": f"seed: {index}\n".encode(),
        "tables/result.csv": f"trial,score\n{index},{index / 10}\n".encode(),
    }
    for step in range(STEPS):
        assert tracker.log_metrics({k: _value(index, step, k) for k in KEYS}, step) == len(KEYS)
        if step == STEPS // 2:
            with tempfile.TemporaryDirectory() as tmp:
                (Path(tmp) / "config.yaml").write_bytes(artifacts["config.yaml"])
                tracker.log_artifact(Path(tmp) / "config.yaml")
        if progress is not None:
            progress(index, step)
        time.sleep(pace)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "result.csv").write_bytes(artifacts["tables/result.csv"])
        tracker.log_artifacts(Path(tmp), "tables")
    loop_done = time.monotonic()
    tracker.finish()
    return {"run_id": tracker.run_id, "artifacts": artifacts, "stats": tracker.stats, "loop_done": loop_done}


def _sweep(uri: str, experiment: str, **kwargs) -> list[dict]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(TRIALS) as pool:
        return list(pool.map(lambda i: _trial(uri, experiment, i, **kwargs), range(TRIALS)))


def _assert_everything_arrived_exactly_once(server: MlflowServer, experiment: str, results: list[dict]) -> None:
    """Read the backend store itself (every metric row, duplicates included) and the artifact
    directory, and compare with what the trials reported."""
    import sqlalchemy
    from mlflow.tracking import MlflowClient

    client = MlflowClient(server.uri)
    exp = client.get_experiment_by_name(experiment)
    runs = {r.info.run_id: r for r in client.search_runs([exp.experiment_id], max_results=1000)}
    assert sorted(runs) == sorted(r["run_id"] for r in results)  # no extra (duplicated) runs
    engine = sqlalchemy.create_engine(server.backend_uri)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sqlalchemy.text(
                    "SELECT m.run_uuid, m.key, m.step, m.value FROM metrics m JOIN runs r ON r.run_uuid = m.run_uuid "
                    "WHERE r.experiment_id = :exp"
                ),
                {"exp": int(exp.experiment_id)},
            ).all()
    finally:
        engine.dispose()
    stored = sorted((run_id, key, step, value) for run_id, key, step, value in rows)
    expected = sorted(
        (r["run_id"], key, step, _value(index, step, key))
        for index, r in enumerate(results)
        for key in KEYS
        for step in range(STEPS)
    )
    assert len(stored) == len(expected) == TRIALS * STEPS * len(KEYS)
    assert stored == expected  # every (run, key, step) exactly once, with the value the trial logged
    for index, result in enumerate(results):
        run = runs[result["run_id"]]
        assert run.info.status == "FINISHED" and run.data.tags["trial_index"] == str(index)
        assert run.data.params["seed"] == str(index) and run.data.params["tracking.uri"] == "http://***@h:1"
        root = server.artifacts / exp.experiment_id / result["run_id"] / "artifacts"
        got = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
        assert got == result["artifacts"], index


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_concurrent_trials_against_a_tracking_server_arrive_exactly_once(backend, request):
    server = request.getfixturevalue(f"{backend}_server")
    assert all(is_loopback(addr) for addr, _ in listening_addresses(server.proc.pid))
    started = time.monotonic()
    results = _sweep(server.uri, f"load-{backend}")
    seconds = time.monotonic() - started
    _assert_everything_arrived_exactly_once(server, f"load-{backend}", results)
    calls = sum(r["stats"].calls for r in results)
    retries = sum(r["stats"].retries for r in results)
    print(
        f"\nFIGURE load {backend}: {TRIALS} concurrent trials x {STEPS} steps x {len(KEYS)} metrics + 2 artifacts "
        f"in {seconds:.1f} s; {calls} client calls, {retries} retried; server start {server.startup_seconds[0]:.1f} s"
    )


@pytest.mark.slow
def test_a_server_killed_and_restarted_mid_sweep_loses_and_duplicates_nothing(postgres_server):
    import signal
    import threading

    reached = threading.Event()
    past_step_4: set[int] = set()

    def progress(index: int, step: int) -> None:
        if step >= 4:  # every trial is past its run's creation and well into its steps
            past_step_4.add(index)
            if len(past_step_4) == TRIALS:
                reached.set()

    def chaos() -> None:
        assert reached.wait(timeout=120)
        postgres_server.stop(signal.SIGKILL)  # a crash, possibly mid-request
        chaos.down_at = time.monotonic()
        postgres_server.start()  # down for as long as a restart takes
        chaos.up_at = time.monotonic()

    killer = threading.Thread(target=chaos)
    killer.start()
    try:
        results = _sweep(postgres_server.uri, "restart", pace=0.1, progress=progress)
    finally:
        killer.join(timeout=180)
    _assert_everything_arrived_exactly_once(postgres_server, "restart", results)
    buffered = [r["stats"].buffered_max for r in results]
    assert all(r["stats"].outages >= 1 for r in results), [r["stats"] for r in results]
    # training went on while the server was down: trials ended their step loops before it was back
    assert sum(r["loop_done"] < chaos.up_at for r in results) >= 1
    print(
        f"\nFIGURE restart: server SIGKILLed at step >= 4 of {STEPS}, down {chaos.up_at - chaos.down_at:.1f} s; "
        f"{TRIALS} trials buffered up to {max(buffered)} items each and flushed; "
        f"{sum(r['stats'].retries for r in results)} retries; nothing lost or duplicated"
    )


@pytest.mark.slow
@pytest.mark.ray
def test_a_tune_sweep_of_8_concurrent_trials_logs_exactly_once_to_the_postgres_backed_server(
    postgres_server, tmp_path, monkeypatch
):
    """The real thing: ``coded-resnext tune``'s sweep, 8 trials at once (a quarter core each), each a
    training run logging over HTTP to the PostgreSQL-backed server; every epoch of every trial arrives
    once and the final values equal what the trials reported to Tune."""
    import yaml
    from mlflow.tracking import MlflowClient

    from coded_resnext.orchestration.ray_runtime import ray_session
    from coded_resnext.orchestration.search_space import load_search_space
    from coded_resnext.orchestration.sweep import Sweep

    monkeypatch.chdir(tmp_path)
    base = {
        "data": {"name": "synthetic", "limit_train": 128, "limit_val": 64},
        "train": {"epochs": 2, "cpus_per_worker": 0.25, "progress": "none"},
        "optim": {"batch_size": 32},
        "eval": {"binary_classes": 1, "binary_fit_samples": 32, "removal_samples": 16, "invariance_samples": 0},
        "tracking": {"experiment": "sweep-pg", "log_model": False},
    }
    doc = {
        "config": base,
        "search": {"loss.mu": {"uniform": [1.0, 8.0]}},
        "tune": {"algorithm": "random", "num_samples": 8, "max_concurrent_trials": 8, "name": "pg"},
    }
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(doc))
    started = time.monotonic()
    with ray_session(None, num_cpus=2):
        outcome = Sweep(load_search_space(tmp_path / "space.yaml"), postgres_server.uri).run()
    seconds = time.monotonic() - started
    assert outcome.failed == 0 and len(outcome.trials) == 8

    client = MlflowClient(postgres_server.uri)
    runs = client.search_runs([client.get_experiment_by_name("sweep-pg").experiment_id])
    trials = [r for r in runs if r.data.tags.get("role") == "trial"]
    assert len(trials) == 8 and all(r.info.status == "FINISHED" for r in runs)
    reported = sorted(round(t["val/accuracy"], 9) for t in outcome.trials)
    assert sorted(round(r.data.metrics["val/accuracy"], 9) for r in trials) == reported
    for run in trials:
        for key in ("val/accuracy", "train/loss", "train/coding_loss"):
            assert sorted(m.step for m in client.get_metric_history(run.info.run_id, key)) == [0, 1], key
        names = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.yaml", "coding_schemes.json", "checkpoint", "tables"} <= names
        assert "plots" not in names  # a search's trial draws none: `report` draws them from the tables
    print(f"\nFIGURE tune sweep on postgres: 8 concurrent trials x 2 epochs, exactly once, in {seconds:.1f} s")
