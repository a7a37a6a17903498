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


def test_set_up_drops_only_pips_ignored_location_lines_and_keeps_its_status(tmp_path):
    """scripts/env.sh installs through scripts/quiet_pip.sh: pip's "Location ... is ignored" lines (one per
    package for every local index a site-wide pip.conf names) filled screens; every other line stays."""
    import subprocess
    import sys

    script = ROOT / "scripts" / "quiet_pip.sh"
    fake = (
        "echo \"WARNING: Location 'file:///opt/pypi/simple/six/' is ignored: it is neither a file nor a directory.\" >&2;"
        "echo 'WARNING: the disk is nearly full' >&2; echo installed; exit 3"
    )
    done = subprocess.run(["bash", str(script), "sh", "-c", fake], capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (3, "installed\n", "WARNING: the disk is nearly full\n")
    # real pip, offline: a find-links location that does not exist here, and a package it cannot find
    missing = tmp_path / "no-such-wheels"
    pip = [sys.executable, "-m", "pip", "download", "--no-index", "--no-deps", "--find-links", str(missing)]
    raw = subprocess.run([*pip, "-d", str(tmp_path), "no-such-package-x"], capture_output=True, text=True, check=False)
    assert f"Location '{missing}' is ignored" in raw.stderr  # what the filter is for
    done = subprocess.run(
        ["bash", str(script), *pip, "-d", str(tmp_path), "no-such-package-x"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == raw.returncode != 0
    assert "is ignored" not in done.stderr and "No matching distribution found for no-such-package-x" in done.stderr
