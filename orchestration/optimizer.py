"""The optimizer and learning-rate schedule of a run: SGD with Nesterov momentum and a cosine schedule with
an optional linear warm-up (docs/method.md, training), stepped every batch."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from coded_resnext.orchestration.config import RunConfig


@dataclass
class CosineSchedule:
    """The lr factor (of ``optim.lr``) at a training step: linear warm-up from ``warmup_lr_init``, then
    cosine decay to ``lr_min`` over all ``epochs``, as timm's ``CosineLRScheduler`` (``warmup_prefix=False``),
    which the authors' ImageNet run used; with no warm-up it is the ``CosineAnnealingLR`` of their CIFAR code.

    ``schedule_step`` / ``warmup_step`` = ``epoch`` hold the lr for a whole epoch (the authors' code steps
    its schedulers once per epoch), ``batch`` moves it every step. A callable object rather than a lambda,
    so ``LambdaLR`` saves it with the scheduler state; ``tests/test_recipes.py`` checks it against timm.
    """

    lr: float
    lr_min: float
    epochs: int
    steps_per_epoch: int
    warmup_epochs: float = 0.0
    warmup_lr_init: float = 0.0
    schedule_step: str = "epoch"
    warmup_step: str = "epoch"

    def lr_at(self, step: int) -> float:
        exact = step / self.steps_per_epoch  # epochs done, fractional

        def at(unit: str) -> float:
            return exact if unit == "batch" else float(math.floor(exact))

        if self.warmup_epochs > 0 and at(self.warmup_step) < self.warmup_epochs:
            return self.warmup_lr_init + at(self.warmup_step) * (self.lr - self.warmup_lr_init) / self.warmup_epochs
        progress = min(at(self.schedule_step) / self.epochs, 1.0)
        return self.lr_min + 0.5 * (self.lr - self.lr_min) * (1 + math.cos(math.pi * progress))

    def __call__(self, step: int) -> float:
        return self.lr_at(step) / self.lr


def make_optimizer(model: nn.Module, cfg: RunConfig, steps_per_epoch: int):
    """SGD + Nesterov and the lr schedule of ``CosineSchedule`` (docs/method.md section 5), stepped every batch.

    ``optim.decay_norm_and_bias: false`` leaves BatchNorm parameters and biases out of weight decay, as
    timm's optimizer factory does by default (the authors' ImageNet run); their CIFAR code decays all.
    """
    o = cfg.optim
    if o.decay_norm_and_bias:
        params = model.parameters()
    else:
        from timm.optim import param_groups_weight_decay  # the grouping the authors' ImageNet run used

        params = param_groups_weight_decay(model, o.weight_decay)
    opt = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay)
    schedule = CosineSchedule(
        o.lr,
        o.lr_min,
        cfg.train.epochs,
        max(1, steps_per_epoch),
        o.warmup_epochs,
        o.warmup_lr_init,
        o.schedule_step,
        o.warmup_step,
    )
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, schedule)
