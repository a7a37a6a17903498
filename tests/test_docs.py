"""The docs cite what exists, and their YAML examples load.

1. Citations. Every ``*.md`` name and every repo-relative path (``<top-level folder>/...`` with a file
   extension, globs included) written in the docs, the README, the search spaces, pyproject.toml, the
   scripts and any ``.py`` file of the project (library, orchestration, results, tests, benchmarks) must
   name a file of the repository, read relative to the repository root or to the citing file's folder.
   ``docs/method.md section N`` must name one of its numbered sections. Files the project writes (not
   cites) are listed in GENERATED_NAMES; a line that mentions a path on purpose without citing it (a file a
   test writes into tmp_path) ends with the comment ``# not a citation``.
2. YAML examples. A fenced ``yaml`` block in README.md or docs/*.md must parse. It claims to be a search
   space when its top-level keys are among base/config/search/tune, and a run config when they are among
   the run config's sections; either way it must load with the loader the CLI uses (a relative ``base:``
   reads from search_spaces/). A block whose first line is ``# fragment of search_spaces/<name>.yaml`` is
   merged into that file before loading; a block of search-space sections without ``search:`` or
   ``base:`` must say which file it is a fragment of. Any other block (a Ray cluster file) claims nothing.
3. A figure stated in several places is the same figure in each (the quickstart's measured wall time).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from coded_resnext.orchestration.config import RunConfig, load_config
from coded_resnext.orchestration.search_space import load_search_space

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
TOP_FOLDERS = ("benchmarks", "coded_resnext", "docs", "orchestration", "results", "scripts", "search_spaces", "tests")
EXTENSIONS = ("py", "md", "yaml", "yml", "sh", "json", "toml", "txt", "png", "csv", "parquet", "html")

# Files the project writes, named in its docs and code as outputs: not citations of repository files.
GENERATED_NAMES = {"report.md"}  # coded-resnext report's Markdown report (results/report.py)

NOT_A_CITATION = "# not a citation"

_NAME = r"[\w][\w.-]*"
MD_NAME = re.compile(rf"(?<![\w./-])((?:\.\.?/)?(?:{_NAME}/)*{_NAME}\.md)\b")
REPO_PATH = re.compile(
    rf"(?<![\w./-])((?:\.\./)?(?:{'|'.join(TOP_FOLDERS)})/[\w./*-]*\.(?:{'|'.join(EXTENSIONS)}))(?![\w/-])"
)
METHOD_SECTION = re.compile(r"method\.md`?,? (?:section|sections) (\d+)(?:-(\d+))?")


def scanned_files(root: Path) -> list[Path]:
    files = [root / "README.md", root / "pyproject.toml", *sorted((root / "docs").rglob("*.md"))]
    files += sorted((root / "search_spaces").glob("*.yaml"))
    files += sorted((root / "scripts").glob("*.sh")) + sorted((root / ".ci").glob("*"))
    for folder in ("coded_resnext", "orchestration", "results", "tests", "benchmarks", "scripts"):
        files += sorted((root / folder).rglob("*.py"))
    return [f for f in files if f.is_file()]


def _exists(root: Path, citing: Path, name: str) -> bool:
    for base in (root, citing.parent):
        if "*" in name:
            if any(base.glob(name)):
                return True
        elif (base / name).exists():
            return True
    return False


def missing_citations(root: Path) -> dict[tuple[str, str], list[int]]:
    """(citing file, cited name) -> the lines citing it, for every cited name that names no file."""
    missing: dict[tuple[str, str], list[int]] = {}
    for path in scanned_files(root):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.rstrip().endswith(NOT_A_CITATION):
                continue
            for name in {*MD_NAME.findall(line), *REPO_PATH.findall(line)}:
                if Path(name).name in GENERATED_NAMES or _exists(root, path, name):
                    continue
                missing.setdefault((path.relative_to(root).as_posix(), name), []).append(number)
    return missing


def test_every_cited_file_is_in_the_repository():
    missing = missing_citations(ROOT)
    cited = sorted(f"{path}:{lines[0]} cites {name}" for (path, name), lines in missing.items())
    assert not cited, f"citations of files not in the repository: {cited}"


def test_the_citation_scan_sees_names_paths_globs_and_relative_links(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "search_spaces").mkdir()
    (tmp_path / "README.md").write_text(
        "See `docs/a.md`, [b](docs/b.md), search_spaces/*.yaml and search_spaces/q.yaml; GONE.md.\n"  # not a citation
        "https://example.org/x/ELSEWHERE.md and report.md are not citations.\n"  # not a citation
        "docs/zzz.md is named on purpose  # not a citation\n"  # not a citation
    )
    (tmp_path / "docs" / "a.md").write_text("[up](../README.md), [sibling](b.md), [nope](c.md)\n")  # not a citation
    (tmp_path / "search_spaces" / "q.yaml").write_text("# docs/a.md section 1\n")  # not a citation
    (tmp_path / "pyproject.toml").write_text("x = 1  # orchestration/x.py\n")  # not a citation
    assert missing_citations(tmp_path) == {
        ("README.md", "docs/b.md"): [1],  # not a citation
        ("README.md", "GONE.md"): [1],  # not a citation
        ("docs/a.md", "b.md"): [1],  # not a citation
        ("docs/a.md", "c.md"): [1],  # not a citation
        ("pyproject.toml", "orchestration/x.py"): [1],  # not a citation
    }
    (tmp_path / "docs" / "b.md").write_text("")  # not a citation
    assert set(missing_citations(tmp_path)) == {
        ("README.md", "GONE.md"),  # not a citation
        ("docs/a.md", "c.md"),  # not a citation
        ("pyproject.toml", "orchestration/x.py"),  # not a citation
    }


def test_cited_sections_of_the_method_exist():
    sections = {int(n) for n in re.findall(r"^## (\d+)\. ", (ROOT / "docs/method.md").read_text(), re.M)}
    assert sections == set(range(1, 8))
    cited = []
    for path in scanned_files(ROOT):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for first, last in METHOD_SECTION.findall(line):
                cited += [(f"{path.relative_to(ROOT)}:{number}", n) for n in range(int(first), int(last or first) + 1)]
    assert cited, "nothing cites docs/method.md by section"
    assert [(where, n) for where, n in cited if n not in sections] == []


# ---- the YAML examples ---------------------------------------------------------------------------------
SEARCH_SPACE_KEYS = {"base", "config", "search", "tune"}
RUN_CONFIG_KEYS = {f.name for f in dataclasses.fields(RunConfig)}
FENCED_YAML = re.compile(r"^```ya?ml[^\n]*\n(.*?)^```", re.S | re.M)
FRAGMENT = re.compile(r"#\s*fragment of (search_spaces/[\w.-]+\.ya?ml)")


def yaml_blocks() -> list[tuple[str, str]]:
    blocks = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        for match in FENCED_YAML.finditer(text):
            line = text[: match.start()].count("\n") + 2  # the block's first line
            blocks.append((f"{path.relative_to(ROOT)}:{line}", match.group(1)))
    return blocks


def _merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        merged[key] = (
            _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


def claim(block: str) -> tuple[str | None, dict]:
    """What a block claims to be ("search space", "run config" or None) and the document to load."""
    document = yaml.safe_load(block)
    fragment = FRAGMENT.match(block.lstrip())
    if fragment:
        whole = yaml.safe_load((ROOT / fragment.group(1)).read_text())
        document = _merge(whole, document)
    if not isinstance(document, dict) or not document:
        return None, {}
    if set(document) <= SEARCH_SPACE_KEYS:
        if not ({"search", "base"} & set(document) or fragment):
            raise ValueError(
                f"search-space sections {sorted(document)} alone: start the block with a comment "
                "'# fragment of search_spaces/<name>.yaml' naming the file they belong in"
            )
        return "search space", document
    if set(document) <= RUN_CONFIG_KEYS:
        return "run config", document
    return None, document


def load_block(block: str, tmp_path: Path) -> str | None:
    kind, document = claim(block)
    if kind is None:
        return None
    if isinstance(document.get("base"), str):
        document["base"] = str((ROOT / "search_spaces" / document["base"]).resolve())
    path = tmp_path / "block.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    (load_search_space if kind == "search space" else load_config)(path)
    return kind


BLOCKS = yaml_blocks()


def test_the_readmes_search_space_example_is_found():
    assert any(where.startswith("README.md:") and claim(block)[0] == "search space" for where, block in BLOCKS)


@pytest.mark.parametrize(("where", "block"), BLOCKS, ids=[where for where, _ in BLOCKS])
def test_a_yaml_example_in_the_docs_loads(where, block, tmp_path):
    yaml.safe_load(block)  # every YAML block parses, whatever it is
    load_block(block, tmp_path)


def test_a_yaml_example_that_stops_loading_fails(tmp_path):
    space = "base: quickstart_train.yaml\nsearch:\n  seed: {grid: [0, 1]}\ntune: {algorithm: motpe}\n"
    with pytest.raises(Exception, match=r"grid values need tune\.algorithm random or grid"):
        load_block(space, tmp_path)
    assert load_block(space.replace("motpe", "random"), tmp_path) == "search space"
    with pytest.raises(Exception, match=r"loss\.mu"):
        load_block("model: {name: coded_resnext_mini}\nloss: {mu: -1}\n", tmp_path)
    fragment = "# fragment of search_spaces/quickstart.yaml\ntune: {algorithm: nope}\n"
    with pytest.raises(Exception, match="nope"):
        load_block(fragment, tmp_path)
    assert load_block("cluster_name: x\nmax_workers: 4\n", tmp_path) is None
    with pytest.raises(ValueError, match="fragment of"):
        load_block("tune: {algorithm: motpe}\n", tmp_path)


# ---- figures stated in several places ------------------------------------------------------------------
def test_the_quickstarts_wall_time_is_stated_alike_where_it_is_stated():
    """The quickstart's measured wall time appears in the README, its search space and scripts/run.sh."""
    stated = {}
    for name in ("README.md", "search_spaces/quickstart.yaml", "scripts/run.sh"):
        text = (ROOT / name).read_text(encoding="utf-8")
        stated[name] = set(re.findall(r"\((\d+) s measured", text))
        assert re.search(r"about \d+ minutes", text, re.I), name
    assert len({frozenset(v) for v in stated.values()}) == 1 and all(len(v) == 1 for v in stated.values()), stated


