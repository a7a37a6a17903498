"""Datasets: every registered loader on small files written in the real on-disk formats, the split and
subset rules, augmentation settings, out-of-distribution sets, and one-line errors for missing or bad data."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar as tv_cifar
from PIL import Image
from timm.data.auto_augment import RandAugment
from timm.data.transforms import RandomResizedCropAndInterpolation
from torchvision import transforms as T

from coded_resnext.datasets import DataError, DataSpec, build_dataset, build_ood_dataset, list_datasets
from coded_resnext.datasets import fashion_mnist as fm
from coded_resnext.datasets.base import ArrayImages

pytestmark = pytest.mark.unit

SYSTEM_FASHION = Path("/usr/share/datasets/fashion-mnist")
# the statistics the authors' CIFAR code normalizes with (their CIFAR-10 std is the widely copied
# (0.2023, 0.1994, 0.2010), not the training set's (0.2470, 0.2435, 0.2616)), pinned here so a wrong constant
# in the package fails the pixel checks
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4867, 0.4408), (0.2673, 0.2564, 0.2762)
CIFAR100_STATS = (CIFAR100_MEAN, CIFAR100_STD)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)


# ---------------------------------------------------------------------------------------------- writers


def _pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def write_cifar10(root: Path, per_batch: int = 4, n_test: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    """cifar-10-batches-py/ as the official archive extracts: five train batches, test_batch, batches.meta."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_x = rng.integers(0, 256, (5 * per_batch, 3072), dtype=np.uint8)
    train_y = rng.integers(0, 10, 5 * per_batch)
    for b in range(5):
        rows = slice(b * per_batch, (b + 1) * per_batch)
        _pickle(folder / f"data_batch_{b + 1}", {"data": train_x[rows], "labels": train_y[rows].tolist()})
    test_x = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    test_y = rng.integers(0, 10, n_test)
    _pickle(folder / "test_batch", {"data": test_x, "labels": test_y.tolist()})
    _pickle(folder / "batches.meta", {"label_names": [f"c10_{k}" for k in range(10)]})
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}


def write_cifar100(root: Path, n_train: int = 8, n_test: int = 5, seed: int = 1) -> dict[str, np.ndarray]:
    """cifar-100-python/ with train, test and meta (fine and coarse labels, as the archive has)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = rng.integers(0, 100, n)
        _pickle(folder / split, {"data": x, "fine_labels": y.tolist(), "coarse_labels": (y // 5).tolist()})
        out[f"{split}_x"], out[f"{split}_y"] = x, y
    _pickle(
        folder / "meta",
        {"fine_label_names": [f"c100_{k}" for k in range(100)], "coarse_label_names": [str(k) for k in range(20)]},
    )
    return out


def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    header = b"\x00\x00\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def write_fashion(directory: Path, n_train: int = 20, n_test: int = 10, gz: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    for name, array in arrays.items():
        write_idx(directory / name, array, gz)
    return arrays


def write_image_tree(root: Path, classes: tuple[str, ...], per_class: int, size: tuple[int, int] = (24, 20)) -> None:
    rng = np.random.default_rng(3)
    for k, cls in enumerate(classes):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{k}_{i}.png")


def normalized(chw_uint8: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    x = torch.from_numpy(chw_uint8.astype(np.float32) / 255.0)
    return (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


@pytest.fixture
def no_md5(monkeypatch):
    """The fake CIFAR files cannot match the official md5s: keep torchvision's existence check, drop the hash."""
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


@pytest.fixture
def no_system_fashion(monkeypatch, tmp_path):
    """Hide Debian's Fashion-MNIST so a test sees only the files it wrote."""
    monkeypatch.setattr(fm, "SYSTEM_DIRS", (str(tmp_path / "no-system-dir"),))


def _assert_one_line_error(exc: pytest.ExceptionInfo, *needles: str) -> None:
    message = str(exc.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)


# ---------------------------------------------------------------------------------------------- registry


def test_registry_lists_every_dataset_and_rejects_unknown_names():
    assert list_datasets() == sorted(["cifar10", "cifar100", "fashion-mnist", "imagefolder", "digits", "synthetic"])
    with pytest.raises(DataError) as exc:
        build_dataset(DataSpec("mnist-ish"))
    _assert_one_line_error(exc, "mnist-ish", "cifar10", "synthetic")


