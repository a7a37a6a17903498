"""BatchNorm whose training statistics are those of the global batch of a data-parallel run.

With per-rank BatchNorm each rank normalizes by the statistics of its own share of the batch (half of it
on two ranks), a different and noisier model than one worker training on the whole batch.

Why not ``torch.nn.SyncBatchNorm``: it refuses CPU tensors ("expected input tensor to be on GPU"), and
its CUDA kernels (``batch_norm_stats`` and the rest) have no CPU implementation, so a CPU data-parallel
run (gloo, this project's CI and 2-core machines) cannot use it; and it is not a ``BatchNorm2d``, so
the code that looks for BatchNorm2d after training (folding in ``coded_resnext.extraction.fusion``, extraction of
binary classifiers) would pass it by. This subclass of ``BatchNorm2d`` behaves exactly like it except
in training mode inside an initialized process group of more than one rank: there, each rank's count,
mean and variance are combined by one differentiable all-reduce per layer (``_AllReduceSum``), the same
arithmetic as torch's SyncBatchNorm, on any device and backend.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose backward sums the gradients over ranks (each rank's loss depends on every
    rank's input). ``torch.distributed.nn.functional.all_reduce`` does this but is deprecated, and its
    suggested replacement in ``_functional_collectives`` has no autograd."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class SyncBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` with statistics over all ranks while training in a process group."""

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and self.track_running_stats) or _world_size() == 1:
            return super().forward(x)
        self._check_input_dim(x)
        count = x.numel() // x.shape[1]
        var, mean = torch.var_mean(x.float(), dim=(0, 2, 3), correction=0)  # local, per channel
        # (sum of x, sum of x^2, count) over ranks, in float64: E[x^2] - E[x]^2 of fp32 stats cancels badly
        local = torch.cat([mean.double() * count, (var.double() + mean.double().square()) * count])
        local = torch.cat([local, local.new_tensor([count])])
        total = _AllReduceSum.apply(local)
        n = total[-1]
        channels = x.shape[1]
        global_mean = total[:channels] / n
        global_var = (total[channels : 2 * channels] / n - global_mean.square()).clamp_min(0)
        self._update_running_stats(global_mean.detach(), global_var.detach(), n.detach())
        scale = torch.rsqrt(global_var + self.eps).float()
        if self.weight is not None:
            scale = scale * self.weight
        shift = -global_mean.float() * scale
        if self.bias is not None:
            shift = shift + self.bias
        return x * scale.to(x.dtype)[None, :, None, None] + shift.to(x.dtype)[None, :, None, None]

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor, n: Tensor) -> None:
        """As ``BatchNorm2d`` does: exponential (or, with momentum None, cumulative) average, with the
        unbiased variance of the global batch. All on the device: no host sync per layer."""
        self.num_batches_tracked += 1
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = var * (n / (n - 1).clamp_min(1))
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """``module`` with every ``BatchNorm2d`` replaced (in place below the top) by a ``SyncBatchNorm2d``
        holding the same parameter and buffer tensors, so optimizer state and checkpoints are unaffected
        (as ``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` does)."""
        if type(module) is nn.BatchNorm2d:
            synced = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
            synced.weight, synced.bias = module.weight, module.bias
            synced.running_mean, synced.running_var = module.running_mean, module.running_var
            synced.num_batches_tracked = module.num_batches_tracked
            synced.train(module.training)
            return synced
        for name, child in module.named_children():
            converted = cls.convert(child)
            if converted is not child:
                setattr(module, name, converted)
        return module
