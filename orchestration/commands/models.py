"""``coded-resnext models``: the model presets with their sizes and schemes."""

from __future__ import annotations

import argparse

from coded_resnext import create_model, list_models, parameter_count


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list model presets with parameter counts and coded stages")
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    for name in list_models():
        model = create_model(name)
        schemes = ", ".join(f"{stage} {s.name or s.content_hash}" for stage, s in model.schemes.items())
        print(f"{name:<26} classes={model.num_classes:<5} params={parameter_count(model) / 1e6:6.2f}M  {schemes}")
    return 0
