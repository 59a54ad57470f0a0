"""Datasets held in memory as tensors: digits (bundled), MNIST (IDX), CIFAR-10 (python
batches), synthetic; deterministic train/validation and K-fold splits."""

from parnn.data.dataset import ArrayDataset
from parnn.data.registry import DATASETS, dataset_names, load_dataset
from parnn.data.splits import kfold_splits, train_val_split

__all__ = [
    "DATASETS",
    "ArrayDataset",
    "dataset_names",
    "kfold_splits",
    "load_dataset",
    "train_val_split",
]
