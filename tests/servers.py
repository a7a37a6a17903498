"""Throwaway tracking servers for tests, as a cluster would run them, all on 127.0.0.1.

``PostgresCluster``: a fresh PostgreSQL cluster in a temporary directory (``initdb``, then the
``postgres`` server as a child process), on a free port, trust auth, fsync off. PostgreSQL refuses to
run as root, so when the tests run as root both run as the ``postgres`` user (``Popen(user=...)``,
which is what ``runuser -u postgres`` does, without a wrapper process between us and the server).

``MlflowServer``: ``mlflow server`` with a backend store (a PostgreSQL database or a SQLite file) and
proxied artifacts in a local directory, so metrics and artifacts both travel over HTTP. It can be
stopped (gracefully or with SIGKILL, as a crash) and restarted on the same port and store mid-test.

Both are stopped through the process (group) they started, never by name. Use them as context managers
or call ``start``/``stop``; ``postgres_unavailable()`` gives a skip reason when this machine cannot run
PostgreSQL. Reuse from another test module (``tests/`` is on ``sys.path`` under pytest)::

    from servers import MlflowServer, PostgresCluster, postgres_unavailable

    @pytest.fixture(scope="module")
    def tracking_server(tmp_path_factory):
        if reason := postgres_unavailable():
            pytest.skip(reason)
        with PostgresCluster() as pg, MlflowServer(pg.create_database("sweep"), tmp_path_factory.mktemp("art")) as srv:
            yield srv  # srv.uri is http://127.0.0.1:<port>; srv.restart() / srv.stop(signal.SIGKILL) for faults

``listening_addresses(pid)`` lists the TCP addresses a process group listens on (``/proc``), to check
that nothing binds beyond loopback.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PG_USER = "postgres"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin(name: str) -> str | None:
    """A PostgreSQL program: Debian's versioned directory (newest first), else PATH."""
    for directory in sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(Path(d).parent.name), reverse=True
    ):
        if os.access(Path(directory) / name, os.X_OK):
            return str(Path(directory) / name)
    return shutil.which(name)


def postgres_unavailable() -> str | None:
    """Why a throwaway PostgreSQL cannot run here, or None when it can."""
    missing = [name for name in ("initdb", "postgres") if _pg_bin(name) is None]
    if missing:
        return f"PostgreSQL binaries not found ({', '.join(missing)}); install Debian's postgresql package"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            return "running as root and there is no 'postgres' user to run PostgreSQL as"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "psycopg2 is not installed (pip install psycopg2-binary)"
    return None


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait(check, proc: subprocess.Popen, log: Path, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} while starting:\n{_tail(log)}")
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready after {timeout:.0f} s:\n{_tail(log)}")


