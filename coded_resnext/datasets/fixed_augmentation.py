"""A dataset whose random transforms draw the same augmentation of a sample every time it is read.

The binary classifiers are fitted on augmented training images, as the authors fit them on their training
loader. The fit reads each sample more than once (the full network's pass, then each class's pruned network
on its positives and drawn negatives), and every read must see the same image, or a class's pruned scores
would belong to other images than the full network's. A loader cannot promise that: which worker reads a
sample, and so which random stream augments it, depends on the batch it falls in, and a class's subset
changes the batches. So the randomness is tied to the sample: before reading sample ``i`` the random
generators the transforms draw from (Python's ``random``, used by timm's RandAugment and
``RandomResizedCropAndInterpolation``; NumPy's global generator, RandAugment's op choice; torch's CPU
generator, torchvision's crops and flips) are seeded from ``(seed, i)``, and restored afterwards, so the
caller's streams are left as they were.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from coded_resnext.datasets.sampling import dataset_targets


class FixedAugmentation(Dataset):
    """``dataset[i]`` under random generators seeded from ``(seed, i)``: the same augmented image on every
    read, in any loader, worker or subset; ``targets`` (and ``source_targets``) as ``dataset``'s."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = int(seed)
        self.targets = dataset_targets(dataset)
        source = getattr(dataset, "source_targets", None)
        if source is not None:
            self.source_targets = source

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> Any:
        python_state, numpy_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
        first, second = np.random.SeedSequence([self.seed, int(index)]).generate_state(2)
        random.seed(int(first))
        np.random.seed(int(first))
        torch.default_generator.manual_seed(int(second))  # the CPU generator only: transforms run on CPU
        try:
            return self.dataset[index]
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
            torch.set_rng_state(torch_state)
