"""``coded-resnext codes``: generate, check and list coding schemes."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from coded_resnext.coding import CodingScheme, list_paper_schemes, resolve_scheme
from coded_resnext.orchestration.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    codes = sub.add_parser("codes", help="generate, check and list coding schemes")
    codes_sub = codes.add_subparsers(dest="codes_command", required=True, metavar="ACTION")

    gen = codes_sub.add_parser(
        "generate",
        help="generate a scheme (K codewords of weight A over N branches)",
        description=(
            "Generate K distinct codewords of length N with exactly A ones, pairwise Hamming distance "
            ">= D and column sums as equal as possible (the paper's rules A-C, Algorithm 1 improved). "
            "Without --min-distance, climbs D = 2, 4, ... with a fixed effort per distance (counted in moves, "
            "not seconds) and keeps the largest met. The scheme depends only on -K, -N, -A, -D and --seed: the "
            "same on any machine and under any load; --time-budget only decides when to give up."
        ),
    )
    gen.add_argument("--classes", "-K", type=int, required=True, help="number of classes K (codewords)")
    gen.add_argument("--branches", "-N", type=int, required=True, help="number of branches N (codeword length)")
    gen.add_argument("--active", "-A", type=int, required=True, help="active branches per class (ones per codeword)")
    gen.add_argument("--min-distance", "-D", type=int, default=None, help="required minimum Hamming distance")
    gen.add_argument("--seed", type=int, default=0, help="random seed; same inputs and seed give the same scheme")
    gen.add_argument(
        "--time-budget",
        type=float,
        default=120.0,
        help="seconds before giving up with an error (default 120); never changes the scheme",
    )
    gen.add_argument("--name", default=None, help="name stored in the JSON")
    gen.add_argument("--out", "-o", type=Path, required=True, help="JSON file to write")
    gen.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    gen.set_defaults(run=_generate)

    check = codes_sub.add_parser(
        "check",
        help="validate a scheme JSON (or a published name) and print its properties",
        description="Validate FILE.json (or a published name like paper:cifar100/8/20) and print its properties.",
    )
    check.add_argument("scheme", help="path to a scheme JSON, or paper:<dataset>/<name>")
    check.set_defaults(run=_check)

    lst = codes_sub.add_parser("list", help="list the published schemes available by name")
    lst.set_defaults(run=_list)


def _describe(scheme: CodingScheme) -> str:
    sums = scheme.column_sums
    return "\n".join(
        [
            f"name                  {scheme.name or '-'}",
            f"num_classes           {scheme.num_classes}",
            f"num_branches          {scheme.num_branches}",
            f"num_active            {scheme.num_active}  (ratio {scheme.ratio:.3f})",
            f"min_hamming_distance  {scheme.min_distance}",
            f"column_sum_min        {int(sums.min())}",
            f"column_sum_max        {int(sums.max())}",
            f"content_hash          {scheme.content_hash}",
        ]
    )


def _generate(args: argparse.Namespace) -> int:
    from coded_resnext.coding.generator import generate_scheme

    if args.out.parent and not args.out.parent.exists():
        raise UserError(f"output directory {args.out.parent} does not exist; create it first")

    if args.quiet:  # the subcommand's own -q, as `coded-resnext -q codes generate`
        logging.getLogger("coded_resnext.coding.generator").setLevel(logging.WARNING)
    scheme = generate_scheme(
        args.classes,
        args.branches,
        args.active,
        args.min_distance,
        seed=args.seed,
        time_budget=args.time_budget,
    )
    if args.name:
        scheme = CodingScheme(scheme.codewords, name=args.name)
    scheme.save(args.out)
    print(_describe(scheme))
    print(f"wrote {args.out}")
    return 0


def _check(args: argparse.Namespace) -> int:
    scheme = resolve_scheme(args.scheme)
    print(_describe(scheme))
    print("valid: equal weight (rule A), distinct codewords")
    return 0


def _list(args: argparse.Namespace) -> int:
    for name in list_paper_schemes():
        scheme = resolve_scheme(name)
        sums = scheme.column_sums
        print(
            f"{name:<26} K={scheme.num_classes:<5} N={scheme.num_branches:<3} A={scheme.num_active:<3} "
            f"D={scheme.min_distance:<3} column sums {int(sums.min())}..{int(sums.max())}"
        )
    return 0
