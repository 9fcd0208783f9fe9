"""Site data: the in-memory multimodal dataset, splits, preprocessing, built-in real datasets."""

from .builtin import BUILTIN, DatasetUnavailable, load_builtin
from .dataset import ModalityData, MultimodalDataset
from .frames import tabular_from_frame
from .splits import Split, Standardizer, random_split

__all__ = [
    "BUILTIN",
    "DatasetUnavailable",
    "ModalityData",
    "MultimodalDataset",
    "Split",
    "Standardizer",
    "load_builtin",
    "random_split",
    "tabular_from_frame",
]