def test_dataspec_validates_and_normalizes_randaugment():
    assert DataSpec("synthetic", randaugment=[3, 4]).randaugment == (3, 4)  # YAML lists become tuples
    bad_values = ({"randaugment": (3,)}, {"randaugment": (1.5, 2)}, {"val_fraction": 1.0}, {"val_fraction": -0.1})
    for bad in (*bad_values, {"limit_train": 0}, {"limit_test": 0}):
        with pytest.raises(DataError):
            DataSpec("synthetic", **bad)


# ---------------------------------------------------------------------------------------------- CIFAR


def test_cifar10_reads_the_pickled_batches(tmp_path, no_md5):
    files = write_cifar10(tmp_path)
    bundle = build_dataset(DataSpec("cifar10", root=str(tmp_path)))
    # val: 10% of the 20 training images held out; test: the official test split
    assert (len(bundle.train), len(bundle.train_eval), len(bundle.val), len(bundle.test)) == (18, 18, 2, 6)
    assert bundle.sizes() == {"train": 18, "val": 2, "test": 6}
    assert (bundle.num_classes, bundle.in_chans, bundle.image_size) == (10, 3, 32)
    assert bundle.class_names == [f"c10_{k}" for k in range(10)]
    assert (bundle.mean, bundle.std) == (CIFAR10_MEAN, CIFAR10_STD)
    train_idx, val_idx = bundle.train.indices.tolist(), bundle.val.indices.tolist()
    assert sorted(train_idx + val_idx) == list(range(20))  # disjoint, covering the training split
    assert bundle.targets("train").tolist() == files["train_y"][train_idx].tolist()
    assert bundle.targets("val").tolist() == files["train_y"][val_idx].tolist()
    assert bundle.targets("test").tolist() == files["test_y"].tolist()
    image, label = bundle.test[3]  # the official test split, eval transform: exact pixels, normalized
    assert label == files["test_y"][3]
    torch.testing.assert_close(image, normalized(files["test_x"][3].reshape(3, 32, 32), CIFAR10_MEAN, CIFAR10_STD))
    train_image, _ = bundle.train[0]
    assert train_image.shape == (3, 32, 32) and train_image.dtype == torch.float32


def test_cifar100_reads_fine_labels_and_meta(tmp_path, no_md5):
    files = write_cifar100(tmp_path)
    bundle = build_dataset(DataSpec("cifar100", root=str(tmp_path), augment=False, val_fraction=0))
    assert bundle.val is None and (len(bundle.train), len(bundle.test), bundle.num_classes) == (8, 5, 100)
    assert bundle.class_names[:2] == ["c100_0", "c100_1"]
    assert bundle.targets("train").tolist() == files["train_y"].tolist()
    assert bundle.train[1][1] == files["train_y"][1]
    assert bundle.targets("test").tolist() == files["test_y"].tolist()
    assert (bundle.mean, bundle.std) == (CIFAR100_MEAN, CIFAR100_STD)  # its own statistics, the authors' values
    torch.testing.assert_close(bundle.test[2][0], normalized(files["test_x"][2].reshape(3, 32, 32), *CIFAR100_STATS))


def test_cifar_missing_dir_is_a_one_line_error_naming_it(tmp_path):
    missing = tmp_path / "nothing-here"
    with pytest.raises(DataError) as exc:
        build_dataset(DataSpec("cifar10", root=str(missing)))
    _assert_one_line_error(exc, "CIFAR-10", str(missing), "cifar-10-batches-py", "data.download=true")


def test_cifar_md5_mismatch_is_a_data_error(tmp_path):
    write_cifar10(tmp_path)  # random bytes: torchvision's md5 check fails
    with pytest.raises(DataError) as exc:
        build_dataset(DataSpec("cifar10", root=str(tmp_path)))
    _assert_one_line_error(exc, "corrupt", str(tmp_path / "cifar-10-batches-py"))


