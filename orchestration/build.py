"""What a run is built from: its device, its data, its model and the schemes it was trained with, its
loaders and the data the evaluation suite reads; and the same model again from a checkpoint.

The factory every place that runs or reads a run uses (the training loop, a trial, ``evaluate``,
``extract``, ``bench``, the benchmarks), so a config means one model and one dataset everywhere.
"""

from __future__ import annotations

import dataclasses
import json
import random
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader, DistributedSampler

from coded_resnext import CodedResNeXt, load_checkpoint, model_config
from coded_resnext.coding import CodingScheme
from coded_resnext.coding.defaults import GeneratedScheme
from coded_resnext.datasets import DatasetBundle, DataSpec, build_ood_dataset
from coded_resnext.evaluation import SuiteData
from coded_resnext.models.config import SCHEME_OFF, StageConfig
from coded_resnext.orchestration import acceleration
from coded_resnext.orchestration.config import RunConfig, SchemeGenerator, config_from_dict
from coded_resnext.orchestration.errors import UserError


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(preference: str) -> torch.device:
    if preference == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device=cuda but no GPU is visible; use train.device=auto or cpu")
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(preference)


# ---- building ---------------------------------------------------------------------------------------
def data_spec(cfg: RunConfig) -> DataSpec:
    d = cfg.data
    return DataSpec(
        name=d.name,
        root=d.root,
        download=d.download,
        val_fraction=d.val_fraction,
        split_seed=d.split_seed,
        randaugment=tuple(d.randaugment) if d.randaugment else None,
        randaugment_order=d.randaugment_order,
        augment=d.augment,
        image_size=d.image_size,
        limit_train=d.limit_train,
        limit_val=d.limit_val,
        limit_test=d.limit_test,
    )


def _scheme_spec(value: str | SchemeGenerator | None) -> str | GeneratedScheme | None:
    if isinstance(value, SchemeGenerator):  # branches, when given, resize the stage (the library sizes it)
        return GeneratedScheme(value.active, value.min_distance, value.seed, num_branches=value.branches or None)
    return value


def _stage_spec(cfg: RunConfig, stage: StageConfig) -> Any:
    """The config's scheme spec for ``stage``: one spec, or a tuple with one per block for scheme runs."""
    value = getattr(cfg.coding, stage.name)
    if not isinstance(value, list):
        return _scheme_spec(value)
    covered = sum(run.blocks for run in value)
    if covered != stage.depth:
        raise UserError(
            f"coding.{stage.name}: the runs cover {covered} blocks but stage {stage.name} of {cfg.model.name} has "
            f"{stage.depth}; make their blocks add up to {stage.depth}"
        )
    return tuple(_scheme_spec(run.scheme) for run in value for _ in range(run.blocks))


def build_model(cfg: RunConfig, num_classes: int, in_chans: int, schemes: dict[str, Any] | None = None) -> CodedResNeXt:
    """The configured model; ``schemes`` (per stage: a spec, or one per block) replaces the config's coding section.

    A stage whose scheme has another branch count than the preset (generator ``branches``, or a named
    scheme such as ``paper:cifar100/8/20`` on a 10-branch stage) gets that many branches, same width each.
    """
    stages = model_config(cfg.model.name).stages
    stage_names = [stage.name for stage in stages]
    if schemes is None:
        schemes = {}
        for item in dataclasses.fields(cfg.coding):
            value = getattr(cfg.coding, item.name)
            if value is None:
                continue
            if item.name not in stage_names:
                raise UserError(
                    f"coding.{item.name}: model {cfg.model.name} has no stage {item.name}; its stages are {stage_names}"
                )
            schemes[item.name] = _stage_spec(cfg, stages[stage_names.index(item.name)])
    overrides = {} if cfg.loss.mu is None else {"coding_loss_weight": cfg.loss.mu}  # None: the preset's own mu
    model = CodedResNeXt(
        model_config(
            cfg.model.name,
            num_classes,
            in_chans=in_chans,
            width_multiplier=cfg.model.width_multiplier,
            control=cfg.model.control,
            energy_impl=cfg.model.energy_impl,
            label_smoothing=cfg.loss.label_smoothing,
            branch_merge=cfg.model.branch_merge,
            mask_grads=cfg.model.mask_grads,
            expand_init=cfg.model.expand_init,
            coding_loss_power=cfg.loss.power,
            coding_loss_threshold=cfg.loss.threshold,
            drop_prob=cfg.loss.p_drop,
            schemes=schemes,
            **overrides,
        )
    )
    count, block = len(model.coded_blocks), cfg.eval.removal_block
    if block is not None and count and not -count <= block < count:
        # checked here, before training, rather than when the evaluation suite reaches it
        raise UserError(
            f"eval.removal_block={block}: model {cfg.model.name} has {count} coded blocks; "
            f"give 0..{count - 1}, -1 for the last, or null for all of them"
        )
    return model


