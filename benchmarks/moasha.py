"""MO-ASHA against full-budget searches: hypervolume of the finished trials' front against epochs used.

Three arms over the quickstart's search space (Fashion-MNIST, coded_resnext_mini, same number of
configurations, same concurrency), each on every seed: multi-objective TPE with MO-ASHA early stopping,
multi-objective TPE at full budget, random search at full budget. Every sweep logs ``sweep/hypervolume``
and ``sweep/epochs_used`` to its parent run after each trial ends; this script reads those curves.
Epochs are counted, not seconds, so a busy machine cannot bias the comparison.

Goal (issue 16): MO-ASHA reaches >= 95% of the full-budget (motpe) hypervolume with <= 50% of its epochs.

    python benchmarks/moasha.py --configs 16 --concurrent 2 --seeds 0 1 2 --json moasha.json --plot moasha.png
    python benchmarks/moasha.py --smoke-test --configs 4 --seeds 0        # the whole path in a few minutes
    python benchmarks/moasha.py --rung-cost                               # one quickstart trial, in-process
    python benchmarks/moasha.py --merge a.json b.json --plot all.png      # arms run separately, one table

``--rung-cost`` times, on one quickstart trial after one training epoch, the light rung evaluation against the
epoch's training pass, its per-epoch validation pass and the end-of-run suite (median of 3, interleaved).

Runs in a throwaway directory; nothing is added to runs/.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

from _throwaway import run_in_throwaway_dir  # benchmarks/ itself, on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
ARMS = {  # name -> tune settings
    "motpe+moasha": {"algorithm": "motpe", "scheduler": "moasha"},
    "motpe": {"algorithm": "motpe", "scheduler": "none"},
    "random": {"algorithm": "random", "scheduler": "none"},
}
GOAL_HV, GOAL_EPOCHS = 0.95, 0.50


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default=str(ROOT / "search_spaces" / "quickstart.yaml"))
    parser.add_argument("--configs", type=int, default=16, help="configurations per sweep (num_samples)")
    parser.add_argument("--concurrent", type=int, default=2, help="trials at a time")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="searcher seeds (>= 3 for the goal)")
    parser.add_argument("--grace-period", type=int, default=1)
    parser.add_argument(
        "--reduction-factor",
        type=float,
        nargs="+",
        default=[2.0],
        help="one MO-ASHA arm per value (named motpe+moasha-rfR)",
    )
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument(
        "--smoke-test", action="store_true", help="the sweeps' --smoke-test sizes (2 epochs, 512 images)"
    )
    parser.add_argument("--rung-cost", action="store_true", help="time the rung evaluation instead (no Ray)")
    parser.add_argument("--repeats", type=int, default=3, help="--rung-cost: timings per measure (the median)")
    parser.add_argument("--no-suite", action="store_true", help="--rung-cost: leave out timing the whole suite")
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="run nothing: combine the curves of earlier --json files (arms run separately) into one table",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--plot", type=Path, help="hypervolume against epochs used, as PNG")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if args.rung_cost:
        run_in_throwaway_dir("moasha-rung-", lambda work: _rung_cost(args), args.json)
        return
    plot = args.plot.resolve() if args.plot else None
    args.json = args.json.resolve() if args.json else None  # _measure runs in the throwaway directory
    if args.merge:
        figures = _merge(args.merge)
        if args.json:
            args.json.write_text(json.dumps(figures, indent=1))
    else:
        figures = run_in_throwaway_dir("moasha-bench-", lambda work: _measure(args, work), args.json)
    print(_table(figures))
    if plot:
        _plot(figures, plot)
        print(f"plot: {plot}")


def _measure(args: argparse.Namespace, work: Path) -> dict:
    from coded_resnext.orchestration.ray_runtime import ray_session
    from coded_resnext.orchestration.search_space import load_search_space
    from coded_resnext.orchestration.sweep import Sweep

    uri = f"sqlite:///{work / 'mlflow.db'}"
    partial = args.json.with_suffix(".partial.json") if args.json else None
    curves: dict[str, dict[str, list]] = {}
    with ray_session(None):
        for seed in args.seeds:
            for arm, settings in _arms(args).items():
                space = load_search_space(args.space)
                space.tune = dataclasses.replace(
                    space.tune,
                    **settings,
                    num_samples=args.configs,
                    max_concurrent_trials=args.concurrent,
                    seed=seed,
                    grace_period=args.grace_period,
                    reference_control=False,  # the same for every arm; left out so epochs compare directly
                    name=f"bench-{arm.replace('+', '-').replace('.', '_')}-s{seed}",
                )
                started = time.perf_counter()
                outcome = Sweep(space, uri, smoke_test=args.smoke_test).run()
                curve = _curve(uri, outcome.parent_run_id)
                curve["seconds"] = time.perf_counter() - started
                curves[f"{arm}|{seed}"] = curve
                print(
                    f"{arm} seed {seed}: hypervolume {curve['hypervolume'][-1]:.4f} after "
                    f"{curve['epochs'][-1]:.0f} epochs ({curve['seconds']:.0f}s)",
                    flush=True,
                )
                if partial:  # hours of sweeps: what finished survives an interrupted benchmark (--merge reads it)
                    done = {"settings": {k: str(v) for k, v in vars(args).items()}, "curves": curves}
                    partial.write_text(json.dumps(done | {"summary": _summary(curves)}, indent=1))
    return {"settings": {k: str(v) for k, v in vars(args).items()}, "curves": curves, "summary": _summary(curves)}


def _rung_cost(args: argparse.Namespace) -> dict:
    import statistics
    from types import SimpleNamespace

    import torch

    from coded_resnext.datasets import build_dataset
    from coded_resnext.orchestration.build import build_model, data_spec, train_loader
    from coded_resnext.orchestration.config import smoke_test_config
    from coded_resnext.orchestration.optimizer import make_optimizer
    from coded_resnext.orchestration.search_space import load_search_space
    from coded_resnext.orchestration.training import (
        TrainStep,
        distributed_evaluate,
        run_evaluation,
        rung_metrics,
        train_epoch,
    )

    cfg = load_search_space(args.space).trial_config({})
    cfg = smoke_test_config(cfg) if args.smoke_test else cfg
    torch.manual_seed(cfg.seed)
    device = torch.device("cpu")
    bundle = build_dataset(data_spec(cfg))
    model = build_model(cfg, bundle.num_classes, bundle.in_chans).to(memory_format=torch.channels_last)
    steps = len(train_loader(bundle, cfg, 0))
    opt, scheduler = make_optimizer(model, cfg, steps)
    session = SimpleNamespace(rank=0, world_size=1)

    def timed(fn) -> float:
        started = time.perf_counter()
        fn()
        return time.perf_counter() - started

    train = timed(lambda: train_epoch(TrainStep(model), train_loader(bundle, cfg, 0), opt, scheduler, device))
    times: dict[str, list[float]] = {"val_pass": [], "rung_eval": [], "suite": []}
    for _ in range(args.repeats):
        times["val_pass"].append(timed(lambda: distributed_evaluate(model, bundle.val, cfg, device, session)))
        times["rung_eval"].append(timed(lambda: rung_metrics(model, bundle, cfg, device)))
        if not args.no_suite:
            times["suite"].append(timed(lambda: run_evaluation(model, bundle, cfg, device, test=False)))
    median = {k: statistics.median(v) for k, v in times.items() if v}
    epoch = train + median["val_pass"]
    figures = {
        "config": {"train_images": len(bundle.train), "val_images": min(len(bundle.val), cfg.eval.limit_val or 10**9)},
        "seconds": {"train_pass": train, **median},
        "rung_eval_over_epoch": median["rung_eval"] / epoch,  # what a rung epoch costs extra
    }
    if "suite" in median:
        figures["rung_eval_over_suite"] = median["rung_eval"] / median["suite"]
    return figures


def _arms(args: argparse.Namespace) -> dict[str, dict]:
    """The arms to run: MO-ASHA once per reduction factor, the full-budget arms once."""
    out = {}
    for arm in args.arms:
        if ARMS[arm]["scheduler"] != "moasha":
            out[arm] = dict(ARMS[arm])
            continue
        for rf in args.reduction_factor:
            out[f"{arm}-rf{rf:g}"] = {**ARMS[arm], "reduction_factor": rf}
    return out


def _merge(paths: list[Path]) -> dict:
    """The curves of several ``--json`` (or ``.partial.json``) files as one benchmark's figures."""
    curves: dict[str, dict] = {}
    for path in paths:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise SystemExit(f"--merge: cannot read {path}: {err}") from None
        if not isinstance(data, dict) or not isinstance(data.get("curves"), dict):
            raise SystemExit(f"--merge: {path} has no 'curves'; give files this benchmark wrote with --json")
        for key, curve in data["curves"].items():
            if key in curves:
                arm, seed = key.split("|")
                raise SystemExit(f"--merge: {arm} seed {seed} is in two of the files; merge each sweep once")
            curves[key] = curve
    return {"settings": {"merged": [str(p) for p in paths]}, "curves": curves, "summary": _summary(curves)}


