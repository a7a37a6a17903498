"""RandAugment as the authors ran it (timm's ``rand_augment_transform``): magnitude on timm's 0-10 scale,
each chosen op applied with probability 0.5, timm's op set, the dataset mean as fill, and where it sits in
the pipeline (``data.randaugment_order``)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image
from timm.data.auto_augment import RandAugment
from torchvision import transforms as T

from coded_resnext.datasets import DataError, DataSpec, build_dataset
from coded_resnext.datasets.transforms import CIFAR10_MEAN, randaugment, small_image_transforms

pytestmark = pytest.mark.unit


def _op(ra: RandAugment, name: str):
    (op,) = [op for op in ra.ops if op.name == name]
    return op


def test_magnitude_is_m_tenths_of_each_ops_maximum():
    ra = randaugment(3, 4, image_size=32, mean=CIFAR10_MEAN)
    assert ra.num_layers == 3
    rotate = _op(ra, "Rotate")
    (angle,) = rotate.level_fn(rotate.magnitude, rotate.hparams)
    assert abs(angle) == pytest.approx(12.0)  # 30 degrees x 4/10 (torchvision's bins: 30 x 4/30 = 4)
    shear = _op(ra, "ShearX")
    (factor,) = shear.level_fn(shear.magnitude, shear.hparams)
    assert abs(factor) == pytest.approx(0.3 * 0.4)
    (full,) = _op(randaugment(1, 10, 32, CIFAR10_MEAN), "Rotate").level_fn(10, {})
    assert abs(full) == pytest.approx(30.0)


def test_timms_op_set_each_applied_with_probability_one_half():
    ra = randaugment(2, 10, image_size=32, mean=CIFAR10_MEAN)
    names = {op.name for op in ra.ops}
    assert {"Invert", "SolarizeAdd", "Rotate", "TranslateXRel"} <= names and len(names) == 15
    assert {op.prob for op in ra.ops} == {0.5}
    invert = _op(ra, "Invert")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8))
    random.seed(0)
    fired = sum(np.asarray(invert(image)).tobytes() != image.tobytes() for _ in range(1000))
    assert 430 < fired < 570  # binomial(1000, 0.5): 6 standard deviations either side


def test_fill_is_the_dataset_mean():
    ra = randaugment(1, 10, image_size=32, mean=CIFAR10_MEAN)
    rotate = _op(ra, "Rotate")
    rotate.prob = 1.0  # force it to fire
    white = Image.new("RGB", (32, 32), (255, 255, 255))
    random.seed(1)
    corner = np.asarray(rotate(white))[0, 0]
    assert tuple(corner) == tuple(round(255 * m) for m in CIFAR10_MEAN)  # (125, 123, 114), not black


@pytest.mark.parametrize("magnitude", range(11))
def test_every_op_runs_at_every_magnitude_on_rgb_and_grayscale(magnitude):
    for mode, shape, mean in (("RGB", (32, 32, 3), CIFAR10_MEAN), ("L", (28, 28), (0.286,))):
        ra = randaugment(1, magnitude, image_size=shape[0], mean=mean)
        image = Image.fromarray(np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8))
        for op in ra.ops:
            op.prob = 1.0
            assert op(image).mode == mode, (op.name, magnitude)


def test_posterize_to_zero_bits_is_a_black_image_as_in_the_authors_pillow():
    # timm keeps int(M / 10 * 4) bits: 0 at the CIFAR-100 recipe's M=2, which Pillow 13 refuses
    posterize = _op(randaugment(1, 2, image_size=32, mean=CIFAR10_MEAN), "Posterize")
    posterize.prob = 1.0
    assert posterize.level_fn(2, {}) == (0,)
    image = Image.fromarray(np.full((4, 4, 3), 200, dtype=np.uint8))
    assert np.asarray(posterize(image)).max() == 0
    three_bits = _op(randaugment(1, 8, image_size=32, mean=CIFAR10_MEAN), "Posterize")
    three_bits.prob = 1.0
    assert np.asarray(three_bits(image)).max() == 192  # 200 & 0b11100000, through timm/Pillow as before


@pytest.mark.parametrize(("order", "first"), [("after_crop", T.RandomCrop), ("before_crop", RandAugment)])
def test_order_puts_randaugment_after_or_before_the_crop_and_flip(order, first):
    train, _ = small_image_transforms(
        32, CIFAR10_MEAN, (0.25,) * 3, padding=4, flip=True, augment=True, randaugment=(3, 4), randaugment_order=order
    )
    kinds = [type(t) for t in train.transforms]
    assert kinds[0] is first and kinds[-2:] == [T.ToTensor, T.Normalize]
    assert kinds.index(RandAugment) == (2 if order == "after_crop" else 0)


def test_the_dataset_builders_pass_the_order_and_the_mean_through():
    bundle = build_dataset(DataSpec("synthetic", randaugment=(2, 5), randaugment_order="before_crop"))
    (ra,) = [t for t in bundle.train.transform.transforms if isinstance(t, RandAugment)]
    assert bundle.train.transform.transforms[0] is ra
    assert ra.ops[0].kwargs["fillcolor"] == tuple(round(255 * m) for m in bundle.mean)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [((3, 11), "magnitude M must be in 0..10"), ((-1, 4), "integers >= 0"), ((3,), "expected [N, M]")],
)
def test_bad_values_are_one_line_errors_naming_the_key(value, fragment):
    with pytest.raises(DataError) as exc:
        DataSpec("synthetic", randaugment=value)
    assert "data.randaugment" in str(exc.value) and fragment in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(DataError, match=r"data\.randaugment_order"):
        DataSpec("synthetic", randaugment_order="sideways")
    with pytest.raises(DataError, match=r"data\.randaugment: M \(magnitude\)"):
        randaugment(1, 11, image_size=32, mean=CIFAR10_MEAN)
