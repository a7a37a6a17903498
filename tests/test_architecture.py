"""The layers of docs/architecture.md import downward only: the library imports no Ray, MLflow, Optuna,
orchestration or results; results imports no Ray and no orchestration. Read from the source (every import
statement, top-level or inside a function), so a lazy import counts as much as a module-level one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]

# folder -> imported names it must not use (a name forbids itself and its submodules)
FORBIDDEN = {
    "coded_resnext": ("ray", "mlflow", "optuna", "coded_resnext.orchestration", "coded_resnext.results"),
    "results": ("ray", "coded_resnext.orchestration"),
}


def imported_modules(source: str) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
            # `from coded_resnext import orchestration` names the subpackage in the alias
            modules |= {f"{node.module}.{alias.name}" for alias in node.names}
    return modules


def violations(folder: Path, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted(folder.rglob("*.py")):
        for module in sorted(imported_modules(path.read_text(encoding="utf-8"))):
            if any(module == name or module.startswith(name + ".") for name in forbidden):
                found.append(f"{path.relative_to(folder.parent)} imports {module}")
    return found


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_imports_point_down_only(folder):
    assert (ROOT / folder / "__init__.py").is_file()
    assert violations(ROOT / folder, FORBIDDEN[folder]) == []


def test_the_scan_sees_a_forbidden_import_wherever_it_is(tmp_path):
    (tmp_path / "a.py").write_text("def f():\n    import mlflow.tracking\n")
    (tmp_path / "b.py").write_text("from coded_resnext import orchestration\nimport torch\n")
    (tmp_path / "c.py").write_text("from ray import tune\n")
    assert [v.split(" imports ")[1] for v in violations(tmp_path, FORBIDDEN["coded_resnext"])] == [
        "mlflow.tracking",
        "coded_resnext.orchestration",
        "ray",
        "ray.tune",
    ]
