"""One schema for what a run records (``coded_resnext.results.schema``), and the import hygiene that keeps
the dependency graph visible: no literal tag or role outside the schema, no hidden import cycles, no
function-local imports except where a module defers a heavy import, no private names across modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

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
    ("results/report.py", "control"),  # the label of the model.control parameter
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


# ---- import hygiene ----------------------------------------------------------------------------------
def _module(path: Path) -> str:
    for folder, package in FOLDERS.items():
        base = ROOT / folder
        if base in path.parents:
            parts = [p for p in path.relative_to(base).with_suffix("").parts if p != "__init__"]
            return ".".join([package, *parts])
    raise AssertionError(path)


def _modules() -> dict[str, Path]:
    out = {}
    for path in _product_files(*FOLDERS):
        out[_module(path)] = path
    return out


def _project_target(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(path: Path, modules: dict[str, Path]):
    """(line, imported module, is function-local, project target) of every absolute import."""
    tree = ast.parse(path.read_text())
    out = []

    def visit(node, local: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom) and not getattr(child, "level", 0):
                names = (
                    [a.name for a in child.names]
                    if isinstance(child, ast.Import)
                    else [f"{child.module}.{a.name}" for a in child.names] + [child.module]
                )
                targets = {_project_target(n, modules) for n in names} - {None}
                out.append((child.lineno, names[-1] if isinstance(child, ast.ImportFrom) else names[0], local, targets))
            visit(child, local or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

    visit(tree, False)
    return out


# The CLI layer defers every import a command needs into the command (``coded-resnext --help`` must not pay
# for Ray, MLflow or matplotlib); elsewhere a function may defer only these heavy, rarely needed imports.
CLI_LAYER = ("coded_resnext.orchestration.cli", "coded_resnext.orchestration.commands")
DEFERRABLE = (
    "sklearn",
    "timm",
    "torch.export",
    "torch.profiler",
    "optuna.visualization",
    "mlflow.pytorch",
    "mlflow.pyfunc",
)


def test_function_local_imports_only_where_a_heavy_import_is_deferred():
    modules = _modules()
    found = []
    for module, path in modules.items():
        if module.startswith(CLI_LAYER):
            continue
        for line, name, local, _ in _imports(path, modules):
            if local and not name.startswith(DEFERRABLE):
                found.append(f"{path.relative_to(ROOT)}:{line} {name}")
    assert not found, "import at the module's top (or defer only a heavy optional import): " + "; ".join(found)


def test_no_import_cycles_even_through_function_local_imports():
    modules = _modules()
    edges = {}
    for module, path in modules.items():
        targets = set()
        for _, _, _, found in _imports(path, modules):
            targets |= {t for t in found if t != module and not t.startswith(module + ".")}  # a package's own modules
        edges[module] = targets
    cycles, stack, state = [], [], {}

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in edges.get(node, ()):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_imports_point_down_orchestration_results_library():
    modules = _modules()
    wrong = []
    for module, path in modules.items():
        for line, _, _, targets in _imports(path, modules):
            for target in targets:
                if module.startswith("coded_resnext.results") and target.startswith("coded_resnext.orchestration"):
                    wrong.append(f"{path.relative_to(ROOT)}:{line} -> {target}")
                library = not module.startswith(("coded_resnext.results", "coded_resnext.orchestration"))
                if library and target.startswith(("coded_resnext.results", "coded_resnext.orchestration")):
                    wrong.append(f"{path.relative_to(ROOT)}:{line} -> {target}")
    assert not wrong, wrong


@pytest.mark.parametrize("folder", list(FOLDERS))
def test_private_names_stay_in_their_module(folder):
    found = []
    for path in _product_files(folder):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("coded_resnext"):
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                if private:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.module}: {private}")
    assert not found, found