def test_cifar_unreadable_batch_is_a_data_error(tmp_path, no_md5):
    write_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:50])  # truncated pickle
    with pytest.raises(DataError) as exc:
        build_dataset(DataSpec("cifar10", root=str(tmp_path)))
    _assert_one_line_error(exc, "unreadable", "CIFAR-10")


def _transform_types(dataset) -> list[type]:
    return [type(t) for t in dataset.transform.transforms]


def test_cifar_train_transform_follows_the_paper(tmp_path, no_md5):
    write_cifar10(tmp_path)
    with_ra = build_dataset(DataSpec("cifar10", root=str(tmp_path), randaugment=(3, 4)))
    ops = with_ra.train.transform.transforms
    crop = next(t for t in ops if isinstance(t, T.RandomCrop))
    assert crop.size == (32, 32) and crop.padding == 4
    assert any(isinstance(t, T.RandomHorizontalFlip) for t in ops)
    (ra,) = [t for t in ops if isinstance(t, RandAugment)]  # timm's, as the authors ran it
    assert ra.num_layers == 3 and {op.magnitude for op in ra.ops} == {4}
    assert _transform_types(with_ra.train)[-2:] == [T.ToTensor, T.Normalize]
    assert _transform_types(with_ra.val) == [T.ToTensor, T.Normalize]  # eval: no randomness
    assert _transform_types(with_ra.test) == [T.ToTensor, T.Normalize]
    assert _transform_types(with_ra.train_eval) == [T.ToTensor, T.Normalize]

    without = build_dataset(DataSpec("cifar10", root=str(tmp_path)))
    assert RandAugment not in _transform_types(without.train)
    assert T.RandomCrop in _transform_types(without.train)
    no_aug = build_dataset(DataSpec("cifar10", root=str(tmp_path), augment=False))
    assert _transform_types(no_aug.train) == [T.ToTensor, T.Normalize]


def test_datasets_and_transforms_pickle_for_workers(tmp_path, no_md5):
    write_cifar10(tmp_path)
    bundle = build_dataset(DataSpec("cifar10", root=str(tmp_path), randaugment=(1, 2)))
    clone = pickle.loads(pickle.dumps(bundle.train))
    assert clone[0][0].shape == (3, 32, 32)
    assert clone.targets.tolist() == bundle.targets("train").tolist()


# ---------------------------------------------------------------------------------------------- Fashion-MNIST


@pytest.mark.parametrize(("gz", "subdir"), [(False, ""), (True, "FashionMNIST/raw")])
def test_fashion_mnist_from_idx_files(tmp_path, no_system_fashion, gz, subdir):
    arrays = write_fashion(tmp_path / subdir if subdir else tmp_path, gz=gz)
    bundle = build_dataset(DataSpec("fashion-mnist", root=str(tmp_path)))
    assert bundle.sizes() == {"train": 18, "val": 2, "test": 10}
    assert (bundle.num_classes, bundle.in_chans, bundle.image_size) == (10, 1, 28)
    assert bundle.class_names[0] == "T-shirt/top"
    labels = arrays["train-labels-idx1-ubyte"]
    assert bundle.targets("train").tolist() == labels[bundle.train.indices.numpy()].tolist()
    assert bundle.targets("test").tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    image, label = bundle.test[4]
    assert label == arrays["t10k-labels-idx1-ubyte"][4]
    expected = normalized(arrays["t10k-images-idx3-ubyte"][4][None], FASHION_MNIST_MEAN, FASHION_MNIST_STD)
    torch.testing.assert_close(image, expected)
    crop = next(t for t in bundle.train.transform.transforms if isinstance(t, T.RandomCrop))
    assert crop.padding == 2 and T.RandomHorizontalFlip in _transform_types(bundle.train)


