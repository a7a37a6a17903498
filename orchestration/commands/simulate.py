"""``coded-resnext simulate``: a sweep at any scale replayed over recorded learning curves, in simulated time."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from coded_resnext.orchestration.commands.options import add_overrides
from coded_resnext.orchestration.errors import UserError

DESCRIPTION = """\
Replay recorded learning curves under the sweep's own searchers (random, motpe, nsga2) and schedulers (FIFO,
ASHA, MO-ASHA) on an event-driven clock: a trial's epochs take their recorded wall times, trials start, report,
reach rungs and end in the order a cluster of --workers workers would see them, and the searcher only proposes
recorded configurations. No Ray cluster, no MLflow run, nothing trained; a sweep of hundreds of trials takes
seconds. Reports the hypervolume of the front of the trials that trained their full budget, the epochs and the
simulated wall-clock it cost, per seed and as a mean with a 95% interval over seeds; an arm that stops trials
early is compared, paired on the seed, with the same searcher at full budget.

Two sources of curves:
  SPACE --curves FILE   a recorded benchmark (benchmarks/data/quickstart_curves.parquet, with its space
                        search_spaces/quickstart_curves.yaml: every searched key a choice over recorded values)
  --from-sweep NAME     a finished full-budget sweep of yours, from MLflow: its own trials replayed in their
                        order under another scheduler and worker count (what would it have found, and saved?)

Settings default to SPACE's tune section (algorithm, scheduler, grace_period, reduction_factor, max_t,
num_samples, max_concurrent_trials, seed). The simulator also runs combinations a sweep refuses
(motpe with asha: single-objective ASHA under a multi-objective searcher) so they can be compared.
Assumptions and the recorded benchmark: docs/searching.md, "Simulating sweeps".
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="replay recorded learning curves under any searcher, scheduler and worker count (simulated time)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("space", type=Path, nargs="?", help="search-space YAML the curves were recorded with")
    p.add_argument("--curves", type=Path, help="recorded curves (Parquet; benchmarks/record_curves.py writes one)")
    add_overrides(
        p,
        "override a value of SPACE, e.g. --set train.epochs=9: trials of 9 epochs, the recorded curves cut there "
        "(an approximation: a 9-epoch run anneals its learning rate sooner)",
    )
    p.add_argument("--from-sweep", metavar="NAME", help="replay a finished full-budget sweep's curves from MLflow")
    p.add_argument("--tracking-uri", help="MLflow store of --from-sweep (default: runs/mlflow.db here)")
    p.add_argument("--experiment", help="--from-sweep: the MLflow experiment (default: search them all)")
    p.add_argument("--workers", type=int, help="trials at a time (default: tune.max_concurrent_trials)")
    p.add_argument("--seeds", nargs="+", help="searcher seeds, e.g. 0 1 2 or 0-19 (default: tune.seed)")
    p.add_argument("--algorithm", choices=("random", "motpe", "nsga2", "replay"), help="the searcher")
    p.add_argument("--scheduler", choices=("none", "asha", "moasha"), help="none: every trial trains its budget")
    p.add_argument("--grace-period", type=int, help="first rung, epochs")
    p.add_argument("--reduction-factor", type=float, help="keep the top 1/R at each rung")
    p.add_argument("--max-t", type=int, help="MO-ASHA: epochs a trial trains at most")
    p.add_argument("--trials", type=int, help="trials per sweep (default: tune.num_samples)")
    p.add_argument("--epoch-budget", type=float, help="instead: run until this many epochs are used (equal compute)")
    p.add_argument("--time-budget", type=float, metavar="SECONDS", help="or until the simulated clock reaches this")
    p.add_argument("--no-baseline", action="store_true", help="do not also run the same searcher at full budget")
    p.add_argument("--processes", type=int, default=1, help="simulations in parallel processes (default 1)")
    p.add_argument("--save-curves", type=Path, help="--from-sweep: also write its curves as a Parquet file")
    p.add_argument("--json", type=Path, help="write every seed's figures and the summary here")
    p.add_argument("--plot", type=Path, help="hypervolume against epochs used, per seed, as PNG")
    p.set_defaults(run=_run)


