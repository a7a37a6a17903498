"""The recorded learning-curve benchmark: record it with the project's own sweep, export it to Parquet.

    python benchmarks/record_curves.py record --workdir /tmp/curves     # ~2 hours on 2 quiet cores; resumes
    python benchmarks/record_curves.py export --workdir /tmp/curves     # -> benchmarks/data/quickstart_curves.parquet

``record`` runs ``coded-resnext tune search_spaces/quickstart_curves.yaml`` (a grid of 72 configurations, 27
epochs each, every objective at every epoch: ``tune.record_curves``) inside ``--workdir``, a throwaway directory
outside the repository (its ``runs/`` holds the MLflow store and Tune's state); after a crash it resumes
(``--resume``) by itself, up to ``--retries`` times, and run again after Ctrl-C it continues. ``export`` reads the finished sweep from that MLflow store and writes one
row per (configuration, epoch) with the provenance in the file's metadata (``coded_resnext.orchestration
.simulation.curves``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "search_spaces" / "quickstart_curves.yaml"
OUT = ROOT / "benchmarks" / "data" / "quickstart_curves.parquet"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    rec = sub.add_parser("record", help="run (or resume) the recording sweep in --workdir")
    rec.add_argument("--workdir", type=Path, required=True, help="a throwaway directory outside the repository")
    rec.add_argument("--space", type=Path, default=SPACE)
    rec.add_argument("--num-cpus", type=int, default=2)
    rec.add_argument(
        "--retries", type=int, default=5, help="resume this many times after a crash (e.g. Ray's out-of-memory killer)"
    )
    exp = sub.add_parser("export", help="write the finished recording's curves to Parquet")
    exp.add_argument("--workdir", type=Path, help="the directory `record` ran in (its runs/mlflow.db)")
    exp.add_argument("--tracking-uri", help="or the MLflow store directly")
    exp.add_argument("--space", type=Path, default=SPACE)
    exp.add_argument("--sweep", default=None, help="the sweep's name (default: the space's tune.name)")
    exp.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if args.step == "record":
        return _record(args)
    return _export(args)


def _record(args: argparse.Namespace) -> int:
    work = args.workdir.resolve()
    if ROOT in (work, *work.parents):
        raise SystemExit(
            f"--workdir {work}: choose a directory outside the repository (it holds runs/, hours of state)"
        )
    work.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).with_name("coded-resnext")
    code = 1
    for attempt in range(args.retries + 1):
        command = [str(exe), "tune", str(args.space.resolve()), "--num-cpus", str(args.num_cpus)]
        if (work / "runs" / "ray").is_dir() and any((work / "runs" / "ray").iterdir()):
            command.append("--resume")
        print(f"running (attempt {attempt + 1}):", " ".join(command), f"(in {work})", flush=True)
        code = subprocess.call(command, cwd=work)
        if code in (0, 130):  # done, or Ctrl-C
            return code
    return code


def _export(args: argparse.Namespace) -> int:
    from coded_resnext.orchestration.search_space import load_search_space
    from coded_resnext.orchestration.simulation.curves import export_sweep_curves, write_curves

    if not (args.workdir or args.tracking_uri):
        raise SystemExit("export: give --workdir (where `record` ran) or --tracking-uri")
    uri = args.tracking_uri or f"sqlite:///{(args.workdir / 'runs' / 'mlflow.db').resolve()}"
    space = load_search_space(args.space)
    name = args.sweep or space.name
    frame, provenance = export_sweep_curves(space, uri, name)
    provenance["regenerate"] = (
        "python benchmarks/record_curves.py record --workdir DIR && "
        "python benchmarks/record_curves.py export --workdir DIR"
    )
    write_curves(frame, args.out, provenance)
    size = args.out.stat().st_size
    print(f"{args.out}: {frame['config_id'].nunique()} configurations, {len(frame)} rows, {size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