@pytest.mark.skipif(not SYSTEM_FASHION.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_the_debian_package(tmp_path):
    bundle = build_dataset(DataSpec("fashion-mnist"))  # no root: ./data, then the system copy
    assert bundle.sizes() == {"train": 54000, "val": 6000, "test": 10000}
    assert bundle.targets("val").bincount().tolist() == [600] * 10  # a stratified hold-out
    assert bundle.targets("test").bincount().tolist() == [1000] * 10
    image, label = bundle.train[0]
    assert image.shape == (1, 28, 28) and 0 <= label < 10


def test_fashion_mnist_missing_names_where_it_looked(tmp_path, no_system_fashion, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no root: ./data, then the system dirs
    with pytest.raises(DataError) as exc:
        build_dataset(DataSpec("fashion-mnist"))
    _assert_one_line_error(
        exc, str(tmp_path / "data"), "no-system-dir", "apt-get install dataset-fashion-mnist", "data.download=true"
    )


def test_a_named_root_is_never_replaced_by_the_system_copy(tmp_path, monkeypatch):
    """``data.root`` as named or a one-line error naming it: never the Debian copy instead (which is there)."""
    monkeypatch.setattr(fm, "SYSTEM_DIRS", (str(tmp_path / "system"),))
    write_fashion(tmp_path / "system")  # a system copy that would be found without a root
    assert len(build_dataset(DataSpec("fashion-mnist")).test) == 10
    typo = tmp_path / "typo"
    with pytest.raises(DataError) as exc:
        build_dataset(DataSpec("fashion-mnist", root=str(typo)))
    _assert_one_line_error(exc, f"data.root={typo}", "does not exist")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as exc:
        build_dataset(DataSpec("fashion-mnist", root=str(tmp_path / "empty")))
    _assert_one_line_error(exc, f"data.root={tmp_path / 'empty'}", "holds no Fashion-MNIST IDX files")
    with pytest.raises(DataError) as exc:
        build_dataset(DataSpec("imagefolder", root=str(typo)))
    _assert_one_line_error(exc, f"data.root={typo}", "does not exist")


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_idx_file_is_a_data_error(tmp_path, no_system_fashion, gz):
    write_fashion(tmp_path, gz=gz)
    path = tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError) as exc:
        build_dataset(DataSpec("fashion-mnist", root=str(tmp_path)))
    _assert_one_line_error(exc, str(path))


# ---------------------------------------------------------------------------------------------- imagefolder


def test_imagefolder_with_val_dir(tmp_path):
    write_image_tree(tmp_path / "train", ("cat", "dog", "eel"), per_class=3)
    write_image_tree(tmp_path / "val", ("cat", "dog", "eel"), per_class=2)
    bundle = build_dataset(DataSpec("imagefolder", root=str(tmp_path), image_size=16, randaugment=(2, 10)))
    # val/ is the test split (as ImageNet's validation set is in the paper); val is held out of train/
    assert bundle.sizes() == {"train": 8, "val": 1, "test": 6} and bundle.num_classes == 3
    assert bundle.class_names == ["cat", "dog", "eel"]
    assert bundle.targets("test").tolist() == [0, 0, 1, 1, 2, 2]
    assert bundle.train[0][0].shape == (3, 16, 16) and bundle.test[0][0].shape == (3, 16, 16)
    assert RandomResizedCropAndInterpolation in _transform_types(bundle.train)
    assert RandAugment in _transform_types(bundle.train)
    assert _transform_types(bundle.val)[:2] == [T.Resize, T.CenterCrop]
    assert _transform_types(bundle.test)[:2] == [T.Resize, T.CenterCrop]


def test_imagenet_transforms_are_timms_as_the_authors_ran_them(tmp_path):
    """The authors' ImageNet run is timm's train.py at 160 px: eval resizes the short side to
    floor(160 / 0.875) = 182, bicubic, then center-crops; training crops interpolate at random."""
    from timm.data.transforms_factory import transforms_imagenet_eval

    write_image_tree(tmp_path / "train", ("cat", "dog"), per_class=2, size=(211, 250))
    write_image_tree(tmp_path / "val", ("cat", "dog"), per_class=1, size=(211, 250))
    bundle = build_dataset(DataSpec("imagefolder", root=str(tmp_path), val_fraction=0))
    resize, crop = bundle.test.transform.transforms[:2]
    assert (resize.size, resize.interpolation, crop.size) == (182, T.InterpolationMode.BICUBIC, (160, 160))
    timm_eval = transforms_imagenet_eval(160, crop_pct=0.875, interpolation="bicubic")
    image, _ = bundle.test.base[0]
    torch.testing.assert_close(bundle.test[0][0], timm_eval(image))  # timm's pixels exactly
    (train_crop,) = [t for t in bundle.train.transform.transforms if isinstance(t, RandomResizedCropAndInterpolation)]
    assert set(train_crop.interpolation) == {T.InterpolationMode.BILINEAR, T.InterpolationMode.BICUBIC}
    assert (train_crop.size, train_crop.scale, train_crop.ratio) == ((160, 160), (0.08, 1.0), (3 / 4, 4 / 3))


def test_imagefolder_without_val_splits_train_and_defaults_to_160(tmp_path):
    write_image_tree(tmp_path / "train", ("a", "b"), per_class=5)
    bundle = build_dataset(DataSpec("imagefolder", root=str(tmp_path), val_fraction=0.2, split_seed=4))
    assert bundle.image_size == 160 and bundle.val[0][0].shape == (3, 160, 160)
    train_idx, val_idx = set(bundle.train.indices.tolist()), set(bundle.val.indices.tolist())
    assert len(val_idx) == 2 and not train_idx & val_idx and train_idx | val_idx == set(range(10))
    assert bundle.targets("val").tolist() == [0, 1]  # stratified: one of each class
    assert bundle.test is None  # no val/ folder: no test split


def test_imagefolder_without_train_dir_names_it(tmp_path):
    with pytest.raises(DataError) as exc:
        build_dataset(DataSpec("imagefolder", root=str(tmp_path)))
    _assert_one_line_error(exc, str(tmp_path / "train"))


# ---------------------------------------------------------------------------------------------- digits, synthetic


def test_digits_shapes_a_fixed_test_split_and_a_seeded_val_split():
    bundle = build_dataset(DataSpec("digits", split_seed=1))
    assert (bundle.num_classes, bundle.in_chans, bundle.image_size) == (10, 1, 28)
    assert bundle.sizes() == {"train": 1294, "val": 144, "test": 359}  # test 20% of 1797, val 10% of the rest
    image, label = bundle.val[0]
    assert image.shape == (1, 28, 28) and 0 <= label < 10
    train_idx, val_idx, test_idx = (set(getattr(bundle, r).indices.tolist()) for r in ("train", "val", "test"))
    assert not train_idx & val_idx and not (train_idx | val_idx) & test_idx
    assert len(train_idx | val_idx | test_idx) == 1797
    again, other = build_dataset(DataSpec("digits", split_seed=1)), build_dataset(DataSpec("digits", split_seed=2))
    assert torch.equal(again.val.indices, bundle.val.indices)
    assert not torch.equal(other.val.indices, bundle.val.indices)  # the hold-out follows split_seed ...
    assert torch.equal(other.test.indices, bundle.test.indices)  # ... the test split never moves
    counts = bundle.targets("test").bincount()
    assert counts.max() - counts.min() <= 2  # stratified (the classes have 174..183 images)
    assert T.RandomHorizontalFlip not in _transform_types(bundle.train)  # digits are not mirror-symmetric
    assert build_dataset(DataSpec("digits", image_size=16)).val[0][0].shape == (1, 16, 16)


def test_limits_are_seeded_stratified_subsets_and_train_eval_shares_train():
    full = build_dataset(DataSpec("digits"))
    small = build_dataset(DataSpec("digits", limit_train=50, limit_val=20, limit_test=30))
    assert (len(small.train), len(small.train_eval), len(small.val), len(small.test)) == (50, 50, 20, 30)
    assert torch.equal(small.train.indices, small.train_eval.indices)
    for role in ("train", "val", "test"):
        assert set(getattr(small, role).indices.tolist()) <= set(getattr(full, role).indices.tolist())
    assert small.targets("val").bincount(minlength=10).tolist() == [2] * 10  # stratified: 2 per class
    assert small.targets("train").bincount(minlength=10).tolist() == [5] * 10
    assert torch.equal(build_dataset(DataSpec("digits", limit_train=50)).train.indices, small.train.indices)
    assert torch.equal(
        small.targets("train"), full.targets("train")[torch.isin(full.train.indices, small.train.indices)]
    )


def test_synthetic_is_deterministic_and_learnable():
    bundle = build_dataset(DataSpec("synthetic", augment=False))
    assert bundle.sizes() == {"train": 1800, "val": 200, "test": 500}
    assert (bundle.num_classes, bundle.in_chans) == (10, 1)
    assert bundle.targets("train").bincount().tolist() == [180] * 10  # the hold-out is stratified
    assert bundle.train[0][0].shape == (1, 28, 28)
    again = build_dataset(DataSpec("synthetic", augment=False))
    assert torch.equal(again.test[7][0], bundle.test[7][0])
    assert not torch.equal(build_dataset(DataSpec("synthetic", split_seed=1)).test[7][0], bundle.test[7][0])
    # class-dependent: nearest class mean of the training images classifies the test images
    x = torch.stack([bundle.train[i][0] for i in range(len(bundle.train))]).flatten(1)
    y = bundle.targets("train")
    centroids = torch.stack([x[y == k].mean(0) for k in range(10)])
    v = torch.stack([bundle.test[i][0] for i in range(len(bundle.test))]).flatten(1)
    accuracy = (torch.cdist(v, centroids).argmin(1) == bundle.targets("test")).float().mean()
    assert accuracy > 0.9
    assert build_dataset(DataSpec("synthetic", image_size=12, limit_train=30)).train[0][0].shape == (1, 12, 12)


def test_targets_do_not_load_images(monkeypatch):
    bundle = build_dataset(DataSpec("synthetic", limit_train=40))
    expected = torch.tensor([bundle.train[i][1] for i in range(len(bundle.train))])

    def refuse(self, index):
        raise AssertionError("targets() decoded an image")

    monkeypatch.setattr(ArrayImages, "__getitem__", refuse)
    assert torch.equal(bundle.targets("train"), expected)
    assert bundle.targets("test").dtype == torch.long and len(bundle.targets("test")) == 500
    with pytest.raises(DataError):
        bundle.targets("holdout")
    with pytest.raises(DataError) as exc:
        build_dataset(DataSpec("synthetic", val_fraction=0)).targets("val")
    _assert_one_line_error(exc, "no val split", "val_fraction is 0")


# ---------------------------------------------------------------------------------------------- OOD


def test_ood_digits_match_a_fashion_mnist_bundle(tmp_path, no_system_fashion):
    write_fashion(tmp_path)
    like = build_dataset(DataSpec("fashion-mnist", root=str(tmp_path)))
    ood = build_ood_dataset("digits", like)
    assert len(ood) == 1797  # no test split of its own: every digit is unseen by the model
    image, label = ood[0]
    assert image.shape == (1, 28, 28) and label == -1
    # normalized with the digits' own statistics (as the authors read CIFAR-100 through its own loader):
    # the black digit background maps to (0 - mean) / std
    digits = build_dataset(DataSpec("digits", image_size=28))
    assert digits.mean != FASHION_MNIST_MEAN
    assert image.min().item() == pytest.approx((0.0 - digits.mean[0]) / digits.std[0], abs=1e-5)
    limited = build_ood_dataset("digits", like, limit=100)
    assert len(limited) == 100 and torch.equal(limited[5][0], build_ood_dataset("digits", like, limit=100)[5][0])


def test_ood_cifar100_for_cifar10_is_its_whole_test_split_under_its_own_stats(tmp_path, no_md5):
    """The authors' CIFAR-10 evaluation reads every CIFAR-100 test image through CIFAR-100's own loader."""
    write_cifar10(tmp_path)
    c100 = write_cifar100(tmp_path)
    like = build_dataset(DataSpec("cifar10", root=str(tmp_path)))
    ood = build_ood_dataset("cifar100", like, root=str(tmp_path))
    assert len(ood) == 5  # every test image
    image, label = ood[2]
    assert label == -1
    torch.testing.assert_close(image, normalized(c100["test_x"][2].reshape(3, 32, 32), *CIFAR100_STATS))


def test_ood_converts_channels_and_size_to_match(tmp_path, no_md5):
    write_cifar10(tmp_path)
    like = build_dataset(DataSpec("synthetic", image_size=20))
    image, _ = build_ood_dataset("cifar10", like, root=str(tmp_path))[0]
    assert image.shape == (1, 20, 20)