def parse_seeds(values: list[str] | None, default: int) -> list[int]:
    if not values:
        return [default]
    seeds: list[int] = []
    for value in values:
        try:
            if "-" in value.strip("-"):
                low, high = value.split("-", 1)
                seeds += list(range(int(low), int(high) + 1))
            else:
                seeds.append(int(value))
        except ValueError:
            raise UserError(f"--seeds {value}: give integers or ranges like 0-19") from None
    return seeds


def _run(args: argparse.Namespace) -> int:
    import logging

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("ray.tune").setLevel(logging.ERROR)
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers {args.workers}: needs at least 1 worker")
    if args.processes < 1:
        raise UserError(f"--processes {args.processes}: needs at least 1")
    if args.from_sweep:
        if args.curves or args.space or args.overrides:
            raise UserError("--from-sweep replays a sweep's own curves: give no SPACE, --curves or --set with it")
        return _from_sweep(args)
    if args.space is None or args.curves is None:
        raise UserError("give SPACE and --curves FILE (a recorded benchmark), or --from-sweep NAME")
    if args.save_curves:
        raise UserError("--save-curves goes with --from-sweep (a curves file is already a file)")
    from coded_resnext.orchestration.search_space import load_search_space
    from coded_resnext.orchestration.simulation import read_curves

    space = load_search_space(args.space, args.overrides)
    curves = read_curves(args.curves)
    return _simulate(args, space, curves, where=f"--curves {args.curves}")


# ---- a recorded benchmark ---------------------------------------------------------------------------------
def _arm(args: argparse.Namespace, tune):
    from coded_resnext.orchestration.simulation import Arm

    algorithm = args.algorithm or ("random" if tune.algorithm in ("grid", "random") else tune.algorithm)
    if algorithm == "optuna":
        raise UserError("--algorithm: the simulator runs random, motpe, nsga2 or replay (optuna is one metric)")
    return Arm(
        algorithm=algorithm,
        scheduler=args.scheduler or tune.scheduler,
        grace_period=args.grace_period or tune.grace_period,
        reduction_factor=args.reduction_factor or tune.reduction_factor,
        max_t=args.max_t or tune.max_t,
        metric=tune.metric,
        mode=tune.mode,
    )


def _budget(args: argparse.Namespace, trials: int):
    from coded_resnext.orchestration.simulation import Budget

    if args.epoch_budget is not None or args.time_budget is not None:
        return Budget(trials=args.trials, epochs=args.epoch_budget, seconds=args.time_budget)
    if args.trials is not None and args.trials < 1:
        raise UserError(f"--trials {args.trials}: needs at least 1 trial")
    return Budget(trials=args.trials or trials)


def _simulate(args: argparse.Namespace, space, curves, where: str) -> int:
    import dataclasses

    from coded_resnext.orchestration.simulation.evaluate import Scenario, Task, per_seed, simulate_many, summarize
    from coded_resnext.orchestration.simulation.scenario import check

    arm = _arm(args, space.tune)
    check(curves, space, arm, where)
    workers = args.workers or space.tune.max_concurrent_trials
    seeds = parse_seeds(args.seeds, space.tune.seed)
    budget = _budget(args, space.tune.num_samples)
    nominal = budget.trials or space.tune.num_samples
    scenario = Scenario(curves, space)
    tasks = [Task(arm, workers, seed, budget, nominal) for seed in seeds]
    baseline = None
    if arm.stops_early and not args.no_baseline:
        baseline = dataclasses.replace(arm, scheduler="none")
        check(curves, space, baseline, where)
        full = _budget(args, space.tune.num_samples)
        tasks += [
            Task(baseline, workers, seed, full, nominal, label=f"{baseline.label} (full budget)") for seed in seeds
        ]
    print(_heading(arm, curves, space, workers, seeds, budget), flush=True)
    started = time.perf_counter()
    results = simulate_many(scenario, tasks, processes=args.processes)
    elapsed = time.perf_counter() - started
    reference = tasks[-1].name if baseline is not None else arm.label
    full_epochs = {
        workers: max((o.epochs for t, o in results if t.name == reference), default=0.0) or None
    }  # the full-budget search's epochs (the same for every seed when it runs its trials to the end)
    frame = per_seed(results, reference, {k: v for k, v in full_epochs.items() if v})
    summary = summarize(frame)
    _print_table(frame, summary, baseline is not None, reference)
    trials = sum(len(o.trials) for _t, o in results)
    print(
        f"\nspeed: {len(results)} simulated sweeps, {trials} trials in {elapsed:.1f} s "
        f"({trials / elapsed:.0f} simulated trials per second)"
    )
    _outputs(args, frame, summary, results)
    return 0


