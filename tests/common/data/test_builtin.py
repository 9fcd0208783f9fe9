"""The five built-in real datasets load offline with the documented shapes."""

import numpy as np
import pytest

from common.data import BUILTIN, load_builtin
from common.data.builtin.errors import DatasetUnavailable


@pytest.mark.parametrize(
    ("name", "n", "target", "modalities"),
    [
        ("nki70", 144, 48, {"genes": 70, "clinical": 10}),
        ("gse7390", 198, 51, {"genes": 76, "clinical": 8}),
        ("ovarian", 912, 544, {"genes": 158, "clinical": 2}),
        ("pbc", 205, 2, {"labs": 7, "static": 5}),
        ("mfeat", 2000, 10, {"image": 22, "features": 292}),
    ],
)
def test_shapes(name: str, n: int, target: int, modalities: dict[str, int]) -> None:
    data = load_builtin(name)
    assert len(data) == n
    if data.task == "survival":
        assert int(data.event.sum()) == target
    else:
        assert data.n_classes == target and np.bincount(data.label).min() > 0
    assert {m: v.n_features for m, v in data.modalities.items()} == modalities
    for mod in data.modalities.values():
        assert np.isfinite(mod.x.numpy()).all()


def test_ovarian_keeps_the_study_as_group() -> None:
    groups = load_builtin("ovarian").groups
    assert sorted(np.unique(groups, return_counts=True)[1].tolist()) == [58, 84, 260, 510]


def test_pbc_landmark_uses_visits_up_to_two_years_only() -> None:
    labs = load_builtin("pbc").modalities["labs"]
    years_before = labs.x[..., labs.features.index("years_before_landmark")][labs.mask]
    assert (years_before >= 0).all()


def test_missing_package_message_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "SurvSet", None)
    monkeypatch.setitem(sys.modules, "SurvSet.data", None)
    with pytest.raises(DatasetUnavailable, match=r"pip install 'mmlego\[datasets\]'"):
        load_builtin("nki70")


def test_catalogue_lists_package_and_licence() -> None:
    assert all(entry.package and entry.licence for entry in BUILTIN.values())
