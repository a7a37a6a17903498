"""Options several subcommands share."""

from __future__ import annotations

import argparse

from coded_resnext.orchestration.errors import UserError
from coded_resnext.validation import Bound

# The numeric options' ranges, by option name (walked by tests/test_bounds.py at both ends of each).
OPTION_BOUNDS: dict[str, Bound] = {
    "--extend": Bound(low=1, unit="trials"),
    "--top": Bound(low=1),
    "--batch-size": Bound(low=1),
    "--batch-sizes": Bound(low=1),
    "--rounds": Bound(low=1),
    "--samples": Bound(low=1),
    "--samples-at-batch-1": Bound(low=1),
    "--exit-rate": Bound(low=0, high=1, low_open=True, high_open=True),  # the share of samples that exit early
    # the share of the samples reaching each coded block that leave there
    "--block-exit-rate": Bound(low=0, high=1, low_open=True, high_open=True),
    "--at-accuracy": Bound(low=0, high=1, low_open=True),  # the share of the full accuracy to keep
}


def check_option(name: str, value: float | None) -> float | None:
    """``value`` of option ``name`` (``None``: not given), or a one-line ``UserError`` naming its range."""
    bound = OPTION_BOUNDS[name]
    if value is not None and not bound.allows(value):
        raise UserError(f"{name} {value}: {bound.describe()}")
    return value


def add_overrides(parser: argparse.ArgumentParser, help: str) -> None:
    """``--set SECTION.KEY=VALUE`` (repeatable), collected in ``args.overrides``."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE", help=help)