def _heading(arm, curves, space, workers, seeds, budget) -> str:
    from coded_resnext.orchestration.simulation.scenario import judged_epochs

    epochs = space.base_config().train.epochs
    rungs = judged_epochs(arm, epochs)
    rung_text = f", rungs at epochs {', '.join(map(str, rungs))}" if rungs else ""
    limit = (
        f"{budget.trials} trials"
        if budget.epochs is None and budget.seconds is None
        else " / ".join(
            x
            for x in (
                f"{budget.trials} trials" if budget.trials else "",
                f"{budget.epochs:g} epochs" if budget.epochs else "",
                f"{budget.seconds:g} s" if budget.seconds else "",
            )
            if x
        )
    )
    seed_text = f"{seeds[0]}-{seeds[-1]}" if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)) else seeds
    return (
        f"simulating {arm.label}{rung_text} over {curves.n} recorded configurations of {epochs} epochs: "
        f"{workers} workers, {limit}, seeds {seed_text}"
    )


def _print_table(frame, summary, compared: bool, reference: str) -> None:
    columns = ["arm", "seed", "hypervolume", "epochs", "seconds", "trials", "distinct_configs", "stopped"]
    shown = frame[columns].rename(columns={"seconds": "sim. seconds", "distinct_configs": "configs"})
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print("\nmean over seeds [95% interval]:")
    for _, row in summary.iterrows():
        parts = [f"hypervolume {_ci(row, 'hypervolume', '.4f')}", f"epochs {_ci(row, 'epochs', '.0f')}"]
        parts.append(f"simulated wall-clock {_ci(row, 'seconds', '.0f')} s")
        if (
            compared
            and row["arm"] != reference
            and "hv_of_reference" in row
            and row["hv_of_reference"] == row["hv_of_reference"]
        ):
            parts.append(f"of the full-budget search's hypervolume {_ci(row, 'hv_of_reference', '.1%')}")
            parts.append(f"hypervolume minus its at half its epochs {_ci(row, 'delta_hv_at_0.5', '+.4f')}")
        print(f"  {row['arm']}: " + "; ".join(parts))


def _ci(row, column: str, fmt: str) -> str:
    mean, low, high = row[column], row.get(f"{column}_low"), row.get(f"{column}_high")
    if low is None or low != low:  # one seed: no interval
        return format(mean, fmt)
    return f"{format(mean, fmt)} [{format(low, fmt)}, {format(high, fmt)}]"


def _outputs(args, frame, summary, results) -> None:
    if args.json:
        histories = {f"{t.name}|{t.workers}|{t.seed}": o.history for t, o in results}
        data = {
            "per_seed": frame.to_dict(orient="records"),
            "summary": summary.to_dict(orient="records"),
            "histories": histories,
        }
        args.json.write_text(json.dumps(data, indent=1, default=float))
        print(f"figures: {args.json}")
    if args.plot:
        _plot(results, args.plot)
        print(f"plot: {args.plot}")


