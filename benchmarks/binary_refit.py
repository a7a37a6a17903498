"""The paper's binary classifiers vs the same classifiers with their output row refit, on trained checkpoints.

    python benchmarks/binary_refit.py runs/checkpoints/<hash>/epoch-0009.pt [more checkpoints ...]

For every class of each checkpoint (its config names the data), this runs the evaluation suite's binary
step (``coded_resnext/evaluation/binary.py``, as training does at the end) and prints validation F1 of
the paper's classifier (row k of the final layer), of the refit one (``refit.py``: a logistic
regression on the pruned network's own features of the same training samples that fit the threshold),
and of the full network's one-vs-rest softmax, with the gaps to the full network. The last column scores
the full network as the paper's classifier scores (its raw logit k): its gap to the softmax column is
what scoring by one logit costs before any pruning. About a minute per checkpoint of the quickstart
preset on 2 cores.
"""

from __future__ import annotations

import argparse
import functools
import os
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", type=Path, nargs="+")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    import numpy as np
    import torch
    import yaml

    from coded_resnext.datasets import build_dataset, build_ood_dataset
    from coded_resnext.datasets.sampling import stratified_subset
    from coded_resnext.evaluation import collect
    from coded_resnext.evaluation.binary import (
        OodNegatives,
        binary_summary,
        fit_binary_classifiers,
        measure_binary_classifiers,
    )
    from coded_resnext.evaluation.suite import binary_fit_set
    from coded_resnext.orchestration.build import data_spec, eval_loader, model_from_checkpoint, suite_data
    from coded_resnext.orchestration.checkpoint import load_checkpoint
    from coded_resnext.orchestration.config import config_from_dict

    device = torch.device("cpu")
    summaries = []
    for path in args.checkpoints:
        state = load_checkpoint(path)
        model = model_from_checkpoint(state)
        cfg = config_from_dict(yaml.safe_load(state["config"]))
        bundle = build_dataset(data_spec(cfg))
        ood = None
        if cfg.data.ood:
            images = build_ood_dataset(cfg.data.ood, bundle, root=cfg.data.root, download=False)
            ood = OodNegatives(eval_loader(images, cfg), images.source_targets)
        # the samples the run's suite uses: its fit sample of the training split, the validation split
        loader = functools.partial(eval_loader, cfg=cfg)
        fit_set = binary_fit_set(suite_data(bundle, cfg, test=False), cfg.eval, cfg.seed)
        fitted = fit_binary_classifiers(
            model,
            list(range(model.num_classes)),
            fit_set,
            loader,
            collect(model, loader(fit_set), device),
            device,
            negatives_per_positive=cfg.eval.binary_fit_negatives_per_positive,
            draws=cfg.eval.binary_fit_draws,
            seed=cfg.seed,
        )
        val_loader = eval_loader(stratified_subset(bundle.val, cfg.eval.limit_val, cfg.seed), cfg)
        rows, _ = measure_binary_classifiers(
            model,
            fitted,
            val_loader,
            collect(model, val_loader, device),
            device,
            ood=ood,
            negatives_per_positive=cfg.eval.negatives_per_positive,
            ood_negatives_per_positive=cfg.eval.ood_negatives_per_positive,
            seed=cfg.seed,
        )
        print(f"\n{path} (seed {cfg.seed}, control={cfg.model.control})")
        print(f"{'class':>5} {'paper F1':>9} {'refit F1':>9} {'full F1':>8} {'full logit F1':>14}")
        for r in rows:
            print(f"{r['class']:>5} {r['f1']:9.3f} {r['refit_f1']:9.3f} {r['full_f1']:8.3f} {r['full_logit_f1']:14.3f}")
        s = binary_summary(rows)
        summaries.append(s)
        print(
            f" mean {s['binary/f1_mean']:9.3f} {s['binary/refit_f1_mean']:9.3f} {s['binary/full_f1_mean']:8.3f}"
            f" {s['binary/full_logit_f1_mean']:14.3f}"
            f"   gap to full: paper {s['binary/full_f1_mean'] - s['binary/f1_mean']:.3f},"
            f" refit {s['binary/full_f1_mean'] - s['binary/refit_f1_mean']:.3f}"
        )
        if "binary/ood_precision_mean" in s:
            print(
                f" OOD precision: paper {s['binary/ood_precision_mean']:.3f}, "
                f"refit {s['binary/refit_ood_precision_mean']:.3f}"
            )
    if len(summaries) > 1:
        gap = lambda key: np.mean([s["binary/full_f1_mean"] - s[key] for s in summaries])  # noqa: E731
        print(
            f"\nover {len(summaries)} checkpoints, mean gap to the full network's F1: "
            f"paper {gap('binary/f1_mean'):.3f}, refit {gap('binary/refit_f1_mean'):.3f}"
        )


if __name__ == "__main__":
    main()
