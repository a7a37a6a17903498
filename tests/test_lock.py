"""The lock (constraints.txt) agrees with pyproject.toml's ranges, the suite runs on the locked versions, and
the README says which versions those are."""

import re
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _lock() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, pinned = line.partition("==")
            assert pinned, f"constraints.txt: {line!r} is not name==version"
            pins[canonicalize_name(name)] = Version(pinned)
    return pins


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [req for group in project.get("optional-dependencies", {}).values() for req in group]
    return [Requirement(req) for req in [*project["dependencies"], *extras]]


def test_every_dependency_is_locked_at_a_version_its_range_allows():
    lock = _lock()
    problems = []
    for req in _requirements():
        pinned = lock.get(canonicalize_name(req.name))
        if pinned is None:
            problems.append(f"{req.name} is not in constraints.txt")
        elif not req.specifier.contains(pinned, prereleases=True):
            problems.append(f"{req.name}: pyproject.toml asks {req.specifier}, the lock has {pinned}")
    assert not problems, "; ".join(problems) + " (regenerate the lock: bash scripts/lock.sh)"


def test_the_suite_runs_on_the_locked_versions():
    lock = _lock()
    wrong = []
    for req in _requirements():
        try:
            installed = Version(version(req.name))
        except PackageNotFoundError:
            wrong.append(f"{req.name} not installed")
            continue
        if installed != lock[canonicalize_name(req.name)]:
            wrong.append(f"{req.name} {installed} (lock {lock[canonicalize_name(req.name)]})")
    assert not wrong, ", ".join(wrong) + ": run bash scripts/env.sh, which installs with constraints.txt"


def test_the_readme_names_the_tested_versions():
    lock = _lock()
    readme = (ROOT / "README.md").read_text()
    section = readme.split("Tested versions", 1)
    assert len(section) == 2, "the README has no 'Tested versions' line"
    stated = dict(re.findall(r"([A-Za-z][\w.-]*) (\d+\.\d+(?:\.\d+)*)", section[1].split("\n\n", 1)[0]))
    assert {"torch", "ray", "mlflow", "optuna"} <= set(stated), stated
    for name, said in stated.items():
        assert lock[canonicalize_name(name)] == Version(said), (
            f"README says {name} {said}, the lock has it at {lock[canonicalize_name(name)]}"
        )
