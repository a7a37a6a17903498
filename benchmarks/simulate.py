"""MO-ASHA judged with enough seeds, at cluster scale, on the recorded learning-curve benchmark (simulated).

Every arm over the recorded quickstart grid (benchmarks/data/quickstart_curves.parquet: 36 configurations,
27 epochs) at 4, 16 and 32 workers, each for 20 searcher seeds, on the simulator's event clock
(``coded-resnext simulate``). Every sweep starts ``--trials`` trials (default the grid's size, 36: the same
num_samples for every arm, as a user compares them), 27 epochs each unless its scheduler stops them:

* full budget: random and motpe (the reference);
* early stopping: motpe + ASHA on val/accuracy, motpe + MO-ASHA at reduction factors 2, 3 and 4, random + MO-ASHA
  (rf 3); grace period 1.

``--equal-epochs`` gives the early-stopping arms the full-budget search's epochs instead (as many trials as fit,
up to ``--max-trials``). On a 36-point grid the searchers then mostly re-propose configurations they have run
(Optuna's samplers do not avoid repeats), which a real sweep over this grid would train again: a test of the grid's
size more than of the scheduler, so it is not the default.

Reported per arm and worker count, mean and 95% interval over seeds (t intervals, ``results.ablation.t_interval``;
differences paired on the seed): the final hypervolume; the hypervolume after 40% of the full budget's epochs as
a share of the full-budget search's final one; the epochs to reach 95% of it; the hypervolume after half the
epochs (and after half the full-budget search's simulated wall-clock) minus the full-budget search's then.

Goals (measured at 16 workers): MO-ASHA reaches >= 95% of the full-budget search's final hypervolume using
<= 40% of its epochs; after half its epochs its hypervolume is higher, the paired interval above 0.

    python benchmarks/simulate.py --json sim.json --plot docs/images/simulated_moasha.png --table /tmp/sim.md
    python benchmarks/simulate.py --schedules --workers 16          # which MO-ASHA setting meets the goals
    python benchmarks/simulate.py --faithfulness                     # a real Ray Tune run against its simulation

Writes only the files it is given.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CURVES = ROOT / "benchmarks" / "data" / "quickstart_curves.parquet"
SPACE = ROOT / "search_spaces" / "quickstart_curves.yaml"
REFERENCE = "motpe"
GOAL_HV, GOAL_EPOCHS, EQUAL_EPOCHS = 0.95, 0.40, 0.50
GRACE_PERIODS = (1, 2, 3, 6, 9)  # --schedules: first rungs tried (epochs of 27)


def catalogue(epochs: int = 27) -> dict[str, tuple[object, str]]:
    """Every arm this benchmark knows: name -> (Arm, kind), the kind 'trials' (full budget) or 'epochs' (stops
    trials early: with --equal-epochs it gets the full-budget search's epochs instead of its trials)."""
    from coded_resnext.orchestration.simulation import Arm

    out = {
        "random": (Arm("random", "none"), "trials"),
        "motpe": (Arm("motpe", "none"), "trials"),
        "motpe+ASHA rf 3": (Arm("motpe", "asha", reduction_factor=3), "epochs"),
    }
    for rf in (2, 3, 4):
        out[f"motpe+MO-ASHA rf {rf}"] = (Arm("motpe", "moasha", reduction_factor=rf), "epochs")
    out["random+MO-ASHA rf 3"] = (Arm("random", "moasha", reduction_factor=3), "epochs")
    # the long-trial rule: rf 3 and the first rung at a ninth of the trial (rungs at max_t/9 and max_t/3)
    out["motpe+MO-ASHA rf 3 grace max_t/9"] = (
        Arm("motpe", "moasha", grace_period=max(1, math.ceil(epochs / 9)), reduction_factor=3),
        "epochs",
    )
    for grace in GRACE_PERIODS:  # the rung schedules --schedules searches
        for rf in (2, 3, 4):
            out[f"motpe+MO-ASHA rf {rf} grace {grace}"] = (
                Arm("motpe", "moasha", grace_period=grace, reduction_factor=rf),
                "epochs",
            )
    return out


ARMS = ["random", "motpe", "motpe+ASHA rf 3", *(f"motpe+MO-ASHA rf {rf}" for rf in (2, 3, 4)), "random+MO-ASHA rf 3"]
SCHEDULES = ["motpe", *(f"motpe+MO-ASHA rf {rf} grace {g}" for g in GRACE_PERIODS for rf in (2, 3, 4))]


def chosen_arms(args, epochs: int = 27) -> list[tuple[str, object, str]]:
    known = catalogue(epochs)
    names = args.arms or (SCHEDULES if args.schedules else ARMS)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"--arms: unknown {unknown}; choose from {list(known)}")
    if REFERENCE not in names:
        names = [REFERENCE, *names]
    return [(name, *known[name]) for name in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--curves", type=Path, default=CURVES)
    parser.add_argument("--space", type=Path, default=SPACE)
    parser.add_argument("--workers", type=int, nargs="+", default=[4, 16, 32])
    parser.add_argument("--seeds", default="0-19", help="searcher seeds: a range like 0-19, or a list 0,1,2")
    parser.add_argument("--trials", type=int, default=None, help="trials of every sweep (default: the grid's size)")
    parser.add_argument(
        "--equal-epochs",
        action="store_true",
        help="give the early-stopping arms the full-budget search's epochs instead of its trials (up to --max-trials)",
    )
    parser.add_argument("--max-trials", type=int, default=None, help="--equal-epochs: at most this many trials")
    parser.add_argument("--arms", nargs="+", help="only these arms (and the reference, motpe); names as in the table")
    parser.add_argument("--trial-epochs", type=int, help="trials of this many epochs: the recorded curves cut there")
    parser.add_argument(
        "--lengths", type=int, nargs="+", help="one study per trial length (epochs, curves cut there): motpe vs --arms"
    )
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--schedules", action="store_true", help="search MO-ASHA settings instead of the arms")
    parser.add_argument("--faithfulness", action="store_true", help="a real Ray Tune run against its simulation")
    parser.add_argument("--faithful-configs", type=int, default=16, help="--faithfulness: configurations (seeded)")
    parser.add_argument("--faithful-workers", type=int, default=4)
    parser.add_argument("--seconds-per-epoch", type=float, default=1.0, help="--faithfulness: the median epoch")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--table", type=Path, help="the Markdown table")
    args = parser.parse_args(argv)
    import logging

    logging.getLogger("ray.tune").setLevel(logging.ERROR)
    from coded_resnext.orchestration.search_space import load_search_space
    from coded_resnext.orchestration.simulation import read_curves
    from coded_resnext.orchestration.simulation.scenario import check

    overrides = [f"train.epochs={args.trial_epochs}"] if args.trial_epochs else []
    space = load_search_space(args.space, overrides)
    curves = read_curves(args.curves)
    args.trials = args.trials or curves.n  # the grid's size: every arm starts as many trials
    if args.faithfulness:
        return _faithfulness(args, space, curves)
    chosen = chosen_arms(args, space.base_config().train.epochs)
    if args.lengths:
        return _lengths(args, curves, chosen)
    for _name, arm, _kind in chosen:
        check(curves, space, arm, f"--curves {args.curves}")
    figures = run(args, space, curves, chosen)
    text = report(figures, args)
    print(text)
    if args.table:
        args.table.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=float))
    if args.plot:
        plot(figures, args.plot)
        print(f"plot: {args.plot}")
    return 0


