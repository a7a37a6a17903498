"""One schema for what a run records (``coded_resnext.results.schema``): no literal tag or role outside it,
and its metric names are the ones the library and the loop produce."""

from __future__ import annotations

import ast
from pathlib import Path

from coded_resnext.results import schema

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "coded_resnext": "coded_resnext",
    "orchestration": "coded_resnext.orchestration",
    "results": "coded_resnext.results",
}

# Literals that equal a tag or role name but mean something else there: a subcommand's name, a config
# field named like a tag, a checkpoint key, a parameter's display label.
NOT_A_TAG = {
    ("orchestration/commands/ablate.py", "ablation"),  # the subcommand
    ("orchestration/commands/extract.py", "extract"),  # the subcommand
    ("orchestration/commands/tune.py", "storage_path"),  # TuneSection.storage_path
    ("orchestration/search_space.py", "reference_control"),  # the tune.reference_control key in an error
    ("orchestration/checkpoint.py", "experiment_hash"),  # a checkpoint entry
    ("results/labels.py", "control"),  # the label of the model.control parameter
}


def _product_files(*folders: str):
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "__pycache__" not in path.parts:
                yield path


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def test_no_tag_or_role_is_spelled_out_outside_the_schema():
    names = {*schema.names(schema.Tag).values(), *schema.names(schema.Role).values(), schema.CONTROL_CELL}
    columns = {schema.tag_column(n) for n in names}
    found = []
    for path in _product_files("orchestration", "results"):
        rel = path.relative_to(ROOT).as_posix()
        if rel == "results/schema.py":
            continue
        tree = ast.parse(path.read_text())
        skip = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
                text = node.value
                hit = text in names or text in columns or any(f"tags.{n}`" in text or f"`{n}`" in text for n in names)
                if hit and (rel, text) not in NOT_A_TAG:
                    found.append(f"{rel}:{node.lineno} {text!r}")
    assert not found, "use coded_resnext.results.schema (Tag, Role, tag_column) instead of: " + "; ".join(found)


def test_the_allowlist_holds_only_literals_that_are_there():
    """An entry of NOT_A_TAG whose literal is gone would hide the next real one: keep it current."""
    for rel, text in NOT_A_TAG:
        tree = ast.parse((ROOT / rel).read_text())
        assert any(isinstance(n, ast.Constant) and n.value == text for n in ast.walk(tree)), (rel, text)


def test_the_schemas_looked_up_metrics_are_what_the_suite_and_the_loop_produce():
    """The schema's metric names are the evaluation suite's and the training loop's: a renamed metric in the
    library that the schema (and so every reader) still spells the old way fails here."""
    produced = set()
    for path in [
        *_product_files("coded_resnext/evaluation"),
        ROOT / "orchestration" / "training.py",
        ROOT / "orchestration" / "tune_callbacks.py",
    ]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                produced.add(node.value)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "Metric":
                produced.add(getattr(schema.Metric, node.attr))  # the loop writes it under the schema's name
            if isinstance(node, ast.JoinedStr):  # f"val/{name}": its constant head
                head = node.values[0]
                if isinstance(head, ast.Constant):
                    produced.add(head.value)
    metrics = schema.names(schema.Metric)
    # metrics a search or a sweep adds: the sweep's own, the constraint flag, the loop's clock and epoch
    written_elsewhere = {
        "SWEEP_HYPERVOLUME",
        "SWEEP_EPOCHS_USED",
        "SWEEP_TRIALS",
        "SWEEP_FAILED",
        "INFEASIBLE",
        "TEST_ACCURACY",
    }
    missing = {
        key: name
        for key, name in metrics.items()
        if key not in written_elsewhere
        and name not in produced
        and not any(name.startswith(p) and p.endswith("/") for p in produced)
    }
    assert not missing, f"schema metrics nothing produces under that name: {missing}"
