"""Datasets, the DataLoader and the bundled data sets (see README.md here for their sources)."""
from .dataset import DataLoader, Dataset, Subset, TensorDataset, default_collate, random_split
from .datasets import load_digits, make_regression, make_spirals, make_xor, resize_bilinear

__all__ = [
    "Dataset", "TensorDataset", "Subset", "DataLoader", "random_split", "default_collate",
    "load_digits", "resize_bilinear", "make_xor", "make_spirals", "make_regression",
]