def _seeds(text: str) -> list[int]:
    if "-" in text:
        low, high = text.split("-")
        return list(range(int(low), int(high) + 1))
    return [int(s) for s in text.split(",")]


def run(args, space, curves, chosen) -> dict:
    import numpy as np

    from coded_resnext.orchestration.simulation import Budget
    from coded_resnext.orchestration.simulation.evaluate import Scenario, Task, curve_band, per_seed, simulate_many

    epochs = space.base_config().train.epochs
    full = args.trials * epochs
    tasks = []
    for workers in args.workers:
        for seed in _seeds(args.seeds):
            for name, arm, kind in chosen:
                budget = Budget(trials=args.trials)
                if kind == "epochs" and args.equal_epochs:  # as many trials as fit the full budget's epochs
                    budget = Budget(trials=args.max_trials, epochs=full)
                tasks.append(Task(arm, workers, seed, budget, args.trials, label=name))
    done = [0]
    started = time.perf_counter()

    def progress(task, outcome):
        done[0] += 1
        if done[0] % 20 == 0 or done[0] == len(tasks):
            print(f"  {done[0]}/{len(tasks)} simulated sweeps ({time.perf_counter() - started:.0f} s)", file=sys.stderr)

    results = simulate_many(Scenario(curves, space), tasks, processes=args.processes, progress=progress)
    elapsed = time.perf_counter() - started
    frame = per_seed(results, REFERENCE, {w: float(full) for w in args.workers})
    refs = {(t.workers, t.seed): o.seconds for t, o in results if t.name == REFERENCE}
    grid = np.linspace(0, 1, 101)
    by_epochs = curve_band(results, grid * full)
    by_time = curve_band(results, grid, column="seconds", scale=refs)
    trials = sum(len(o.trials) for _t, o in results)
    return {
        "settings": {
            "curves": str(args.curves.relative_to(ROOT) if args.curves.is_relative_to(ROOT) else args.curves),
            "curves_meta": {k: curves.meta.get(k) for k in ("git_commit", "configurations", "epochs", "sizes")},
            "workers": args.workers,
            "seeds": _seeds(args.seeds),
            "trials": args.trials,
            "equal_epochs": args.equal_epochs,
            "full_budget_epochs": full,
            "arms": {name: {**arm.__dict__, "budget": kind} for name, arm, kind in chosen},
        },
        "speed": {"sweeps": len(results), "trials": trials, "seconds": elapsed, "processes": args.processes},
        "per_seed": frame.to_dict(orient="records"),
        "bands": {
            "grid": grid.tolist(),
            "epochs": {f"{a}|{w}": [v.tolist() for v in band] for (a, w), band in by_epochs.items()},
            "time": {f"{a}|{w}": [v.tolist() for v in band] for (a, w), band in by_time.items()},
        },
    }


