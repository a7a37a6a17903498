"""Overhead of MLflow system metrics on a quickstart trial: the same training run with
``tracking.system_metrics`` on and off, side by side in one process, interleaved (on, off, off, on, ...)
so drifts of a shared machine hit both alike.

    python benchmarks/system_metrics_overhead.py --pairs 3 --epochs 4           # the measurement (~25 min)
    python benchmarks/system_metrics_overhead.py --pairs 1 --smoke-test --interval 2     # does it work

Prints each run's wall time and the CPU time of this process (every thread: the system-metrics monitor
is a thread of it, so its cost shows there too, and a busy shared machine inflates CPU time far less than
wall time), the medians and their ratios (on / off). The sampling interval is the
default (10 s) unless ``--interval`` says otherwise. Everything runs in a throwaway directory.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from _throwaway import run_in_throwaway_dir  # benchmarks/ itself, on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "search_spaces" / "quickstart_train.yaml"))
    parser.add_argument("--pairs", type=int, default=3, help="runs with and without, interleaved")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--limit-train", type=int, default=None, help="a seeded subset of the training set")
    parser.add_argument("--smoke-test", action="store_true", help="tiny data and evaluation (does it work)")
    parser.add_argument("--interval", type=float, default=10.0, help="system-metrics sampling interval, seconds")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    run_in_throwaway_dir("system-metrics-", lambda work: _measure(args, work), args.json)


def _measure(args: argparse.Namespace, work: Path) -> dict:
    from coded_resnext.orchestration.config import load_config, smoke_test_config
    from coded_resnext.orchestration.training import fit

    times: dict[str, list[float]] = {"on": [], "off": []}
    cpu: dict[str, list[float]] = {"on": [], "off": []}
    order = [("on", "off") if i % 2 == 0 else ("off", "on") for i in range(args.pairs)]
    for i, pair in enumerate(order):
        for setting in pair:
            overrides = [
                f"train.epochs={args.epochs}",
                "train.progress=none",
                "tracking.log_model=false",
                f"tracking.system_metrics={'true' if setting == 'on' else 'false'}",
                f"tracking.system_metrics_interval={args.interval}",
                f"seed={i}",  # each pair its own config hash (checkpoints), the same work for both settings
            ]
            if args.limit_train:
                overrides.append(f"data.limit_train={args.limit_train}")
            cfg = load_config(args.config, overrides)
            if args.smoke_test:
                cfg = smoke_test_config(cfg)
            started, started_cpu = time.perf_counter(), time.process_time()
            fit(cfg, checkpoint_root=work / f"ckpt-{setting}", tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
            seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - started_cpu
            times[setting].append(seconds)
            cpu[setting].append(cpu_seconds)
            print(f"pair {i}: system metrics {setting:>3}: {seconds:7.1f} s wall, {cpu_seconds:7.1f} s CPU", flush=True)
    on, off = statistics.median(times["on"]), statistics.median(times["off"])
    cpu_on, cpu_off = statistics.median(cpu["on"]), statistics.median(cpu["off"])
    print(f"median with system metrics {on:.1f} s, without {off:.1f} s: wall ratio {on / off:.3f}")
    print(f"median CPU with {cpu_on:.1f} s, without {cpu_off:.1f} s: CPU ratio {cpu_on / cpu_off:.3f}")
    return {
        "seconds_on": times["on"],
        "seconds_off": times["off"],
        "cpu_seconds_on": cpu["on"],
        "cpu_seconds_off": cpu["off"],
        "median_ratio_on_off": on / off,
        "median_cpu_ratio_on_off": cpu_on / cpu_off,
    }


if __name__ == "__main__":
    main()
