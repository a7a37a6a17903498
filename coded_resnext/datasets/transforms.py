"""Train and eval transforms (PAPER.md section 5) and normalization constants.

Only torchvision transform classes and small classes defined here: no lambdas, so the transforms pickle
into DataLoader workers and Ray tasks.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image
from torchvision import transforms as T

# Published per-channel statistics of the training sets (pixel values in [0, 1]).
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
IMAGENET_RESIZE_RATIO = 0.875  # eval: resize the short side to size / 0.875 (183 for 160), then center-crop


class ConvertMode:
    """PIL ``Image.convert`` as a picklable transform (grayscale <-> RGB for out-of-distribution images)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def __call__(self, image: Image.Image) -> Image.Image:
        return image if image.mode == self.mode else image.convert(self.mode)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mode={self.mode!r})"


def _to_normalized_tensor(mean: Sequence[float], std: Sequence[float]) -> list:
    return [T.ToTensor(), T.Normalize(tuple(mean), tuple(std))]


def _randaugment(randaugment: tuple[int, int] | None) -> list:
    if randaugment is None:
        return []
    num_ops, magnitude = randaugment
    return [T.RandAugment(num_ops=num_ops, magnitude=magnitude)]


def small_image_transforms(
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    padding: int,
    flip: bool,
    augment: bool,
    randaugment: tuple[int, int] | None,
) -> tuple[T.Compose, T.Compose]:
    """(train, eval) for 28/32-pixel datasets: padded random crop (+ flip), then RandAugment when configured.

    ``augment`` switches crop and flip; RandAugment is its own switch, as in the paper's recipe.
    """
    geometric: list = []
    if augment:
        geometric.append(T.RandomCrop(size, padding=padding))
        if flip:
            geometric.append(T.RandomHorizontalFlip())
    train = T.Compose(geometric + _randaugment(randaugment) + _to_normalized_tensor(mean, std))
    return train, T.Compose(_to_normalized_tensor(mean, std))


def imagenet_transforms(
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    augment: bool,
    randaugment: tuple[int, int] | None,
) -> tuple[T.Compose, T.Compose]:
    """(train, eval) of the ImageNet recipe: random-resized crops + flip; eval resize then center crop."""
    resize_then_crop = [T.Resize(round(size / IMAGENET_RESIZE_RATIO)), T.CenterCrop(size)]
    geometric = [T.RandomResizedCrop(size), T.RandomHorizontalFlip()] if augment else list(resize_then_crop)
    train = T.Compose(geometric + _randaugment(randaugment) + _to_normalized_tensor(mean, std))
    return train, T.Compose(resize_then_crop + _to_normalized_tensor(mean, std))


def matching_transform(in_chans: int, size: int, mean: Sequence[float], std: Sequence[float]) -> T.Compose:
    """Eval transform that makes foreign images look like another dataset's inputs: channels, size, statistics."""
    mode = "L" if in_chans == 1 else "RGB"
    return T.Compose([ConvertMode(mode), T.Resize(size), T.CenterCrop(size), *_to_normalized_tensor(mean, std)])
