"""The library's layout stays what its ``__init__`` says: a top level of packages, one concept each, whose
imports point one way. Read from the source (``ast``), so a module that would break a rule fails here
before anyone imports it in the wrong order."""

from __future__ import annotations

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[1] / "coded_resnext"
# Function-local imports allowed because they defer a heavy import few callers need (seconds each).
DEFERRED = {"sklearn.datasets", "torch.export.pt2_archive._package"}


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


def test_no_import_cycle_between_library_modules():
    modules = _modules()
    graph = {name: _module_level_targets(path, modules) for name, path in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], node, target])
            elif target not in state:
                visit(target, [*path, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, [" -> ".join(cycle) for cycle in cycles]


def test_imports_in_functions_only_defer_heavy_modules():
    found = []
    for name, path in _modules().items():
        for func in ast.walk(ast.parse(path.read_text())):
            if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                for node in _imports(func):
                    module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                    if module not in DEFERRED:
                        found.append(f"{name}.{func.name}: {module}")
    assert not found, f"import these at the top of the module (or say here why they are heavy): {found}"


def test_no_private_name_is_imported_across_modules():
    found = [
        f"{name}: {node.module}.{alias.name}"
        for name, path in _modules().items()
        for node in _imports(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("coded_resnext")
        for alias in node.names
        if alias.name.startswith("_") and alias.name != "__version__"
    ]
    assert not found, found


def test_the_library_imports_neither_ray_mlflow_nor_the_layers_above_it():
    forbidden = ("ray", "mlflow", "coded_resnext.orchestration", "coded_resnext.results")
    found = []
    for name, path in _modules().items():
        for node in _imports(ast.parse(path.read_text())):
            modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            found += [f"{name}: {m}" for m in modules if any(m == f or m.startswith(f + ".") for f in forbidden)]
    assert not found, found
