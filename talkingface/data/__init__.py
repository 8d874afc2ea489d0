"""Processed clip store, dataset layouts and preprocessing."""
from .layout import DatasetLayout
from .store import SPLITS, Clip, ClipStore

__all__ = ["SPLITS", "Clip", "ClipStore", "DatasetLayout"]