def _curve(uri: str, parent_run_id: str) -> dict[str, list]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    hv = {m.step: m.value for m in client.get_metric_history(parent_run_id, "sweep/hypervolume")}
    used = {m.step: m.value for m in client.get_metric_history(parent_run_id, "sweep/epochs_used")}
    steps = sorted(set(hv) & set(used))
    if not steps:
        raise SystemExit(f"sweep {parent_run_id} logged no sweep/hypervolume: are its objectives several?")
    return {"epochs": [used[s] for s in steps], "hypervolume": [hv[s] for s in steps]}


def _summary(curves: dict[str, dict[str, list]]) -> list[dict]:
    """Per arm and seed: final hypervolume and epochs as fractions of motpe at full budget (same seed), and
    the epochs MO-ASHA needed to first reach 95% of that hypervolume."""
    rows = []
    for key, curve in curves.items():
        arm, seed = key.split("|")
        full = curves.get(f"motpe|{seed}")
        row = {"arm": arm, "seed": int(seed), "hypervolume": curve["hypervolume"][-1], "epochs": curve["epochs"][-1]}
        if full and full["hypervolume"][-1] > 0:
            target = full["hypervolume"][-1]
            row["hv_fraction"] = row["hypervolume"] / target
            row["epochs_fraction"] = row["epochs"] / full["epochs"][-1]
            reached = [e for e, hv in zip(curve["epochs"], curve["hypervolume"], strict=True) if hv >= GOAL_HV * target]
            row["epochs_fraction_to_95pct"] = reached[0] / full["epochs"][-1] if reached else None
            # the goal read the other way: the hypervolume this arm had after half the full budget's epochs
            half = [
                hv
                for e, hv in zip(curve["epochs"], curve["hypervolume"], strict=True)
                if e <= GOAL_EPOCHS * full["epochs"][-1]
            ]
            row["hv_fraction_at_half_epochs"] = (half[-1] if half else 0.0) / target
        rows.append(row)
    return rows


