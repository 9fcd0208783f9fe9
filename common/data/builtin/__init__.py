"""Built-in real datasets, loaded offline from packages of the ``datasets`` extra."""

from __future__ import annotations

from collections.abc import Callable

from ..dataset import MultimodalDataset
from .errors import DatasetUnavailable
from .nki70 import load_nki70

BUILTIN: dict[str, Callable[[], MultimodalDataset]] = {"nki70": load_nki70}

__all__ = ["BUILTIN", "DatasetUnavailable", "load_builtin"]


def load_builtin(name: str) -> MultimodalDataset:
    """Load a built-in dataset by name, or raise naming the known ones."""
    if name not in BUILTIN:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(sorted(BUILTIN))}")
    return BUILTIN[name]()
