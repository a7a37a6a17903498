"""The thresholds of an early exit: one per coded block, checked once, and the error a bad one raises.

Apart from the network because the exported program (``early_exit.export``) checks the thresholds it
is loaded with the same way, without building an ``EarlyExit``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real


class EarlyExitError(ValueError):
    """A threshold that is not usable (one-line message naming the value and what to give instead)."""


def check_thresholds(threshold: float | Sequence[float], num_exits: int) -> list[float]:
    """One float per coded block from a float (shared) or a per-block sequence; NaN and non-numbers are
    refused. ``math.inf`` never exits."""
    if isinstance(threshold, Real) and not isinstance(threshold, bool):
        values = [float(threshold)] * num_exits
    elif isinstance(threshold, Sequence) and not isinstance(threshold, str | bytes):
        if len(threshold) != num_exits:
            raise EarlyExitError(
                f"threshold: got {len(threshold)} per-block values but the model has {num_exits} coded blocks; "
                f"give one number, or a list of {num_exits}"
            )
        values = list(threshold)
    else:
        raise EarlyExitError(
            f"threshold: {threshold!r} is not a number; give a float (math.inf: never exit) "
            f"or a list of {num_exits} floats, one per coded block"
        )
    for value in values:
        if isinstance(value, bool) or not isinstance(value, Real) or math.isnan(value):
            raise EarlyExitError(
                f"threshold: {value!r} is not a number; give a float (math.inf: never exit) "
                f"or a list of {num_exits} floats, one per coded block"
            )
    return [float(v) for v in values]
