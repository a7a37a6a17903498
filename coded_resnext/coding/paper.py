"""The coding schemes published with the paper, by name, for exact reproduction.

Names are ``paper:<dataset>/<active>/<branches>`` as in the release, e.g. ``paper:cifar100/8/20``,
``paper:imagenet/8/32_D8``. The JSON shipped in ``coded_resnext/data`` is the release's data.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path

from coded_resnext.coding.scheme import CodingScheme, CodingSchemeError

PAPER_PREFIX = "paper:"


@cache
def paper_entries() -> dict[str, dict]:
    """The release's JSON entries by full name (``paper:cifar10/5/10``), as stored (read once)."""
    text = resources.files("coded_resnext").joinpath("data/paper_coding_schemes.json").read_text()
    return {f"{PAPER_PREFIX}{e['dataset']}/{e['name']}": e for e in json.loads(text)["schemes"]}


def list_paper_schemes() -> list[str]:
    return list(paper_entries())


def paper_scheme(name: str) -> CodingScheme:
    """A published scheme by name (``paper:cifar10/5/10``; the prefix may be left out)."""
    key = name if name.startswith(PAPER_PREFIX) else PAPER_PREFIX + name
    entries = paper_entries()
    if key not in entries:
        raise CodingSchemeError(f"unknown published scheme {name!r}; choose one of: {', '.join(entries)}")
    entry = dict(entries[key])
    entry["name"] = key
    return CodingScheme.from_dict(entry, source=key)


def resolve_scheme(spec: str | Path | CodingScheme) -> CodingScheme:
    """A scheme from a value, a published name (``paper:...``) or a JSON file path."""
    if isinstance(spec, CodingScheme):
        return spec
    text = str(spec)
    if text.startswith(PAPER_PREFIX):
        return paper_scheme(text)
    return CodingScheme.load(text)
