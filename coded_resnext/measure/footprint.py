"""What training a model will hold in memory, estimated before a single weight is allocated.

Build the model on the meta device (``with torch.device("meta")``) and pass it here: parameters, their
gradients and the optimizer's per-parameter state come from the parameter count, and one batch's
activations from a forward pass on meta tensors of the batch's shape, summing the outputs of every leaf
module (what autograd keeps for the backward pass, to a first approximation: in-place activations and the
coded blocks' own saved tensors make it an estimate, within a small factor). Meta tensors carry shapes and
dtypes only, so the estimate of a model that needs terabytes takes a fraction of a second and no memory.

``torch.profiler`` measures what a step really allocates (``peak_memory``) but needs the step to run, which
is what a configuration too large for the device cannot do.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from coded_resnext.models.coded_resnext import CodedResNeXt


@dataclass(frozen=True)
class TrainingFootprint:
    """Bytes one training step holds: weights, gradients, optimizer state and one batch's activations."""

    parameters: int
    gradients: int
    optimizer_state: int
    activations: int

    @property
    def fixed(self) -> int:
        """What does not depend on the batch: weights, gradients and optimizer state."""
        return self.parameters + self.gradients + self.optimizer_state

    @property
    def total(self) -> int:
        return self.fixed + self.activations


def training_footprint(
    model: CodedResNeXt, input_shape: tuple[int, int, int, int], optimizer_slots: int = 1
) -> TrainingFootprint:
    """The footprint of training ``model`` (built on the meta device) on batches of ``input_shape``
    (B, C, H, W), with ``optimizer_slots`` tensors of state per parameter (SGD with momentum: 1, Adam: 2)."""
    if any(p.device.type != "meta" for p in model.parameters()):
        raise ValueError("training_footprint: build the model on the meta device (with torch.device('meta'))")
    parameters = sum(p.numel() * p.element_size() for p in model.parameters())
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    activations = 0

    def count(module: nn.Module, inputs, output) -> None:
        nonlocal activations
        for tensor in output if isinstance(output, tuple | list) else (output,):
            if isinstance(tensor, torch.Tensor):
                activations += tensor.numel() * tensor.element_size()

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    was_training = model.training
    try:
        model.train()
        x = torch.empty(input_shape, device="meta")
        y = torch.zeros(input_shape[0], dtype=torch.long, device="meta")
        model.loss(model.forward_with_aux(x, targets=y), y)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return TrainingFootprint(parameters, trainable, trainable * optimizer_slots, activations)