def _fmt(mean, low, high, fmt) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    if low is None or (isinstance(low, float) and math.isnan(low)):
        return format(mean, fmt)
    return f"{format(mean, fmt)} [{format(low, fmt)}, {format(high, fmt)}]"


def report(figures: dict, args) -> str:
    import pandas as pd

    from coded_resnext.orchestration.simulation.evaluate import summarize

    frame = pd.DataFrame(figures["per_seed"])
    summary = summarize(frame)
    s = figures["settings"]
    speed = figures["speed"]
    lines = [
        f"{len(s['seeds'])} seeds x {len(s['arms'])} arms x workers {s['workers']}: {speed['sweeps']} simulated sweeps, "
        f"{speed['trials']} trials in {speed['seconds']:.0f} s on {speed['processes']} processes "
        f"({speed['trials'] / speed['seconds']:.0f} simulated trials per second). Full budget: {s['trials']} trials x "
        f"{s['full_budget_epochs'] // s['trials']} epochs = {s['full_budget_epochs']} epochs; "
        + (
            "every early-stopping arm gets the same epochs"
            if s.get("equal_epochs")
            else f"every arm starts {s['trials']} trials"
        )
        + ". Mean [95% interval] over seeds; differences paired on the seed against motpe.",
        "",
        "| workers | arm | final hypervolume | of motpe's | epochs, of motpe's | wall-clock, of motpe's "
        "| at 40% of the epochs, of motpe's final | epochs to 95% of it (seeds never) "
        "| minus motpe's at half the epochs | minus motpe's at half its wall-clock | configurations |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, row in summary.iterrows():
        lines.append(
            f"| {row.workers} | {row.arm} | {_fmt(row.hypervolume, row.hypervolume_low, row.hypervolume_high, '.4f')} | "
            f"{_fmt(row.hv_of_reference, row.hv_of_reference_low, row.hv_of_reference_high, '.1%')} | "
            f"{_fmt(row.epochs_of_reference, row.epochs_of_reference_low, row.epochs_of_reference_high, '.1%')} | "
            f"{_fmt(row.seconds_of_reference, row.seconds_of_reference_low, row.seconds_of_reference_high, '.1%')} | "
            f"{_fmt(row['hv_at_0.4_of_reference'], row['hv_at_0.4_of_reference_low'], row['hv_at_0.4_of_reference_high'], '.1%')} | "
            f"{_fmt(row.epochs_to_goal, row.epochs_to_goal_low, row.epochs_to_goal_high, '.1%')} ({int(row.never)}) | "
            f"{_fmt(row['delta_hv_at_0.5'], row['delta_hv_at_0.5_low'], row['delta_hv_at_0.5_high'], '+.4f')} | "
            f"{_fmt(row.delta_hv_at_half_time, row.delta_hv_at_half_time_low, row.delta_hv_at_half_time_high, '+.4f')} | "
            f"{row.distinct_configs:.0f} |"
        )
    lines.append("")
    lines += goals(summary)
    return "\n".join(lines)


def goals(summary) -> list[str]:
    """The goals' verdicts at 16 workers (or the middle worker count run), per MO-ASHA arm."""
    if summary.empty:
        return []
    summary = summary.drop_duplicates(["workers", "arm"])  # --schedules repeats the default arms' settings
    workers = 16 if 16 in set(summary.workers) else sorted(set(summary.workers))[len(set(summary.workers)) // 2]
    out = [f"Goals at {workers} workers:"]
    for _, row in summary[(summary.workers == workers) & summary.arm.str.contains("MO-ASHA")].iterrows():
        share = row["hv_at_0.4_of_reference"]
        first = share >= GOAL_HV and row.never == 0 and row.epochs_to_goal <= GOAL_EPOCHS
        second = row["delta_hv_at_0.5_low"] > 0
        out.append(
            f"- {row.arm}: at 40% of the epochs {share:.1%} of motpe's final hypervolume "
            f"[{row['hv_at_0.4_of_reference_low']:.1%}, {row['hv_at_0.4_of_reference_high']:.1%}], 95% reached after "
            f"{row.epochs_to_goal:.1%} of the epochs ({int(row.never)} seeds never): {'MET' if first else 'NOT MET'}; "
            f"at half the epochs {row['delta_hv_at_0.5']:+.4f} [{row['delta_hv_at_0.5_low']:+.4f}, "
            f"{row['delta_hv_at_0.5_high']:+.4f}] against motpe: {'MET' if second else 'NOT MET'}"
        )
    moasha = summary[(summary.workers == workers) & summary.arm.str.contains("MO-ASHA")]
    if len(moasha) > 1:
        by_equal = moasha.sort_values("delta_hv_at_0.5", ascending=False).iloc[0]
        by_goal = moasha.sort_values("hv_at_0.4_of_reference", ascending=False).iloc[0]
        out.append(
            f"Best at {workers} workers: at half the epochs {by_equal.arm} ({by_equal['delta_hv_at_0.5']:+.4f} "
            f"[{by_equal['delta_hv_at_0.5_low']:+.4f}, {by_equal['delta_hv_at_0.5_high']:+.4f}]); at 40% of the epochs "
            f"{by_goal.arm} ({by_goal['hv_at_0.4_of_reference']:.1%} [{by_goal['hv_at_0.4_of_reference_low']:.1%}, "
            f"{by_goal['hv_at_0.4_of_reference_high']:.1%}] of motpe's final)"
        )
    return out


def plot(figures: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    grid = np.array(figures["bands"]["grid"])
    workers = figures["settings"]["workers"]
    names = list(figures["settings"]["arms"])
    palette = ["tab:grey", "tab:blue", "tab:olive", "tab:red", "tab:orange", "tab:purple", "tab:green"]
    colours = {name: palette[i % len(palette)] for i, name in enumerate(names)}
    fig, axes = plt.subplots(2, len(workers), figsize=(4.2 * len(workers), 7), sharey=True, squeeze=False)
    for column, w in enumerate(workers):
        for row, (kind, label) in enumerate(
            [("epochs", "epochs used, share of the full budget"), ("time", "simulated wall-clock, share of motpe's")]
        ):
            ax = axes[row][column]
            for name in names:
                band = figures["bands"][kind].get(f"{name}|{w}")
                if band is None:
                    continue
                mean, low, high = (np.array(v, dtype=float) for v in band)
                style = "--" if figures["settings"]["arms"][name]["budget"] == "trials" else "-"
                ax.plot(grid, mean, style, color=colours[name], label=name, lw=1.4)
                ax.fill_between(grid, low, high, color=colours[name], alpha=0.12, lw=0)
            if kind == "epochs":
                ax.axvline(GOAL_EPOCHS, color="black", ls=":", lw=0.8)
            ax.set_xlabel(label)
            ax.grid(alpha=0.3)
            if column == 0:
                ax.set_ylabel("hypervolume (mean, 95% interval)")
            ax.set_title(f"{w} workers", fontsize=10)
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.suptitle(
        f"Simulated sweeps on the recorded quickstart grid ({len(figures['settings']['seeds'])} seeds per arm)",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _lengths(args, curves, _chosen) -> int:
    """MO-ASHA against motpe at several trial lengths (the recorded curves cut at each): from which length on
    does stopping early pay?"""
    import pandas as pd

    from coded_resnext.orchestration.search_space import load_search_space
    from coded_resnext.orchestration.simulation.evaluate import summarize
    from coded_resnext.orchestration.simulation.scenario import check

    rows, per_length = [], {}
    for epochs in args.lengths:
        space = load_search_space(args.space, [f"train.epochs={epochs}"])
        arms_here = chosen_arms(args, epochs)
        for _name, arm, _kind in arms_here:
            check(curves, space, arm, f"--curves {args.curves}")
        print(f"trials of {epochs} epochs:", file=sys.stderr)
        figures = run(args, space, curves, arms_here)
        per_length[epochs] = figures
        summary = summarize(pd.DataFrame(figures["per_seed"])).assign(trial_epochs=epochs)
        rows.append(summary)
    table = pd.concat(rows, ignore_index=True)
    lines = [
        f"Trial length against the gain of stopping early ({len(_seeds(args.seeds))} seeds, workers {args.workers}, "
        f"{args.trials} full-budget trials; recorded 27-epoch curves cut at each length). Mean [95% interval].",
        "",
        "| trial epochs | workers | arm | at 40% of the epochs, of motpe's final | minus motpe's at half the epochs | "
        "minus motpe's at half its wall-clock |",
        "|---|---|---|---|---|---|",
    ]
    for _, row in table[table.arm != REFERENCE].iterrows():
        lines.append(
            f"| {row.trial_epochs} | {row.workers} | {row.arm} | "
            f"{_fmt(row['hv_at_0.4_of_reference'], row['hv_at_0.4_of_reference_low'], row['hv_at_0.4_of_reference_high'], '.1%')} | "
            f"{_fmt(row['delta_hv_at_0.5'], row['delta_hv_at_0.5_low'], row['delta_hv_at_0.5_high'], '+.4f')} | "
            f"{_fmt(row.delta_hv_at_half_time, row.delta_hv_at_half_time_low, row.delta_hv_at_half_time_high, '+.4f')} |"
        )
    text = "\n".join(lines)
    print(text)
    if args.table:
        args.table.write_text(text + "\n")
    if args.json:
        args.json.write_text(
            json.dumps({"summary": table.to_dict(orient="records"), "per_length": per_length}, default=float)
        )
    if args.plot:
        _plot_lengths(table, args.plot)
        print(f"plot: {args.plot}")
    return 0


def _plot_lengths(table, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for arm, group in table[table.arm != REFERENCE].groupby("arm", sort=False):
        for workers, rows in group.groupby("workers"):
            rows = rows.sort_values("trial_epochs")
            label = f"{arm}, {workers} workers"
            for ax, column in zip(axes, ("delta_hv_at_0.5", "delta_hv_at_half_time"), strict=True):
                ax.errorbar(
                    rows.trial_epochs, rows[column],
                    yerr=[rows[column] - rows[f"{column}_low"], rows[f"{column}_high"] - rows[column]],
                    marker="o", capsize=3, label=label,
                )  # fmt: skip
    for ax, title in zip(axes, ("at half the full budget's epochs", "at half its wall-clock"), strict=True):
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xlabel("trial length (epochs)")
        ax.set_title(f"hypervolume minus motpe's, {title}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("paired difference (mean, 95% interval)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _faithfulness(args, space, curves) -> int:
    import numpy as np

    from coded_resnext.orchestration.simulation import Arm
    from coded_resnext.orchestration.simulation.evaluate import Scenario
    from coded_resnext.orchestration.simulation.faithfulness import compare

    scenario = Scenario(curves, space)
    order = [int(i) for i in np.random.default_rng(0).permutation(curves.n)[: args.faithful_configs]]
    out = {}
    for rf in (2, 3):
        arm = Arm("replay", "moasha", reduction_factor=rf)
        agreement = compare(
            curves, arm, scenario.objectives, scenario.reference_point,
            workers=args.faithful_workers, order=order, epochs=space.base_config().train.epochs,
            seconds_per_epoch=args.seconds_per_epoch, moasha_reference=space.tune.reference_point,
        )  # fmt: skip
        print(f"MO-ASHA rf {rf}, {len(order)} configurations, {args.faithful_workers} workers: {agreement.describe()}")
        out[f"rf{rf}"] = {**agreement.__dict__, "share": agreement.share}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
