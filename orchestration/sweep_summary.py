"""What a sweep says about itself: the closing list the ``tune`` and ``ablate`` commands print, the
description (``mlflow.note.content``, Markdown) its parent run shows in MLflow's UI, and a saved view of
MLflow's runs table that lists its trials.

The view: MLflow 3.18's UI opens every experiment in the workflow a browser last chose (GenAI by default: a
tracing page, whatever the experiment's ``mlflow.experimentKind``), with a sweep as one collapsed parent row
and no metric columns. A shared view (an experiment tag ``mlflow.sharedViewState.<key>``, what the UI's own
"share view" writes) and the URL parameter ``workflowType=machine_learning`` open the runs table instead,
with the sweep's trials as rows, best first, and the objectives and searched parameters as columns
(``runs_view``, ``runs_view_link``; the closing list and the description give the link).

Both mark the same trials: the Pareto front over the sweep's objectives and the reference control (a
sweep's plain-control trial, an ablation's control cell). The front is the report's
(``results.sweep_progress.ranked_runs``) over the sweep's finished trial runs as MLflow holds them, so an
``--extend``'s front counts every earlier trial too, and the closing list, the description and the report
never disagree.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
from dataclasses import dataclass
from urllib.parse import urlencode

import pandas as pd
from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

from coded_resnext.results.pareto import Objective
from coded_resnext.results.runs import load_runs
from coded_resnext.results.schema import CONTROL_CELL, Role, Tag, tag_column
from coded_resnext.results.sweep_progress import ranked_runs

logger = logging.getLogger(__name__)

FRONT = "*"  # the closing list's mark of a trial on the Pareto front
REFERENCE = "R"  # and of the reference control
LISTED_BEST = 5  # the closing list shows the best trials by the first objective, the front and the reference
NOTE_FRONT_ROWS = 20  # rows of the front in the parent's description (the report lists every one)


@dataclass
class SweepFacts:
    """What the description says of the sweep itself."""

    name: str
    role: str  # Role.SWEEP or Role.ABLATION
    experiment: str
    tracking_uri: str
    default_tracking_uri: bool  # the local store the commands find without --tracking-uri
    algorithm: str
    searched: list[str]  # the searched config keys (an ablation: its variants' keys and the seed)
    space_path: str
    objectives: dict[str, str]


MLFLOW_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves a local store by default


def runs_view_key(parent_run_id: str) -> str:
    """The shared view's key: one per sweep (its parent run), stable across --resume and --extend."""
    return f"sweep-{parent_run_id}"


def runs_view(facts: SweepFacts, parent_run_id: str) -> dict[str, str]:
    """The experiment tag holding the sweep's view of MLflow's runs table: its trials (the children of its
    parent run), best first by the first objective, with the objectives and searched parameters as columns.
    The keys are the UI's own (mlflow/server/js: the search facets and ``ExperimentPageUIState``; a column is
    ``<type>.`<key>```)."""
    first, mode = next(iter(facts.objectives.items()))
    state = {
        "searchFilter": f"tags.`{Tag.PARENT_RUN}` = '{parent_run_id}'",
        "orderByKey": f"metrics.`{first}`",
        "orderByAsc": mode == "min",
        "selectedColumns": [f"metrics.`{k}`" for k in facts.objectives] + [f"params.`{k}`" for k in facts.searched],
    }
    if facts.role == Role.ABLATION:
        state["selectedColumns"].insert(0, f"tags.`{Tag.ABLATION_CELL}`")
    return {f"{Tag.SHARED_VIEW}{runs_view_key(parent_run_id)}": json.dumps(state)}


def runs_view_link(experiment_id: str, parent_run_id: str) -> str:
    """The UI route of the sweep's view (append it to the UI's address)."""
    query = urlencode({"viewStateShareKey": runs_view_key(parent_run_id), "workflowType": "machine_learning"})
    return f"#/experiments/{experiment_id}/runs?{query}"


def ui_address(tracking_uri: str) -> str:
    """Where a user opens MLflow's UI for ``tracking_uri``: the server itself, or ``mlflow ui``'s default."""
    return tracking_uri.rstrip("/") if re.match(r"https?://", tracking_uri) else MLFLOW_UI


def standing(tracking_uri: str, experiment: str, parent_run_id: str, objectives: dict[str, str]) -> pd.DataFrame:
    """The sweep's finished trial runs, ranked: ``pareto_front`` (bool) and ``reference`` (bool) added to
    ``results.runs``' columns (``run_name``, ``metrics.<objective>``, ...)."""
    return marked(load_runs(experiment, tracking_uri, parent_run_id=parent_run_id), objectives)


