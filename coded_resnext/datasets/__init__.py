"""Datasets by name (cifar10, cifar100, fashion-mnist, imagefolder, digits, synthetic) as train / train_eval /
val splits of normalized CHW tensors, plus out-of-distribution sets for the binary classifiers.

Pure torchvision / numpy (scikit-learn only for ``digits``); a missing or corrupt dataset is a one-line
``DataError`` saying where we looked and how to get the data.
"""

from coded_resnext.datasets.registry import build_dataset, build_ood_dataset, dataset_shape, list_datasets
from coded_resnext.datasets.spec import DataError, DatasetBundle, DataSpec

__all__ = [
    "DataError",
    "DataSpec",
    "DatasetBundle",
    "build_dataset",
    "build_ood_dataset",
    "dataset_shape",
    "list_datasets",
]
