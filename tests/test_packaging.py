"""What installing the project puts on a user's import path: one name, ``coded_resnext``, with every module
of the three source folders beneath it (``orchestration/`` as ``coded_resnext.orchestration``, ``results/``
as ``coded_resnext.results``); and no code that imports the folders by their generic names."""

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "coded_resnext": "coded_resnext",
    "orchestration": "coded_resnext/orchestration",
    "results": "coded_resnext/results",
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    source = out / "source"  # a copy: setuptools writes build/ and *.egg-info beside what it builds
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out)]
    subprocess.run([*pip_wheel, "."], check=True, capture_output=True, timeout=240, cwd=source)
    (path,) = out.glob("coded_resnext-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_adds_one_top_level_name_and_holds_every_module(wheel):
    names = wheel.namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"coded_resnext"}, top
    for folder, installed in FOLDERS.items():
        for module in (ROOT / folder).rglob("*.py"):
            if "__pycache__" in module.parts:
                continue
            target = f"{installed}/{module.relative_to(ROOT / folder).as_posix()}"
            if folder == "coded_resnext" and target.startswith(
                ("coded_resnext/orchestration/", "coded_resnext/results/")
            ):
                continue
            assert target in names, f"{module.relative_to(ROOT)} is not in the wheel as {target}"
    assert "coded_resnext/data/paper_coding_schemes.json" in names
    entry = wheel.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "coded-resnext = coded_resnext.orchestration.cli:main" in entry


def test_no_code_imports_the_folders_by_their_generic_names():
    pattern = re.compile(r"^\s*(from|import)\s+(orchestration|results)\b", re.M)
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("coded_resnext", "orchestration", "results", "tests", "benchmarks")
        for path in (ROOT / folder).rglob("*.py")
        if pattern.search(path.read_text())
    ]
    assert not offenders, f"import coded_resnext.orchestration / coded_resnext.results instead: {offenders}"