def marked(runs: pd.DataFrame, objectives: dict[str, str]) -> pd.DataFrame:
    """``runs`` (``results.runs``' frame) with ``pareto_front`` and ``reference`` added."""
    if runs.empty:
        return runs.assign(pareto_front=pd.Series(dtype=bool), reference=pd.Series(dtype=bool))
    ranked = ranked_runs(runs, [Objective(k, v) for k, v in objectives.items()])
    reference = pd.Series(False, index=ranked.index)
    for column, value in ((tag_column(Tag.REFERENCE_CONTROL), "true"), (tag_column(Tag.ABLATION_CELL), CONTROL_CELL)):
        if column in ranked.columns:
            reference |= ranked[column].astype(str).str.lower().eq(value)
    ranked["reference"] = reference
    ranked.loc[reference, "pareto_front"] = False  # an ablation's control cell is a baseline too
    return ranked


def try_standing(tracking_uri: str, experiment: str, parent_run_id: str, objectives: dict[str, str]):
    """``standing``, or None when the store cannot be read now (the sweep's results are safe either way;
    the closing list then goes without its marks)."""
    try:
        return standing(tracking_uri, experiment, parent_run_id, objectives)
    except Exception as err:  # a store that went away after the sweep: say so, do not fail the finished sweep
        logger.warning("could not read the sweep's trial runs to mark its front (%s)", err)
        return None


def _value(run: pd.Series, metric: str) -> float:
    value = run.get(f"metrics.{metric}")
    return float(value) if value is not None and pd.notna(value) else math.nan


def _shown(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.4f}"


def _ordered(runs: pd.DataFrame, objectives: dict[str, str]) -> pd.DataFrame:
    """Best first by the first objective; runs without it last."""
    key, mode = next(iter(objectives.items()))
    values = runs.apply(lambda r: _value(r, key), axis=1) if len(runs) else pd.Series(dtype=float)
    order = values.sort_values(ascending=mode == "min", na_position="last").index
    return runs.loc[order]


def closing_rows(ranked: pd.DataFrame, objectives: dict[str, str]) -> list[tuple[str, str, dict[str, float]]]:
    """(mark, run name, objective values) of the runs the closing list shows: the best ``LISTED_BEST`` by
    the first objective, every run on the front and the reference control, best first."""
    ordered = _ordered(ranked, objectives)
    searched = ordered[~ordered["reference"]]
    keep = set(searched.index[:LISTED_BEST]) | set(ordered.index[ordered["pareto_front"] | ordered["reference"]])
    rows = []
    for index, run in ordered.iterrows():
        if index not in keep:
            continue
        mark = REFERENCE if run["reference"] else FRONT if run["pareto_front"] else " "
        name = run.get("run_name")
        name = str(name) if name is not None and pd.notna(name) else str(run["run_id"])[:8]
        rows.append((mark, name, {k: _value(run, k) for k in objectives}))
    return rows


def _objectives_text(objectives: dict[str, str]) -> str:
    return ", ".join(f"{k} ({v})" for k, v in objectives.items())


def print_outcome(outcome, objectives: dict[str, str], tracking_uri: str, experiment: str, stream=None) -> None:
    """The closing list (stdout): trials run, the best ones with the front and the reference control
    marked, and where everything is. ``outcome`` is ``sweep.SweepOutcome``."""
    stream = stream or sys.stdout
    if outcome.interrupted:
        print(
            f"\nINTERRUPTED: {outcome.done} of {outcome.planned or '?'} trials done; "
            f"continue with:\n  {outcome.resume_command}",
            file=stream,
        )
    else:
        print(f"\n{len(outcome.trials)} trials ({outcome.failed} failed)", file=stream)
    ranked = outcome.standing
    if ranked is not None and len(ranked):
        key = next(iter(objectives))
        print(
            f"best by {key} ({FRONT}: on the Pareto front of {_objectives_text(objectives)}; {REFERENCE}: the "
            "reference control, a baseline kept off the front):",
            file=stream,
        )
        for mark, name, values in closing_rows(ranked, objectives):
            shown = "  ".join(f"{k}={_shown(v)}" for k, v in values.items())
            print(f"  {mark} {name}: {shown}", file=stream)
        front = int(ranked["pareto_front"].sum())
        searched = int((~ranked["reference"]).sum())
        print(f"Pareto front: {front} of {searched} finished trials", file=stream)
    else:  # the store could not be read: the trials as Tune reported them, unmarked
        ok = [r for r in outcome.trials if r["status"] == "OK" and all(r.get(k) is not None for k in objectives)]
        if ok:
            key, mode = next(iter(objectives.items()))
            print(f"best by {key} (front not marked: the tracking store could not be read):", file=stream)
            for r in sorted(ok, key=lambda r: r[key], reverse=mode == "max")[:LISTED_BEST]:
                shown = "  ".join(f"{k}={r[k]:.4f}" for k in objectives)
                print(f"    {r[Tag.TRIAL_ID]}: {shown}", file=stream)
    print(f"\nMLflow parent run {outcome.parent_run_id} at {tracking_uri}", file=stream)
    print(f"Tune experiment: {outcome.experiment_path}", file=stream)
    for what, where in outcome.locations:
        print(f"{what + ':':<17} {where}", file=stream)
    if tracking_uri.startswith("sqlite:"):
        print(f"look at it with:  mlflow ui --backend-store-uri {tracking_uri}", file=stream)
    if outcome.experiment_id is not None:
        link = runs_view_link(outcome.experiment_id, outcome.parent_run_id)
        print(f"its trials:       {ui_address(tracking_uri)}/{link}", file=stream)
    print(f"report:           coded-resnext report {experiment} --out report/", file=stream)