def train_loader(
    bundle: DatasetBundle, cfg: RunConfig, epoch: int, rank: int = 0, world_size: int = 1, device_type: str = "cpu"
) -> DataLoader:
    """Rank ``rank``'s shuffled loader, at ``epoch``: the order depends only on (seed, epoch), so resume
    replays it, and ranks see disjoint shards of one permutation; the global batch is split evenly.
    One loader serves every epoch (``loader.sampler.set_epoch``), so its worker processes persist."""
    sampler = DistributedSampler(
        bundle.train, num_replicas=world_size, rank=rank, shuffle=True, seed=cfg.seed * 100_003, drop_last=True
    )
    sampler.set_epoch(epoch)
    per_rank = cfg.optim.batch_size // world_size
    t = cfg.train
    workers = acceleration.loader_workers(t.loader_workers, device_type, t.cpus_per_worker)
    return DataLoader(
        bundle.train,
        batch_size=per_rank,
        sampler=sampler,
        drop_last=len(sampler) > per_rank,
        **acceleration.loader_options(workers, device_type, t.prefetch_factor),
    )


def eval_loader(dataset, cfg: RunConfig, device_type: str = "cpu") -> DataLoader:
    workers = acceleration.loader_workers(cfg.train.loader_workers, device_type, cfg.train.cpus_per_worker)
    return DataLoader(dataset, batch_size=max(cfg.optim.batch_size, 256), shuffle=False, num_workers=workers)


def saved_schemes(model: CodedResNeXt) -> dict[str, Any]:
    """Per stage with coded blocks, its scheme as a dict; a stage whose scheme changes inside it, a list
    with one entry per block (a dict, or null for a plain block). ``model_from_checkpoint`` reads both."""
    out: dict[str, Any] = {}
    for stage, per_block in model.block_schemes.items():
        if len(set(per_block)) == 1:
            out[stage] = per_block[0].to_dict()
        else:
            out[stage] = [None if s is None else s.to_dict() for s in per_block]
    return out


def _saved_stage(entry: Any) -> Any:
    if isinstance(entry, list):
        return tuple(SCHEME_OFF if e is None else CodingScheme.from_dict(e) for e in entry)
    return CodingScheme.from_dict(entry)


def checkpoint_schemes(cfg: RunConfig, state: dict[str, Any]) -> dict[str, Any]:
    """Per stage of the model, the checkpoint's scheme as codewords (one per block for a split stage), or "off"."""
    saved = {stage: _saved_stage(entry) for stage, entry in json.loads(state["schemes"]).items()}
    return {stage.name: saved.get(stage.name, SCHEME_OFF) for stage in model_config(cfg.model.name).stages}


def _block_hashes(model: CodedResNeXt) -> dict[str, list[str]]:
    """Per stage, each block's scheme content hash ("off" for a plain block)."""
    return {
        stage: [SCHEME_OFF if s is None else s.content_hash for s in per_block]
        for stage, per_block in model.block_schemes.items()
    }


def resume_schemes(cfg: RunConfig, state: dict[str, Any], num_classes: int, in_chans: int) -> dict[str, Any]:
    """The schemes a resumed run is built with: the checkpoint's. The codewords are non-persistent
    buffers, so loading the weights into a model with another scheme would go unnoticed; a config that
    now asks for another scheme (a generator change, an edited scheme file) is an error naming both."""
    saved = checkpoint_schemes(cfg, state)
    with torch.device("meta"):  # both models' schemes, without allocating either
        asked = _block_hashes(build_model(cfg, num_classes, in_chans))
        was = _block_hashes(build_model(cfg, num_classes, in_chans, saved))
    for stage in sorted(set(asked) | set(was)):
        old, new = was.get(stage, [SCHEME_OFF]), asked.get(stage, [SCHEME_OFF])
        if old != new:
            show = lambda hashes: hashes[0] if len(set(hashes)) == 1 else "/".join(hashes)  # noqa: E731
            raise UserError(
                f"coding.{stage}: the checkpoint was trained with scheme {show(old)} but the config now gives scheme "
                f"{show(new)}; resuming would train another code on the old weights, so start this run over "
                "(remove its checkpoints) instead of resuming"
            )
    return saved


def checkpoint_config(state: dict[str, Any]) -> RunConfig:
    """The run config a checkpoint was trained with."""
    return config_from_dict(yaml.safe_load(state["config"]))


def model_from_checkpoint(state: dict[str, Any]) -> CodedResNeXt:
    """Rebuild the trained model from a checkpoint alone: its config, its schemes (as codewords, so a
    moved scheme file or a regenerated scheme cannot change it) and its weights. A checkpoint that carries
    the model's own config (``coded_resnext.checkpoint_state``) is the library's to load; one written before
    checkpoints carried it is rebuilt from its run config."""
    if "model_config" in state:
        return load_checkpoint(state)
    cfg = checkpoint_config(state)
    model = build_model(cfg, state["num_classes"], state["in_chans"], checkpoint_schemes(cfg, state))
    model.load_state_dict(state["model"])
    return model.eval()


def suite_data(bundle: DatasetBundle, cfg: RunConfig, *, test: bool, device_type: str = "cpu") -> SuiteData:
    """What the evaluation suite reads for a run of ``cfg``: the test split only when ``test``."""
    ood = None
    if cfg.data.ood:
        ood = build_ood_dataset(cfg.data.ood, bundle, root=cfg.data.root, download=cfg.data.download)
    return SuiteData(
        fit=bundle.train_eval,
        fit_augmented=bundle.train,
        val=bundle.val,
        test=bundle.test if test else None,
        ood=ood,
        loader=lambda dataset: eval_loader(dataset, cfg, device_type),
    )