def test_the_architecture_pages_module_table_is_the_import_graph():
    """docs/architecture.md's table of orchestration/ modules names every module once, and for each row the
    orchestration modules its modules import at module level: a split, a new module or a new import that
    the page does not show fails here."""
    import ast

    section = (ROOT / "docs" / "architecture.md").read_text().split("## orchestration/ modules", 1)[1]
    rows = [line.split("|")[1:4] for line in section.splitlines() if line.startswith("| `")]
    listed: dict[str, set[str]] = {}
    for modules, _, imports in rows:
        names = re.findall(r"`(\w+)\.py`", modules)
        said = set(re.findall(r"`(\w+)`", imports))
        for name in names:
            listed[name] = said
    actual: dict[str, set[str]] = {}
    for path in sorted((ROOT / "orchestration").glob("*.py")):
        if path.stem in ("__init__", "cli"):
            continue
        deps = set()
        for node in ast.parse(path.read_text()).body:
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("coded_resnext.orchestration")
            ):
                parts = node.module.split(".")
                deps |= {parts[2]} if len(parts) > 2 else {a.name for a in node.names}
        actual[path.stem] = deps - {path.stem}
    assert set(listed) - {"cli"} == set(actual), "modules missing from the table, or rows for modules that are gone"
    groups = {}
    for modules, _, imports in rows:
        names = tuple(re.findall(r"`(\w+)\.py`", modules))
        groups[names] = set(re.findall(r"`(\w+)`", imports))
    for names, said in groups.items():
        if names == ("cli",):
            continue
        real = set().union(*(actual[n] for n in names)) - set(names)
        assert real == said, f"{names}: the page says {sorted(said)}, the code imports {sorted(real)}"
