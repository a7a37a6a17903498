"""Short labels for what runs vary, so tables and legends fit a page: numbers rounded to what they mean,
coding-scheme specs abbreviated (the full spec stays in a tooltip and in the legend under the table).

    generate:active=4,min_distance=4,seed=0                 -> gen 4 d4
    generate:active=6,branches=12,min_distance=None,seed=1  -> gen 6/12 s1
    paper:cifar10/5/10                                      -> paper 5/10
"""

from __future__ import annotations

import math

import pandas as pd

SIGNIFICANT = 3  # a searched mu of 3.8127361528716237 means 3.81

# The short names of the parameters searches vary (tables, legends, trial run names); other keys go by
# their last component (``optim.lr`` -> ``lr``).
PARAM_NAMES = {
    "model.name": "model",
    "model.control": "control",
    "model.width_multiplier": "width",
    "coding.c3": "c3",
    "coding.c4": "c4",
    "coding.c5": "c5",
    "loss.mu": "mu",
    "loss.p_drop": "p_drop",
    "data.name": "data",
    "seed": "seed",
}


def short_scheme(spec: str) -> str:
    if spec.startswith("paper:"):
        return "paper " + spec.split("/", 1)[1] if "/" in spec else spec
    if not spec.startswith("generate:"):
        return spec
    fields = dict(item.split("=", 1) for item in spec.removeprefix("generate:").split(",") if "=" in item)
    text = "gen " + fields.get("active", "?")
    if fields.get("branches") not in (None, "None"):
        text += "/" + fields["branches"]
    if fields.get("min_distance") not in (None, "None"):
        text += " d" + fields["min_distance"]
    if fields.get("seed") not in (None, "None", "0"):
        text += " s" + fields["seed"]
    return text


def short_number(value: float) -> str:
    if not math.isfinite(value) or value == int(value):
        return f"{value:g}"
    return f"{value:.{SIGNIFICANT}g}"


def short_value(key: str, value) -> str:
    """The label of param ``key``'s ``value`` (MLflow stores params as strings)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "–"
    text = str(value)
    if key.startswith("coding."):
        return short_scheme(text)
    try:
        return short_number(float(text))
    except ValueError:
        return text


def short_key(key: str) -> str:
    return PARAM_NAMES.get(key, key.rsplit(".", 1)[-1])


def describe(values: dict[str, object]) -> str:
    """``c3=gen 4 d4, mu=3.81, width=1.25``: a configuration's values of ``values``' keys, in short."""
    return ", ".join(f"{short_key(k)}={short_value(k, v)}" for k, v in values.items())


def trial_run_name(trial_id: str, description: str) -> str:
    """A trial's run name: its Tune trial id and what it ran (``f9730498 (c3=gen 4 d4, mu=3.81)``), so the
    runs table of MLflow's UI says which configuration each trial was. ``short_run_names`` keeps the id."""
    return f"{trial_id} ({description})"


def short_run_names(names: pd.Series) -> pd.Series:
    """Run names without the configuration a trial's name spells out (``trial_run_name``: the tables show it
    in their own columns) and without the prefix they all share up to a '-' (``<sweep>-<trial id>``)."""
    texts = [str(n).split(" (", 1)[0] for n in names]
    prefix = texts[0].rsplit("-", 1)[0] + "-" if "-" in texts[0] and len(texts) > 1 else ""
    if prefix and all(t.startswith(prefix) and len(t) > len(prefix) for t in texts):
        texts = [t.removeprefix(prefix) for t in texts]
    return pd.Series(texts, index=names.index, dtype="string")
