"""Train and eval transforms (docs/method.md section 5) and normalization constants.

Only torchvision / timm transform classes and small classes defined here: no lambdas, so the transforms
pickle into DataLoader workers and Ray tasks.

RandAugment is timm's (``rand_augment_transform``), as the authors ran it (``rand-m4-n3`` CIFAR-10,
``rand-m2-n1`` CIFAR-100, ``rand-m10-n2`` ImageNet): N ops drawn per image from timm's set of 15 (with
Invert and SolarizeAdd), each applied with probability 0.5, at magnitude M/10 of its maximum (a rotation
at M=4 turns by at most 30 * 0.4 = 12 degrees), filling with the dataset's mean. torchvision's
``T.RandAugment`` is another augmentation: 31 bins (M=4 is 4/30 of the maximum), every chosen op applied,
another op set, black fill.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from PIL import Image
from timm.data.auto_augment import posterize as _timm_posterize
from timm.data.auto_augment import rand_augment_transform
from timm.data.transforms import RandomResizedCropAndInterpolation
from timm.data.transforms_factory import transforms_imagenet_eval
from torchvision import transforms as T

from coded_resnext.datasets.spec import DataError

# Per-channel statistics (pixel values in [0, 1]) as the authors' code normalizes with them. CIFAR-10's std is
# the widely copied (0.2023, 0.1994, 0.2010) of their CIFAR module, not the training set's own (0.2470, 0.2435,
# 0.2616): the trained network and its figures depend on the inputs' scale, so the recipe keeps theirs.
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4867, 0.4408), (0.2673, 0.2564, 0.2762)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# timm's eval (the authors' ImageNet run): resize the short side to floor(size / 0.875) (182 for 160), bicubic,
# then center-crop; training crops interpolate at random, bilinear or bicubic (timm's train.py default)
IMAGENET_CROP_PCT = 0.875
IMAGENET_EVAL_INTERPOLATION = "bicubic"
IMAGENET_TRAIN_INTERPOLATION = "random"
RANDAUGMENT_MAX_MAGNITUDE = 10  # timm's scale: magnitude M is M/10 of each op's maximum
RANDAUGMENT_TRANSLATE = 0.45  # timm's translate_const: 45% of the image side (int(32 * 0.45) in the CIFAR code)
RandAugmentOrder = Literal["after_crop", "before_crop"]


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


def posterize_to_zero_bits_as_old_pillow(img: Image.Image, bits_to_keep: int, **kwargs) -> Image.Image:
    """timm's Posterize op, keeping 0 bits as the Pillow of the authors' runs did: a black image.

    timm's (non-increasing) Posterize keeps int(M / 10 * 4) bits, so 0 at M <= 2 (the CIFAR-100 recipe's
    M=2). Pillow's ``ImageOps.posterize`` masked each pixel with ~(2**(8 - bits) - 1), which is 0 for 0
    bits; Pillow 13 (installed here) rejects 0 bits with a ValueError instead, which would crash a loader
    worker the first time the op fires. A module function so the transform pickles into workers."""
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)  # every pixel & 0
    return _timm_posterize(img, bits_to_keep, **kwargs)


def randaugment(num_ops: int, magnitude: int, image_size: int, mean: Sequence[float]):
    """timm's RandAugment ``rand-m{magnitude}-n{num_ops}`` filling with ``mean`` (in [0, 1], per channel),
    with the hyper-parameters the authors passed (``img_mean``, ``translate_const``)."""
    if not (isinstance(num_ops, int) and num_ops >= 0):
        raise DataError(f"data.randaugment: N (ops per image) must be an integer >= 0, got {num_ops!r}")
    if not (isinstance(magnitude, int) and 0 <= magnitude <= RANDAUGMENT_MAX_MAGNITUDE):
        raise DataError(
            f"data.randaugment: M (magnitude) must be an integer in 0..{RANDAUGMENT_MAX_MAGNITUDE} (timm's scale), "
            f"got {magnitude!r}"
        )
    hparams = {
        "translate_const": int(image_size * RANDAUGMENT_TRANSLATE),
        "img_mean": tuple(min(255, round(255 * m)) for m in mean),
    }
    transform = rand_augment_transform(f"rand-m{magnitude}-n{num_ops}", hparams)
    for op in transform.ops:
        if op.aug_fn is _timm_posterize:
            op.aug_fn = posterize_to_zero_bits_as_old_pillow
    return transform


def _with_randaugment(
    geometric: list, randaugment_spec: tuple[int, int] | None, order: RandAugmentOrder, size: int, mean
) -> list:
    """The geometric train transforms with RandAugment after them (paper text, timm's ImageNet pipeline) or
    before them (the authors' CIFAR code)."""
    if randaugment_spec is None:
        return list(geometric)
    if order not in ("after_crop", "before_crop"):
        raise DataError(f"data.randaugment_order: must be 'after_crop' or 'before_crop', got {order!r}")
    ra = [randaugment(*randaugment_spec, image_size=size, mean=mean)]
    return [*geometric, *ra] if order == "after_crop" else [*ra, *geometric]


def small_image_transforms(
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    padding: int,
    flip: bool,
    augment: bool,
    randaugment: tuple[int, int] | None,
    randaugment_order: RandAugmentOrder = "after_crop",
) -> tuple[T.Compose, T.Compose]:
    """(train, eval) for 28/32-pixel datasets: padded random crop (+ flip) and RandAugment when configured.

    ``augment`` switches crop and flip; RandAugment is its own switch, as in the paper's recipe.
    """
    geometric: list = []
    if augment:
        geometric.append(T.RandomCrop(size, padding=padding))
        if flip:
            geometric.append(T.RandomHorizontalFlip())
    pil = _with_randaugment(geometric, randaugment, randaugment_order, size, mean)
    train = T.Compose(pil + _to_normalized_tensor(mean, std))
    return train, T.Compose(_to_normalized_tensor(mean, std))


def imagenet_transforms(
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    augment: bool,
    randaugment: tuple[int, int] | None,
    randaugment_order: RandAugmentOrder = "after_crop",
) -> tuple[T.Compose, T.Compose]:
    """(train, eval) of the ImageNet recipe as the authors ran it (timm's ``train.py``): timm's random-resized
    crops at a random interpolation + flip; eval by timm's own ``transforms_imagenet_eval`` (resize the short
    side to floor(size / 0.875), bicubic, then center crop)."""
    evaluation = transforms_imagenet_eval(
        size, crop_pct=IMAGENET_CROP_PCT, interpolation=IMAGENET_EVAL_INTERPOLATION, mean=mean, std=std
    )
    resize_then_crop = [t for t in evaluation.transforms if isinstance(t, T.Resize | T.CenterCrop)]
    crop = RandomResizedCropAndInterpolation(size, interpolation=IMAGENET_TRAIN_INTERPOLATION)
    geometric = [crop, T.RandomHorizontalFlip()] if augment else resize_then_crop
    pil = _with_randaugment(geometric, randaugment, randaugment_order, size, mean)
    train = T.Compose(pil + _to_normalized_tensor(mean, std))
    return train, T.Compose(resize_then_crop + _to_normalized_tensor(mean, std))


def matching_transform(in_chans: int, size: int, mean: Sequence[float], std: Sequence[float]) -> T.Compose:
    """Eval transform that makes foreign images look like another dataset's inputs: channels, size, statistics."""
    mode = "L" if in_chans == 1 else "RGB"
    return T.Compose([ConvertMode(mode), T.Resize(size), T.CenterCrop(size), *_to_normalized_tensor(mean, std)])
