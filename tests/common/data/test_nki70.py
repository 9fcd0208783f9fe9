"""The NKI-70 built-in dataset (needs the datasets extra, which `make test` installs)."""

import numpy as np
import pytest

from common.data import load_builtin


def test_nki70_shape_and_modalities() -> None:
    data = load_builtin("nki70")
    assert len(data) == 144 and int(data.event.sum()) == 48
    assert data.modalities["genes"].n_features == 70
    clinical = data.modalities["clinical"].features
    assert "num_Age" in clinical and any(f.startswith("fac_ER=") for f in clinical)
    assert all(m.present.all() for m in data.modalities.values())
    assert np.isfinite(data.time).all()


def test_unknown_dataset_names_known_ones() -> None:
    with pytest.raises(KeyError, match="known: nki70"):
        load_builtin("tcga")
