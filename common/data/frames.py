"""Turning pandas frames into modality tensors (one-hot for categories, NaN -> absent)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from .dataset import ModalityData

if TYPE_CHECKING:
    import pandas as pd


def tabular_from_frame(
    df: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str] = ()
) -> ModalityData:
    """A tabular modality from the given columns; categories are one-hot encoded
    (``column=level``). A row with any missing value counts as not having the modality."""
    import pandas as pd

    parts = [df[list(numeric)].astype(float)] if numeric else []
    for col in categorical:
        levels = [lv for lv in pd.Series(df[col]).astype("category").cat.categories]
        onehot = pd.DataFrame(
            {f"{col}={lv}": (df[col] == lv).astype(float) for lv in levels}, index=df.index
        )
        onehot[df[col].isna()] = np.nan
        parts.append(onehot)
    table = pd.concat(parts, axis=1)
    values = table.to_numpy(dtype=np.float32)
    present = np.isfinite(values).all(axis=1)
    values = np.where(present[:, None], values, 0.0).astype(np.float32)
    return ModalityData(
        "tabular", torch.from_numpy(values), torch.from_numpy(present), list(table.columns)
    )