def _table(figures: dict) -> str:
    import pandas as pd

    table = pd.DataFrame(figures["summary"])
    if table.empty:
        return "no sweeps ran"
    mean = table.drop(columns="seed").groupby("arm").mean(numeric_only=True).assign(seed="mean").reset_index()
    out = pd.concat([table, mean], ignore_index=True).sort_values(["arm", "seed"], key=lambda c: c.astype(str))
    lines = [out.to_string(index=False, float_format=lambda v: f"{v:.3f}")]
    for _, row in mean[mean.arm.str.startswith("motpe+moasha")].iterrows():
        if "hv_fraction" not in row or pd.isna(row.hv_fraction):
            continue
        per_seed = table[table.arm == row.arm]["epochs_fraction_to_95pct"]
        reached = per_seed.notna().all()
        met = reached and per_seed.mean() <= GOAL_EPOCHS
        target = f"{GOAL_HV:.0%} of the full-budget hypervolume"
        when = (
            f"reached {target} with {per_seed.mean():.1%} of its epochs (mean over seeds; goal <= {GOAL_EPOCHS:.0%})"
            if reached
            else f"never reached {target} on {int(per_seed.isna().sum())} of {len(per_seed)} seed(s)"
        )
        lines.append(
            f"{row.arm}: {when}: {'MET' if met else 'NOT MET'}; at its end {row.hv_fraction:.1%} of the "
            f"hypervolume with {row.epochs_fraction:.1%} of the epochs"
        )
    return "\n".join(lines)


def _plot(figures: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"motpe": "tab:blue", "random": "tab:grey"}
    extra = iter(["tab:red", "tab:orange", "tab:purple", "tab:green"])
    for key in figures["curves"]:
        if key.split("|")[0] not in colours:  # (setdefault would draw a colour for every seed)
            colours[key.split("|")[0]] = next(extra, "black")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    seen = set()
    for key, curve in figures["curves"].items():
        arm, seed = key.split("|")
        label = arm if arm not in seen else None
        seen.add(arm)
        ax.step(curve["epochs"], curve["hypervolume"], where="post", color=colours.get(arm), alpha=0.8, label=label)
        ax.annotate(f"s{seed}", (curve["epochs"][-1], curve["hypervolume"][-1]), fontsize=7, color=colours.get(arm))
    full = [c["epochs"][-1] for k, c in figures["curves"].items() if k.startswith("motpe|")]
    if full:  # the goal's epoch budget
        ax.axvline(GOAL_EPOCHS * max(full), color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("epochs used (all trials)")
    ax.set_ylabel("hypervolume of the finished trials' front")
    ax.set_title("MO-ASHA vs full budget: hypervolume against epochs (one line per seed)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
