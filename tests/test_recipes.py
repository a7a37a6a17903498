"""The paper recipes' training choices, each checked against what the authors' code does: the lr schedule
(per epoch or per batch, warm-up as timm's), weight decay on BatchNorm and biases, and the shipped paper
recipes' settings and headers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from timm.scheduler import CosineLRScheduler
from torch import nn

from coded_resnext.orchestration.config import ConfigError, load_config
from coded_resnext.orchestration.optimizer import CosineSchedule, make_optimizer

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
SPE = 7  # steps per epoch


def _timm_lrs(epochs: int, warmup: int, per_epoch: bool, lr=0.4, lr_min=1e-5, warmup_lr_init=1e-4) -> list[float]:
    """timm's CosineLRScheduler (the authors' ImageNet run) at every batch of ``epochs`` epochs."""
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    scale = 1 if per_epoch else SPE
    sched = CosineLRScheduler(
        opt,
        t_initial=epochs * scale,
        lr_min=lr_min,
        warmup_t=warmup * scale,
        warmup_lr_init=warmup_lr_init,
        t_in_epochs=per_epoch,
    )
    out = []
    for step in range(epochs * SPE):
        if per_epoch:
            sched.step(step // SPE)
        else:
            sched.step_update(step)
        out.append(opt.param_groups[0]["lr"])
    return out


def _ours(epochs: int, warmup: int, unit: str, lr=0.4, lr_min=1e-5, warmup_lr_init=1e-4) -> list[float]:
    schedule = CosineSchedule(lr, lr_min, epochs, SPE, warmup, warmup_lr_init, unit, unit)
    return [schedule.lr_at(step) for step in range(epochs * SPE)]


@pytest.mark.parametrize("unit", ["epoch", "batch"])
def test_schedule_with_warmup_is_timms(unit):
    ours, theirs = _ours(12, 3, unit), _timm_lrs(12, 3, per_epoch=unit == "epoch")
    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12)
    if unit == "epoch":  # held for a whole epoch, moved at the epoch boundary
        assert len(set(ours[:SPE])) == 1 and ours[SPE] != ours[SPE - 1]
    else:
        assert ours[1] != ours[0]


def test_schedule_without_warmup_is_the_cifar_codes_cosine_annealing_per_epoch():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    annealing = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10, eta_min=1e-5)
    theirs = []
    for _ in range(10):  # Lightning steps it once per epoch
        theirs += [opt.param_groups[0]["lr"]] * SPE
        opt.step()
        annealing.step()
    assert _ours(10, 0, "epoch", lr=0.1) == pytest.approx(theirs, rel=1e-9)


def _cfg(*overrides: str):
    return load_config(None, ["data.name=synthetic", "train.epochs=4", "optim.lr=0.4", *overrides])


def test_make_optimizer_steps_the_schedule_every_batch():
    model = nn.Linear(3, 2)
    cfg = _cfg("optim.warmup_epochs=1", "optim.lr_min=0.001")
    opt, scheduler = make_optimizer(model, cfg, SPE)
    seen = []
    for _ in range(4 * SPE):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    expected = CosineSchedule(0.4, 0.001, 4, SPE, 1.0, 1e-4, "epoch", "epoch")
    assert seen == pytest.approx([expected.lr_at(i) for i in range(4 * SPE)])
    assert seen[0] == pytest.approx(1e-4) and seen[SPE] == pytest.approx(
        0.001 + 0.5 * 0.399 * (1 + math.cos(math.pi / 4))
    )
    # batch-stepped warm-up and cosine move inside the epoch
    opt, scheduler = make_optimizer(model, _cfg("optim.schedule_step=batch", "optim.warmup_step=batch"), SPE)
    first = opt.param_groups[0]["lr"]
    opt.step()
    scheduler.step()
    assert opt.param_groups[0]["lr"] < first


def test_decay_norm_and_bias_false_leaves_batchnorm_and_biases_out_of_weight_decay():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Linear(4, 2))
    opt, _ = make_optimizer(model, _cfg("optim.decay_norm_and_bias=false", "optim.weight_decay=0.01"), SPE)
    by_decay = {g["weight_decay"]: {id(p) for p in g["params"]} for g in opt.param_groups}
    assert by_decay[0.0] == {id(p) for p in (model[1].weight, model[1].bias, model[2].bias)}
    assert by_decay[0.01] == {id(model[0].weight), id(model[2].weight)}
    opt, _ = make_optimizer(model, _cfg("optim.weight_decay=0.01"), SPE)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01]
    assert len(opt.param_groups[0]["params"]) == len(list(model.parameters()))


def test_fractional_warmup_needs_batch_steps():
    with pytest.raises(ConfigError, match=r"optim\.warmup_epochs: must be a whole number of epochs"):
        _cfg("optim.warmup_epochs=0.5")
    assert _cfg("optim.warmup_epochs=0.5", "optim.warmup_step=batch").optim.warmup_epochs == 0.5
    with pytest.raises(ConfigError, match=r"optim\.warmup_lr_init"):
        _cfg("optim.warmup_lr_init=1.0")


# ---- the shipped paper recipes ------------------------------------------------------------------------
PAPER_RECIPES = {"cifar10_paper": 10, "cifar100_paper": 100, "imagenet_paper": 1000}
# every choice the paper leaves open, set explicitly in each recipe so its header can say where it comes from
SOURCED_KEYS = [
    ("model", "branch_merge"),
    ("model", "mask_grads"),
    ("model", "expand_init"),
    ("loss", "label_smoothing"),
    ("optim", "decay_norm_and_bias"),
    ("optim", "schedule_step"),
    ("data", "randaugment"),
    ("data", "randaugment_order"),
    ("eval", "binary_fit_samples"),
    ("eval", "binary_fit_augmented"),
    ("eval", "binary_fit_negatives_per_positive"),
    ("eval", "binary_fit_draws"),
    ("eval", "ood_negatives_per_positive"),
]
# the smallest class's share of the training split: CIFAR-100's 500 of 50,000; ImageNet's 732 of 1,281,167
SMALLEST_CLASS_SHARE = {
    "cifar10_paper": 5000 / 50_000,
    "cifar100_paper": 500 / 50_000,
    "imagenet_paper": 732 / 1_281_167,
}


@pytest.mark.parametrize("name", sorted(PAPER_RECIPES))
def test_paper_recipes_set_every_open_choice_and_say_where_it_comes_from(name):
    path = ROOT / "search_spaces" / f"{name}.yaml"
    raw = yaml.safe_load(path.read_text())
    for section, key in SOURCED_KEYS:
        assert key in raw[section], f"{name}: {section}.{key} not set explicitly"
    header = path.read_text().split("\nmodel:")[0]
    assert "[paper]" in header and "[code]" in header
    cfg = load_config(path)
    assert cfg.model.expand_init == "fan_out_grouped" and cfg.optim.schedule_step == "epoch"
    assert cfg.data.randaugment_order == "after_crop"  # the paper's text
    assert cfg.eval.binary_classes >= PAPER_RECIPES[name]  # every class's binary classifier (Fig. 2c / 8)
    assert cfg.data.val_fraction == 0.0 and "protocol:" in header  # the paper's: train on all, report test
    # the authors' fit: augmented training images, 9 negatives per positive over 10 draws, and >= 50 positives
    # per class in the stratified fit sample
    assert (cfg.eval.binary_fit_augmented, cfg.eval.binary_fit_negatives_per_positive) == (True, 9)
    assert cfg.eval.binary_fit_draws == 10 and cfg.eval.negatives_per_positive == 9
    assert int(cfg.eval.binary_fit_samples * SMALLEST_CLASS_SHARE[name]) >= 50


def test_imagenet_recipe_follows_timms_defaults_where_the_paper_is_silent():
    cfg = load_config(ROOT / "search_spaces" / "imagenet_paper.yaml")
    assert (cfg.loss.label_smoothing, cfg.optim.decay_norm_and_bias, cfg.optim.warmup_step) == (0.1, False, "epoch")
    assert (cfg.optim.warmup_epochs, cfg.optim.warmup_lr_init, cfg.optim.lr_min) == (5, 1e-4, 1e-5)
    assert cfg.data.randaugment == [2, 10]
    cifar = load_config(ROOT / "search_spaces" / "cifar10_paper.yaml")
    assert (cifar.optim.decay_norm_and_bias, cifar.loss.label_smoothing, cifar.data.randaugment) == (True, 0.0, [3, 4])


def test_coding_loss_power_ablation_has_the_papers_three_exponents():
    raw = yaml.safe_load((ROOT / "search_spaces" / "ablation_coding_loss_power.yaml").read_text())
    assert sorted(raw["grid"]["loss.power"]) == [1.0, 2.0, 4.0]


def test_data_limited_ablation_is_coded_against_control_on_five_seeds():
    from coded_resnext.orchestration.ablation import load_ablation

    space, metrics = load_ablation(ROOT / "search_spaces" / "ablation_data_limited.yaml")
    assert set(space.cells) == {"control", "coded"} and "train/accuracy" in metrics
    assert len(yaml.safe_load((ROOT / "search_spaces" / "ablation_data_limited.yaml").read_text())["seeds"]) >= 5
    cfg = space.base_config()
    assert cfg.data.limit_train == 6000 and cfg.train.epochs >= 30 and cfg.model.width_multiplier > 1


def test_the_overfitting_follow_up_drops_the_augmentation_and_keeps_five_paired_seeds():
    """ablation_data_limited.yaml's control never over-fitted under RandAugment; its follow-up removes the
    augmentation on fewer images and reports binary and early-exit figures beside accuracy."""
    from coded_resnext.orchestration.ablation import load_ablation

    space, metrics = load_ablation(ROOT / "search_spaces" / "ablation_data_limited_overfit.yaml")
    raw = yaml.safe_load((ROOT / "search_spaces" / "ablation_data_limited_overfit.yaml").read_text())
    assert set(space.cells) == {"control", "coded"} and len(raw["seeds"]) == 5
    cfg = space.base_config()
    assert (cfg.data.augment, cfg.data.randaugment) == (False, None) and cfg.data.limit_train < 6000
    assert {"val/loss", "train/accuracy", "binary/f1_mean", "early_exit/compute_at_99pct_accuracy"} <= set(metrics)


def test_a_paper_recipes_smoke_test_keeps_its_warmup_and_removes_branches_in_one_block():
    from coded_resnext.orchestration.config import smoke_test_config

    cfg = smoke_test_config(load_config(ROOT / "search_spaces" / "imagenet_paper.yaml"))
    assert cfg.optim.warmup_epochs == 1 and cfg.train.epochs == 2  # a warm-up epoch, then the cosine
    assert cfg.eval.removal_block == -1  # the last coded block's removal curves, not all nine
    assert cfg.loss.label_smoothing == 0.1 and cfg.data.randaugment == [2, 10]  # the recipe itself is kept
