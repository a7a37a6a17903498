"""The only place the generator reads the clock, and all the clock may do: stop the search.

Every decision of the search uses counts (moves, swaps, restarts) and seeded random numbers, so its
answer is a function of the request and the seed. The time budget is checked at fixed points of the
loops; when it has passed, :class:`OutOfTime` unwinds the whole search and the driver turns it into a
one-line error. No partial result survives it, so a slow or loaded machine can turn a success into
a clear failure but never into another scheme.
"""

from __future__ import annotations

import time


def now() -> float:
    """Seconds on a monotonic clock (a seam for tests that slow the clock down)."""
    return time.monotonic()


class OutOfTime(Exception):  # a signal between the generator's modules, never seen by users
    """The time budget passed; raised through every search loop up to the driver."""


class Deadline:
    """A time budget in seconds (``math.inf``: no limit), started on creation."""

    def __init__(self, seconds: float) -> None:
        self.started = now()
        self._at = self.started + seconds

    def check(self) -> None:
        """Raise :class:`OutOfTime` once the budget has passed."""
        if now() > self._at:
            raise OutOfTime

    def elapsed(self) -> float:
        return now() - self.started
