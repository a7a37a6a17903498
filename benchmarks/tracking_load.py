"""Many trials writing to one MLflow tracking server at once, through ``RunTracker``, quiet and across a
server restart: are metrics lost or doubled, how long does a writer wait per batch, what does the server
burn.

    python benchmarks/tracking_load.py                        # N = 1, 8, 32, 64, each quiet and restarted
    python benchmarks/tracking_load.py --writers 8 --seconds 10 --json load.json

One throwaway PostgreSQL cluster and one ``mlflow server`` (PostgreSQL backend store, proxied artifacts,
``--workers 2``) on 127.0.0.1, started as the tests start them (``tests/servers.py``). For each N, N
simulated trials, each a thread with its own ``RunTracker`` (its own MLflow run), log one batch of
``--metrics`` metrics every 100 ms (fixed schedule: a late batch is sent at once, the count stays
``--seconds`` x 10) and then ``finish()``, which flushes anything buffered. In the restart round the server is
stopped (SIGTERM) a third of the way in and started again on the same port and store; writers buffer
meanwhile, as trials do. Threads, not processes: 64 interpreters that import MLflow would not fit beside
a server on 2 cores; the latencies therefore include the writers' share of one GIL.

Measured per round: values expected (N x batches x metrics) against the rows found in the server's
``metrics`` table (read with psycopg2, duplicates included: lost = expected (run, key, step) without a
row, doubled = rows beyond one per (run, key, step)); the writers' latency per ``log_metrics`` call (p50,
p99, max; a batch buffered while the server is down returns at once, so the restart round's tail is the
calls that met the server as it went down or came back); the time ``finish()`` took (the flush after a
restart); the server's CPU seconds (psutil over the server's process group: the supervisor and its
uvicorn workers) and their share of one core over the round. Traffic goes to 127.0.0.1 only; the count
of calls and the time are bounded by the arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the throwaway PostgreSQL and MLflow server the tests use

from servers import MlflowServer, PostgresCluster, postgres_unavailable  # noqa: E402

MAX_WRITERS = 64
INTERVAL_S = 0.1


def server_cpu_seconds(server: MlflowServer) -> float:
    """CPU time (user + system) of the server's supervisor and every process below it."""
    try:
        root = psutil.Process(server.proc.pid)
        procs = [root, *root.children(recursive=True)]
    except (psutil.NoSuchProcess, AttributeError):
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
        except psutil.NoSuchProcess:
            pass
    return total


class CpuMeter:
    """CPU seconds of the server across restarts: what each incarnation used before it stopped, plus now."""

    def __init__(self, server: MlflowServer) -> None:
        self.server = server
        self.banked = 0.0
        self.start = server_cpu_seconds(server)

    def bank(self) -> None:  # call just before the server is stopped
        self.banked += server_cpu_seconds(self.server) - self.start
        self.start = 0.0

    def reset_after_restart(self) -> None:
        self.start = server_cpu_seconds(self.server)  # a fresh process: its start-up is not the load's

    def total(self) -> float:
        return self.banked + server_cpu_seconds(self.server) - self.start


def writer(uri: str, experiment: str, index: int, batches: int, metrics: int, go: threading.Event, out: dict) -> None:
    from coded_resnext.orchestration.tracking import RunTracker

    tracker = RunTracker(uri, experiment, run_name=f"writer-{index}", flush_timeout=600)
    out["run_id"] = tracker.run_id
    latencies = []
    go.wait()
    started = time.monotonic()
    for step in range(batches):
        due = started + step * INTERVAL_S
        time.sleep(max(0.0, due - time.monotonic()))
        values = {f"load/m{k}": float(index * 1_000_000 + step * 10 + k) for k in range(metrics)}
        t0 = time.perf_counter()
        tracker.log_metrics(values, step=step)
        latencies.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    tracker.finish()
    out.update(latencies=latencies, finish_s=time.perf_counter() - t0, retries=tracker.stats.retries)


def count_rows(pg: PostgresCluster, database: str, run_ids: list[str]) -> tuple[int, int, int]:
    """(rows, distinct (run, key, step), rows beyond one per (run, key, step)) in the server's store."""
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=pg.port, user="postgres", dbname=database)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(*), count(DISTINCT (run_uuid, key, step)) FROM metrics "
                "WHERE run_uuid = ANY(%s) AND key LIKE 'load/%%'",
                (run_ids,),
            )
            rows, distinct = cur.fetchone()
    finally:
        conn.close()
    return rows, distinct, rows - distinct


