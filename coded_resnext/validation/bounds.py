"""Numeric bounds of config fields, declared on the field and checked in one place.

``drop_prob: float = bounded(0.1, ge=0, lt=1)`` declares the field and its range together; ``check_bounds``
(called from ``__post_init__``) raises one line naming the field, the range and the value. Declared as data,
every bound is also walkable: the tests check each one at both of its ends, so a range that drifts from
what it says (``>`` written for ``>=``) fails there.

pydantic's ``Field(ge=..., lt=...)`` is the model for the spelling; the configs stay plain dataclasses
(one-line errors, no runtime dependency), so this is the few lines of it they need.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Bound:
    """A closed or open interval; ``None`` ends are unbounded. ``nullable``: ``None`` is allowed too."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    nullable: bool = False
    unit: str = ""  # said after the range: "must be > 0 seconds"

    def allows(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if isinstance(value, float) and math.isnan(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))

    def describe(self) -> str:
        """``must be >= 1``, ``must be in [0, 1)``, ``must be > 0 or null``."""
        if self.low is not None and self.high is not None:
            text = (
                f"in {'(' if self.low_open else '['}{_num(self.low)}, {_num(self.high)}{')' if self.high_open else ']'}"
            )
        elif self.low is not None:
            text = f"{'>' if self.low_open else '>='} {_num(self.low)}"
        else:
            text = f"{'<' if self.high_open else '<='} {_num(self.high)}"
        unit = f" {self.unit}" if self.unit else ""
        return f"must be {text}{unit}" + (" or null" if self.nullable else "")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def bounded(
    default: Any = dataclasses.MISSING,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    nullable: bool = False,
    unit: str = "",
) -> Any:
    """A dataclass field with ``default`` (none: a required field) and the bound ``ge``/``gt`` (low end),
    ``le``/``lt`` (high end)."""
    if (ge is not None and gt is not None) or (le is not None and lt is not None):
        raise TypeError("give one of ge/gt and one of le/lt")
    bound = Bound(
        low=ge if gt is None else gt,
        high=le if lt is None else lt,
        low_open=gt is not None,
        high_open=lt is not None,
        nullable=nullable,
        unit=unit,
    )
    return dataclasses.field(default=default, metadata={"bound": bound})


def field_bounds(cls_or_obj: Any) -> dict[str, Bound]:
    """The declared bound of every bounded field of a dataclass, by field name."""
    return {f.name: f.metadata["bound"] for f in dataclasses.fields(cls_or_obj) if "bound" in f.metadata}


def check_bounds(obj: Any, prefix: str = "", error: type[Exception] = ValueError) -> None:
    """Raise ``error("<prefix><field>: must be ..., got <value>")`` for the first field outside its bound."""
    for name, bound in field_bounds(obj).items():
        value = getattr(obj, name)
        if not bound.allows(value):
            raise error(f"{prefix}{name}: {bound.describe()}, got {value}")