def report_command(facts: SweepFacts, parent_run_id: str) -> str:
    command = f"coded-resnext report {facts.experiment} --parent {parent_run_id} --out reports/{facts.name}"
    return command if facts.default_tracking_uri else f"{command} --tracking-uri {facts.tracking_uri}"


def _cell(text: str) -> str:
    """A Markdown table cell: no pipe or line break of its own."""
    return text.replace("|", "\\|").replace("\n", " ")


def sweep_note(
    facts: SweepFacts, parent_run_id: str, status: str, ranked: pd.DataFrame | None, experiment_id: str | None = None
) -> str:
    """The parent run's description (Markdown): the sweep in one paragraph, its status, its front so far
    (with the reference control beside it), a link to its trials in the runs table and the commands that
    give the report and the test figures."""
    ablation = facts.role == Role.ABLATION
    kind = "Ablation" if ablation else "Sweep"
    lines = [
        f"**{kind} `{facts.name}`**: {facts.algorithm} search over {', '.join(facts.searched) or 'its cells'} "
        f"(`{facts.space_path}`). Objectives, on the validation split: {_objectives_text(facts.objectives)}.",
        "",
        f"**Status**: {status}",
        "",
    ]
    if ranked is not None and len(ranked):
        front = _ordered(ranked[ranked["pareto_front"] | ranked["reference"]], facts.objectives)
        title = "Pareto front" if len(facts.objectives) > 1 else f"Best by {next(iter(facts.objectives))}"
        count = int(ranked["pareto_front"].sum())
        lines += [
            f"**{title}** ({count} of {int((~ranked['reference']).sum())} finished trials; the reference control "
            "in italics, a baseline off the front):",
            "",
            "| trial | " + " | ".join(facts.objectives) + " |",
            "|---|" + "---|" * len(facts.objectives),
        ]
        shown = 0
        for _, run in front.iterrows():
            if not run["reference"]:
                shown += 1
                if shown > NOTE_FRONT_ROWS:
                    continue
            name = _cell(str(run.get("run_name") or str(run["run_id"])[:8]))
            name = f"*{name}*" if run["reference"] else name
            lines.append(f"| {name} | " + " | ".join(_shown(_value(run, k)) for k in facts.objectives) + " |")
        if shown > NOTE_FRONT_ROWS:
            lines += ["", f"... and {shown - NOTE_FRONT_ROWS} more on the front (the report lists every one)."]
        lines.append("")
    if experiment_id is not None:
        lines += [
            f"**Trials**: [every trial of this {kind.lower()}, best first, with its objectives]"
            f"({runs_view_link(experiment_id, parent_run_id)}) in the runs table.",
            "",
        ]
    lines += [
        "**Report** (tables, the front's plots, every trial's figures):",
        "",
        f"    {report_command(facts, parent_run_id)}",
        "",
        f"The test split, once, after the {kind.lower()}: `coded-resnext evaluate --sweep {facts.name} "
        f"{'--all' if ablation else '--front'}`.",
    ]
    note = "\n".join(lines)
    return note if len(note) <= MAX_TAG_VAL_LENGTH else note[: MAX_TAG_VAL_LENGTH - 1] + "…"
