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


@dataclass(frozen=True)
class GeneratedScheme:
    """Generator parameters for a stage's scheme; classes and branches come from the model."""

    num_active: int
    min_distance: int | None = None  # None: the largest the generator's fixed effort reaches
    seed: int = 0


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
        return generated_scheme(num_classes, num_branches, spec.num_active, spec.min_distance, spec.seed)
    if isinstance(spec, (str, CodingScheme)):
        return resolve_scheme(spec)
    raise CodingSchemeError(
        f"a stage's scheme must be a name like 'paper:cifar10/5/10', a JSON path, a CodingScheme or "
        f"GeneratedScheme(...), got {type(spec).__name__}"
    )
