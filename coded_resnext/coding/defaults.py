"""Which scheme a coded stage gets: a spec resolved against the stage's (classes, branches, active)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from coded_resnext.coding.generator import generate_scheme
from coded_resnext.coding.paper import paper_entries, paper_scheme, resolve_scheme
from coded_resnext.coding.scheme import CodingScheme, CodingSchemeError

# A generated scheme is a function of its request and seed (the generator's effort is counted in
# moves, not seconds), so this budget only bounds how long a request may search: running out of it is
# an error, never another scheme. The slowest preset default, (1000, 32, 16) with min_distance=None,
# takes about 16 s on 2 busy cores, so a loaded node still finishes; an explicit distance the search
# cannot meet (below the Johnson bound but out of reach) fails after this long, as `codes generate`.
# The result is cached per process and recorded with every run (its JSON and content hash).
DEFAULT_GENERATOR_BUDGET_S = 120.0
SCHEME_OFF = "off"  # as a stage's (or a block's) scheme: plain ResNeXt blocks there


@dataclass(frozen=True)
class GeneratedScheme:
    """Generator parameters for a stage's scheme; the classes come from the model, the branches from the
    stage unless ``num_branches`` is given, which resizes the stage to that many branches (same width each)."""

    num_active: int
    min_distance: int | None = None  # None: the largest the generator's fixed effort reaches
    seed: int = 0
    num_branches: int | None = None  # None: the stage's own branch count

    def __post_init__(self) -> None:
        if self.num_active < 1 or (self.num_branches is not None and self.num_branches <= self.num_active):
            raise CodingSchemeError(
                f"GeneratedScheme(num_active={self.num_active}, num_branches={self.num_branches}): a generated "
                "scheme needs 1 <= num_active < num_branches; give fewer active branches or more branches"
            )


def published_scheme_for(num_classes: int, num_branches: int, num_active: int) -> CodingScheme | None:
    """The first published scheme with these sizes, or None."""
    for name, entry in paper_entries().items():
        if (entry["num_classes"], entry["num_branches"], entry["num_active"]) == (
            num_classes,
            num_branches,
            num_active,
        ):
            return paper_scheme(name)
    return None


@cache
def generated_scheme(
    num_classes: int, num_branches: int, num_active: int, min_distance: int | None, seed: int
) -> CodingScheme:
    return generate_scheme(
        num_classes,
        num_branches,
        num_active,
        min_distance,
        seed=seed,
        time_budget=DEFAULT_GENERATOR_BUDGET_S,
    )


def scheme_size(spec: str | CodingScheme | GeneratedScheme | None) -> tuple[int, int] | None:
    """(branches, active) that a stage's scheme spec asks for, or None where the stage decides: no spec,
    ``"off"``, or generator parameters without ``num_branches``. A name or a JSON path is read for it."""
    if isinstance(spec, GeneratedScheme):
        return None if spec.num_branches is None else (spec.num_branches, spec.num_active)
    if isinstance(spec, CodingScheme):
        return spec.num_branches, spec.num_active
    if isinstance(spec, str) and spec != SCHEME_OFF:
        scheme = resolve_scheme(spec)
        return scheme.num_branches, scheme.num_active
    return None


def scheme_for_stage(
    spec: str | CodingScheme | GeneratedScheme | None, num_classes: int, num_branches: int, num_active: int
) -> CodingScheme:
    """Resolve a stage's scheme spec; None means published if available, else generated."""
    if spec is None:
        found = published_scheme_for(num_classes, num_branches, num_active)
        if found is not None:
            return found
        spec = GeneratedScheme(num_active)
    if isinstance(spec, GeneratedScheme):
        branches = num_branches if spec.num_branches is None else spec.num_branches
        return generated_scheme(num_classes, branches, spec.num_active, spec.min_distance, spec.seed)
    if isinstance(spec, (str, CodingScheme)):
        return resolve_scheme(spec)
    raise CodingSchemeError(
        f"a stage's scheme must be a name like 'paper:cifar10/5/10', a JSON path, a CodingScheme or "
        f"GeneratedScheme(...), got {type(spec).__name__}"
    )