def _plot(results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours: dict[str, str] = {}
    palette = iter(["tab:red", "tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:grey"])
    for task, outcome in results:
        colour = colours.setdefault(task.name, next(palette, "black"))
        epochs = [h[1] for h in outcome.history]
        hv = [h[2] for h in outcome.history]
        label = task.name if task.seed == min(t.seed for t, _ in results if t.name == task.name) else None
        ax.step(epochs, hv, where="post", color=colour, alpha=0.6, label=label)
    ax.set_xlabel("epochs used (all trials)")
    ax.set_ylabel("hypervolume of the full-budget trials' front")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---- what-if on a finished sweep ----------------------------------------------------------------------------
def _from_sweep(args: argparse.Namespace) -> int:
    from coded_resnext.orchestration.simulation import Arm, Budget, Curves
    from coded_resnext.orchestration.simulation.curves import export_sweep_curves, find_sweep, sweep_space, write_curves
    from coded_resnext.orchestration.simulation.evaluate import Scenario, Task, simulate_many
    from coded_resnext.orchestration.simulation.scenario import check

    uri = args.tracking_uri or _default_store()
    client, parent = find_sweep(uri, args.from_sweep, args.experiment)
    space = sweep_space(client, parent)
    frame, provenance = export_sweep_curves(space, uri, args.from_sweep, experiment=args.experiment)
    curves = Curves(frame, list(space.domains), provenance)
    if args.save_curves:
        write_curves(frame, args.save_curves, provenance)
        print(f"curves: {args.save_curves} ({curves.n} configurations x {curves.epochs} epochs)")
    if args.algorithm not in (None, "replay"):
        raise UserError(
            "--from-sweep replays the sweep's own configurations in its order (--algorithm replay); to search them "
            "with another searcher, --save-curves FILE and run SPACE --curves FILE over choice domains"
        )
    t = space.tune
    ran = int(parent.data.params.get("tune.max_concurrent_trials", t.max_concurrent_trials))
    original = Arm("replay", "none")
    what_if = Arm(
        "replay",
        args.scheduler or ("moasha" if t.scheduler == "none" else t.scheduler),
        grace_period=args.grace_period or t.grace_period,
        reduction_factor=args.reduction_factor or t.reduction_factor,
        max_t=args.max_t or t.max_t,
        metric=t.metric,
        mode=t.mode,
    )
    where = f"sweep {args.from_sweep!r}"
    check(curves, space, original, where)
    check(curves, space, what_if, where)
    workers = args.workers or ran
    budget = Budget(trials=curves.n)
    tasks = [Task(original, ran, 0, budget, curves.n, "as it ran"), Task(what_if, workers, 0, budget, curves.n)]
    if workers != ran:
        tasks.insert(1, Task(original, workers, 0, budget, curves.n, f"full budget at {workers} workers"))
    started = time.perf_counter()
    results = simulate_many(Scenario(curves, space), tasks)
    elapsed = time.perf_counter() - started
    recorded = provenance.get("recording_wall_seconds")
    print(
        f"sweep {args.from_sweep!r} (MLflow run {parent.info.run_id}): {curves.n} trials of {curves.epochs} epochs, "
        f"{ran} at a time" + (f", {recorded:.0f} s recorded" if recorded else "")
    )
    base = results[0][1]
    front = set(base.front)
    for task, outcome in results:
        name = task.name if task.label else f"under {task.arm.label} at {task.workers} workers"
        found = len(front & set(outcome.front))
        line = (
            f"  {name}: hypervolume {outcome.hypervolume:.4f}"
            + (
                f" ({outcome.hypervolume / base.hypervolume:.1%} of it)"
                if base.hypervolume > 0 and outcome is not base
                else ""
            )
            + f", {outcome.epochs:.0f} epochs"
            + (f" ({outcome.epochs / base.epochs:.0%})" if outcome is not base else "")
            + f", {_clock(outcome.seconds)} simulated"
            + (f" ({outcome.seconds / base.seconds:.0%})" if outcome is not base and base.seconds else "")
        )
        if outcome is not base:
            stopped = sum(bool(t["stopped"]) for t in outcome.trials)
            line += f"; {found} of the {len(front)} front configurations found, {stopped} trials stopped early"
        print(line)
    if recorded and base.seconds:
        print(f"  (the replay of the sweep as it ran took {_clock(base.seconds)} against {_clock(recorded)} recorded)")
    print(f"speed: {sum(len(o.trials) for _t, o in results)} simulated trials in {elapsed:.2f} s")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    t.name: {
                        "hypervolume": o.hypervolume,
                        "epochs": o.epochs,
                        "seconds": o.seconds,
                        "front": o.front,
                        "history": o.history,
                    }
                    for t, o in results
                },
                indent=1,
            )
        )
    return 0


def _default_store() -> str:
    path = Path("runs") / "mlflow.db"
    if not path.is_file():
        raise UserError(f"--from-sweep: no MLflow store at {path}; give --tracking-uri")
    return f"sqlite:///{path.resolve()}"


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"
