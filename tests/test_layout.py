"""The code's layout and import hygiene, read from the source (``ast``) so a module that would break a rule
fails here before anyone imports it in the wrong order: the library's top level is its packages and it
imports neither Ray, MLflow nor the layers above it; across the three folders imports point down
(orchestration -> results -> library), no cycle hides behind a function-local import, a function imports
only to defer a heavy module (the CLI layer: everything a command needs), and private names stay private."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "coded_resnext"
FOLDERS = {
    "coded_resnext": "coded_resnext",
    "orchestration": "coded_resnext.orchestration",
    "results": "coded_resnext.results",
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in LIBRARY.rglob("*.py"):
        parts = path.relative_to(LIBRARY.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(tree: ast.AST) -> list[ast.ImportFrom | ast.Import]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]


def _module_level_targets(path: Path, modules: dict[str, Path]) -> set[str]:
    """The library modules a module imports when it is imported: the named module, and the package
    ``__init__`` of every ancestor that is not also its own."""
    name = next(m for m, p in modules.items() if p == path)
    targets: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for full in names:
            parts = full.split(".")
            for i in range(1, len(parts) + 1):
                candidate = ".".join(parts[:i])
                own_ancestor = name.startswith(candidate + ".") and candidate != full
                if candidate in modules and candidate != name and not own_ancestor:
                    targets.add(candidate)
    return targets


def test_the_top_level_holds_only_init_and_packages():
    loose = sorted(p.name for p in LIBRARY.glob("*.py") if p.name != "__init__.py")
    assert not loose, f"put these modules into the package of their concept: {loose}"
    for folder in LIBRARY.iterdir():
        if folder.is_dir() and folder.name not in ("__pycache__", "data"):
            assert (folder / "__init__.py").is_file(), f"{folder.name}/ has no __init__.py"


def test_the_library_imports_neither_ray_mlflow_nor_the_layers_above_it():
    forbidden = ("ray", "mlflow", "coded_resnext.orchestration", "coded_resnext.results")
    found = []
    for name, path in _modules().items():
        for node in _imports(ast.parse(path.read_text())):
            modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            found += [f"{name}: {m}" for m in modules if any(m == f or m.startswith(f + ".") for f in forbidden)]
    assert not found, found


def _product_files(*folders: str):
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "__pycache__" not in path.parts:
                yield path


# ---- across the three folders -----------------------------------------------------------------------
def _module(path: Path) -> str:
    for folder, package in FOLDERS.items():
        base = ROOT / folder
        if base in path.parents:
            parts = [p for p in path.relative_to(base).with_suffix("").parts if p != "__init__"]
            return ".".join([package, *parts])
    raise AssertionError(path)


def _all_modules() -> dict[str, Path]:
    out = {}
    for path in _product_files(*FOLDERS):
        out[_module(path)] = path
    return out


def _project_target(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _import_edges(path: Path, modules: dict[str, Path]):
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
    modules = _all_modules()
    found = []
    for module, path in modules.items():
        if module.startswith(CLI_LAYER):
            continue
        for line, name, local, _ in _import_edges(path, modules):
            if local and not name.startswith(DEFERRABLE):
                found.append(f"{path.relative_to(ROOT)}:{line} {name}")
    assert not found, "import at the module's top (or defer only a heavy optional import): " + "; ".join(found)


def test_no_import_cycles_even_through_function_local_imports():
    modules = _all_modules()
    edges = {}
    for module, path in modules.items():
        targets = set()
        for _, _, _, found in _import_edges(path, modules):
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
    modules = _all_modules()
    wrong = []
    for module, path in modules.items():
        for line, _, _, targets in _import_edges(path, modules):
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
