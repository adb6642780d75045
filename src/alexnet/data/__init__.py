"""Data sources and preprocessing."""

from .datasets import DataError, Splits, open_source
from .transforms import Preprocess, eval_transform, train_transform

__all__ = ["DataError", "Preprocess", "Splits", "eval_transform", "open_source", "train_transform"]