class PostgresCluster:
    """A PostgreSQL cluster that lives as long as this object is started."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port
        self.root: Path | None = None
        self.proc: subprocess.Popen | None = None
        self._log = None

    def _as_pg_user(self) -> dict:
        if os.geteuid() != 0:
            return {}
        entry = pwd.getpwnam(PG_USER)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def start(self) -> PostgresCluster:
        if reason := postgres_unavailable():
            raise RuntimeError(reason)
        self.root = Path(tempfile.mkdtemp(prefix="coded-resnext-pg-"))  # under /tmp: postgres can reach it
        if os.geteuid() == 0:
            entry = pwd.getpwnam(PG_USER)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        data = self.root / "data"
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "HOME": str(self.root)}
        subprocess.run(
            [_pg_bin("initdb"), "-D", str(data), "-U", PG_USER, "-A", "trust", "--no-sync", "--locale=C", "-E", "UTF8"],
            cwd=self.root,
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
            **self._as_pg_user(),
        )
        self.port = self.port or free_port()
        log_path = self.root / "postgres.log"
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                _pg_bin("postgres"),
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-k",
                str(self.root),  # unix socket beside the data, not in /var/run
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            cwd=self.root,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            **self._as_pg_user(),
        )
        _wait(self._accepts_connections, self.proc, log_path, "postgres", timeout=60)
        return self

    def _connect(self, dbname: str = "postgres"):
        import psycopg2

        return psycopg2.connect(host="127.0.0.1", port=self.port, user=PG_USER, dbname=dbname, connect_timeout=2)

    def _accepts_connections(self) -> bool:
        try:
            self._connect().close()
            return True
        except Exception:
            return False

    def create_database(self, name: str) -> str:
        """A new empty database; returns its SQLAlchemy URI with the driver named (psycopg2)."""
        conn = self._connect()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.uri(name)

    def uri(self, dbname: str) -> str:
        # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; name the installed driver.
        return f"postgresql+psycopg2://{PG_USER}@127.0.0.1:{self.port}/{dbname}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # "fast" shutdown: disconnect clients, stop cleanly
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> PostgresCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


class MlflowServer:
    """``mlflow server`` on 127.0.0.1 with ``backend_uri`` as its store and proxied artifacts under
    ``artifacts`` (a local directory, or an object-store URI such as ``s3://bucket/prefix`` with ``env``
    naming its endpoint and credentials, and ``log_dir`` for the server's log); ``restart()`` brings it
    back on the same port and store."""

    def __init__(
        self,
        backend_uri: str,
        artifacts: Path | str,
        *,
        port: int | None = None,
        workers: int = 1,
        env: dict[str, str] | None = None,
        log_dir: Path | None = None,
    ) -> None:
        self.backend_uri = backend_uri
        self.artifacts = artifacts if "://" in str(artifacts) else Path(artifacts)
        self.port = port or free_port()
        self.workers = workers
        self.env = dict(env or {})
        self.proc: subprocess.Popen | None = None
        log_dir = Path(log_dir) if log_dir is not None else Path(self.artifacts).parent
        self.log_path = log_dir / f"mlflow-server-{self.port}.log"
        self._log = None
        self.starts = 0
        self.startup_seconds: list[float] = []

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                return response.status == 200
        except Exception:
            return False

    def start(self, timeout: float = 120) -> MlflowServer:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("mlflow server already running")
        if isinstance(self.artifacts, Path):
            self.artifacts.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env, "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1"}
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--backend-store-uri",
                self.backend_uri,
                "--serve-artifacts",
                "--artifacts-destination",
                str(self.artifacts),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
                # clients keep connections alive; without a bound, a graceful stop waits on them
                "--uvicorn-opts",
                "--timeout-graceful-shutdown 2",
            ],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: uvicorn's workers stop with it
        )
        _wait(self._healthy, self.proc, self.log_path, "mlflow server", timeout)
        self.starts += 1
        self.startup_seconds.append(time.monotonic() - started)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        """Stop the server's process group with ``sig`` (SIGKILL: a crash), and wait until it is gone."""
        proc, self.proc = self.proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)  # the group this object created (start_new_session)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            deadline = time.monotonic() + timeout  # uvicorn workers may outlive the supervisor briefly
            while _group_alive(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self, sig: int = signal.SIGTERM, down_for: float = 0.0) -> None:
        self.stop(sig)
        time.sleep(down_for)
        self.start()

    def __enter__(self) -> MlflowServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


def _group_members(pgid: int) -> list[int]:
    members = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            text = Path(stat).read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":  # fields: state, ppid, pgrp, ...
            members.append(int(Path(stat).parent.name))
    return members


def _group_alive(pgid: int) -> bool:
    return bool(_group_members(pgid))


def listening_addresses(pgid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state held by a process in group ``pgid``."""
    inodes: set[str] = set()
    for pid in _group_members(pgid):
        for fd in glob.glob(f"/proc/{pid}/fd/*"):
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] != "0A" or cols[9] not in inodes:  # 0A: LISTEN
                    continue
                hex_addr, hex_port = cols[1].split(":")
                raw = bytes.fromhex(hex_addr)
                # /proc stores each 32-bit word in host (little-endian) order
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                found.add((socket.inet_ntop(family, raw), int(hex_port, 16)))
    return found


def is_loopback(address: str) -> bool:
    return address.startswith("127.") or address in ("::1", "::ffff:127.0.0.1") or address.startswith("::ffff:127.")