def one_round(
    server: MlflowServer, pg: PostgresCluster, database: str, n: int, seconds: float, metrics: int, restart: bool
) -> dict:
    experiment = f"load-{n}-{'restart' if restart else 'quiet'}-{time.time_ns()}"
    batches = round(seconds / INTERVAL_S)
    go = threading.Event()
    results = [{} for _ in range(n)]
    threads = [
        threading.Thread(target=writer, args=(server.uri, experiment, i, batches, metrics, go, results[i]), daemon=True)
        for i in range(n)
    ]
    for t in threads:
        t.start()
    while sum("run_id" in r for r in results) < n and any(t.is_alive() for t in threads):
        time.sleep(0.05)  # every run created before the clock starts
    meter = CpuMeter(server)
    wall = time.monotonic()
    go.set()
    down_s = None
    if restart:
        time.sleep(seconds / 3)
        meter.bank()
        stopped = time.monotonic()
        server.stop(signal.SIGTERM)
        server.start()
        down_s = time.monotonic() - stopped
        meter.reset_after_restart()
    for t in threads:
        t.join(timeout=seconds + 900)
    wall = time.monotonic() - wall
    cpu = meter.total()
    done = [r for r in results if "latencies" in r]
    latencies = sorted(x for r in done for x in r["latencies"])
    run_ids = [r["run_id"] for r in results if "run_id" in r]
    rows, distinct, doubled = count_rows(pg, database, run_ids)
    expected = n * batches * metrics

    def pct(q: float) -> float:
        return 1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")

    return {
        "writers": n,
        "restart": restart,
        "batches_per_writer": batches,
        "values_expected": expected,
        "rows_found": rows,
        "lost": expected - distinct,
        "doubled": doubled,
        "writers_finished": len(done),
        "p50_ms": round(pct(0.50), 1),
        "p99_ms": round(pct(0.99), 1),
        "max_ms": round(1000 * latencies[-1], 1) if latencies else None,
        "mean_ms": round(1000 * statistics.fmean(latencies), 1) if latencies else None,
        "finish_max_s": round(max(r["finish_s"] for r in done), 1) if done else None,
        "retries": sum(r.get("retries", 0) for r in done),
        "server_down_s": round(down_s, 1) if down_s is not None else None,
        "wall_s": round(wall, 1),
        "server_cpu_s": round(cpu, 1),
        "server_cpu_pct_of_a_core": round(100 * cpu / wall, 1),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 8, 32, 64], help=f"N (each <= {MAX_WRITERS})")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long each writer logs (<= 120)")
    parser.add_argument("--metrics", type=int, default=4, help="metrics per batch")
    parser.add_argument("--no-restart", action="store_true", help="only the quiet rounds")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    if max(args.writers) > MAX_WRITERS or min(args.writers) < 1 or not 0 < args.seconds <= 120:
        parser.error(f"--writers in 1..{MAX_WRITERS}, --seconds in (0, 120]")
    if reason := postgres_unavailable():
        raise SystemExit(f"tracking_load: {reason}")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import logging
    import tempfile

    logging.basicConfig(level=logging.ERROR)  # the trackers' outage warnings would be 64 lines a round
    rows = []
    with tempfile.TemporaryDirectory(prefix="tracking-load-") as tmp, PostgresCluster() as pg:
        database = "mlflow"
        with MlflowServer(pg.create_database(database), Path(tmp) / "artifacts", workers=2) as server:
            print(f"mlflow server {server.uri} up in {server.startup_seconds[-1]:.0f} s; load {os.getloadavg()}")
            for n in args.writers:
                for restart in (False,) if args.no_restart else (False, True):
                    row = one_round(server, pg, database, n, args.seconds, args.metrics, restart)
                    row["load_avg_1m"] = round(os.getloadavg()[0], 1)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    columns = ["writers", "restart", "values_expected", "rows_found", "lost", "doubled", "p50_ms", "p99_ms",
               "max_ms", "finish_max_s", "server_down_s", "server_cpu_s", "server_cpu_pct_of_a_core", "load_avg_1m"]  # fmt: skip
    print("\n| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
