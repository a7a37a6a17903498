"""What a request may ask for: rule C's best spread, Johnson-type bounds on rule B, and input checks.

Everything here is arithmetic on (K, N, A, D); nothing searches. A request the bounds rule out is a
one-line :class:`CodingSchemeError` before any search starts.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np

from coded_resnext.coding.scheme import CodingSchemeError


def best_spread(num_classes: int, num_branches: int, num_active: int) -> int:
    """Smallest possible column spread (rule C): 0 when K*A/N is an integer, else 1."""
    return 0 if (num_classes * num_active) % num_branches == 0 else 1


@cache
def constant_weight_bound(n: int, delta: int, w: int) -> int:
    """Upper bound on A(n, 2*delta, w), the size of a weight-w code of length n with distance >= 2*delta.

    Johnson's recursive bounds A(n,2d,w) <= floor(n/w * A(n-1,2d,w-1)) and
    <= floor(n/(n-w) * A(n-1,2d,w)), the Johnson bound floor(d*n / (w^2 - w*n + d*n)) and C(n, w).
    """
    w = min(w, n - w)
    if w <= 0:
        return 1
    if delta <= 1:
        return math.comb(n, w)
    if w < delta:  # any two distinct weight-w words are at most 2w < 2*delta apart
        return 1
    if w == delta:  # supports must be disjoint
        return n // w
    bound = min(
        math.comb(n, w),
        n * constant_weight_bound(n - 1, delta, w - 1) // w,
        n * constant_weight_bound(n - 1, delta, w) // (n - w),
    )
    denominator = w * w - w * n + delta * n
    if denominator > 0:
        bound = min(bound, delta * n // denominator)
    return bound


def max_distance_bound(num_classes: int, num_branches: int, num_active: int) -> int:
    """Upper bound on the minimum distance any scheme with these shapes can have (rule B).

    The largest even D <= 2*min(A, N-A) for which the Johnson-type bounds on constant-weight codes
    still allow ``num_classes`` codewords. Not always achieved, but no scheme can beat it.
    """
    validate_shape(num_classes, num_branches, num_active)
    n, w = num_branches, min(num_active, num_branches - num_active)
    for distance in range(2 * w, 0, -2):
        if constant_weight_bound(n, distance // 2, w) >= num_classes:
            return distance
    raise AssertionError("unreachable: distance 2 allows C(N, A) >= K words")  # pragma: no cover


def _is_int(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


def validate_shape(num_classes: int, num_branches: int, num_active: int) -> None:
    for label, value in (("classes", num_classes), ("branches", num_branches), ("active", num_active)):
        if not _is_int(value):
            raise CodingSchemeError(f"number of {label} must be an integer, got {value!r}")
    if num_classes < 2:
        raise CodingSchemeError(f"a coding scheme needs at least 2 classes, got {num_classes}")
    if num_branches < 2:
        raise CodingSchemeError(f"a coding scheme needs at least 2 branches, got {num_branches}")
    if not 1 <= num_active < num_branches:
        raise CodingSchemeError(
            f"active branches per codeword must satisfy 1 <= active < {num_branches} (branches), got {num_active}"
        )
    words = math.comb(num_branches, num_active)
    if num_classes > words:
        raise CodingSchemeError(
            f"{num_classes} classes need distinct codewords but only C({num_branches},{num_active})={words} "
            f"words of weight {num_active} exist over {num_branches} branches; use more branches or a "
            "different active count"
        )


def validate_request(
    num_classes: int,
    num_branches: int,
    num_active: int,
    min_distance: int | None,
    seed: int,
    time_budget: float,
    target_spread: int | None,
) -> int | None:
    """Check everything up front; return the effective (even) distance or None."""
    validate_shape(num_classes, num_branches, num_active)
    if not _is_int(seed) or seed < 0:
        raise CodingSchemeError(f"seed must be a non-negative integer, got {seed!r}")
    if not (isinstance(time_budget, (int, float)) and math.isfinite(time_budget) and time_budget > 0):
        raise CodingSchemeError(f"time budget must be a positive number of seconds, got {time_budget!r}")
    if target_spread is not None:
        if not _is_int(target_spread):
            raise CodingSchemeError(f"target spread must be an integer, got {target_spread!r}")
        lowest = best_spread(num_classes, num_branches, num_active)
        if target_spread < lowest:
            raise CodingSchemeError(
                f"target spread {target_spread} is impossible: {num_classes} classes x {num_active} active "
                f"over {num_branches} branches give column spread >= {lowest}; use a target >= {lowest}"
            )
    if min_distance is None:
        return None
    if not _is_int(min_distance):
        raise CodingSchemeError(f"min distance must be an integer, got {min_distance!r}")
    if min_distance < 1:
        raise CodingSchemeError(f"min distance must be >= 1 (distinct codewords), got {min_distance}")
    distance = int(min_distance) + int(min_distance) % 2
    ceiling = 2 * min(num_active, num_branches - num_active)
    if distance > ceiling:
        raise CodingSchemeError(
            f"min distance {min_distance} is impossible: two words with {num_active} of {num_branches} "
            f"branches active differ in at most {ceiling} places; use a min distance <= {ceiling}"
        )
    bound = max_distance_bound(num_classes, num_branches, num_active)
    if distance > bound:
        capacity = constant_weight_bound(num_branches, distance // 2, num_active)
        raise CodingSchemeError(
            f"min distance {min_distance} is impossible for {num_classes} classes: at most {capacity} "
            f"words of weight {num_active} over {num_branches} branches are pairwise >= {distance} apart "
            f"(Johnson bound); use a min distance <= {bound}"
        )
    return distance
