"""Splits and train-only standardisation."""

import numpy as np
import pytest
import torch

from common.data import ModalityData, MultimodalDataset, Standardizer, random_split


def test_split_is_seeded_disjoint_and_complete() -> None:
    s = random_split(100, seed=3)
    again = random_split(100, seed=3)
    assert all(
        np.array_equal(a, b)
        for a, b in zip((s.train, s.val, s.test), (again.train, again.val, again.test), strict=True)
    )
    assert sorted(np.concatenate([s.train, s.val, s.test]).tolist()) == list(range(100))
    assert (s.train.size, s.val.size, s.test.size) == (70, 15, 15)
    assert not np.array_equal(random_split(100, seed=4).test, s.test)


def test_stratified_split_keeps_events_everywhere() -> None:
    event = np.zeros(40, dtype=bool)
    event[:8] = True
    s = random_split(40, seed=0, stratify=event)
    for part in (s.train, s.val, s.test):
        assert event[part].any()


def test_too_few_samples() -> None:
    with pytest.raises(ValueError, match="too few"):
        random_split(3, seed=0)


def test_standardizer_uses_training_rows_only() -> None:
    x = torch.tensor([[1.0], [3.0], [100.0]])
    present = torch.tensor([True, True, False])
    data = MultimodalDataset(
        "t",
        "classification",
        ["a", "b", "c"],
        {"m": ModalityData("tabular", x, present, ["f"])},
        label=np.array([0, 1, 0]),
    )
    out = Standardizer.fit(data).apply(data)
    assert out.modalities["m"].x[:, 0].tolist() == [
        -1.0,
        1.0,
        0.0,
    ]  # absent row zeroed, not used to fit


def test_a_sites_split_is_its_split_column_or_a_stratified_draw_over_all_its_patients() -> None:
    from common.data.splits import site_split

    n = 60
    x = torch.zeros(n, 1)
    some = torch.tensor([i % 3 != 0 for i in range(n)])
    data = MultimodalDataset(
        "t",
        "classification",
        [str(i) for i in range(n)],
        {
            "a": ModalityData("tabular", x, torch.ones(n, dtype=torch.bool), ["f"]),
            "b": ModalityData("tabular", x, some, ["f"]),
        },
        label=np.arange(n) % 2,
    )
    train, val = site_split(data, 0.2, seed=1)
    assert not set(train) & set(val) and len(train) + len(val) == n and abs(len(val) - 12) <= 1
    assert set(data.label[val].tolist()) == {0, 1}  # stratified
    data.holdout = np.arange(n) >= 50
    train, val = site_split(data, 0.2, seed=1)
    assert val.tolist() == list(range(50, 60)) and train.tolist() == list(range(50))
    data.holdout = np.zeros(n, dtype=bool)
    with pytest.raises(ValueError, match="0 validation and 60 training patients"):
        site_split(data, 0.2, seed=1)


def test_site_folds_are_seeded_stratified_and_cover_every_patient() -> None:
    from common.data.splits import FoldError, site_folds

    n = 103
    event = np.zeros(n, dtype=bool)
    event[::4] = True  # 26 events
    data = MultimodalDataset(
        "t",
        "survival",
        [str(i) for i in range(n)],
        {"a": ModalityData("tabular", torch.zeros(n, 1), torch.ones(n, dtype=torch.bool), ["f"])},
        time=np.arange(n, dtype=float) + 1,
        event=event,
    )
    folds = site_folds(data, 5, seed=2)
    assert np.array_equal(folds, site_folds(data, 5, seed=2)) and not np.array_equal(
        folds, site_folds(data, 5, seed=3)
    )
    assert sorted(set(folds.tolist())) == [0, 1, 2, 3, 4]
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= 1  # balanced
    per_fold_events = np.bincount(folds[event], minlength=5)
    assert (
        per_fold_events.min() >= 5 and per_fold_events.max() - per_fold_events.min() <= 1
    )  # stratified
    with pytest.raises(FoldError, match="folds = 27 is more folds than this site's smallest class"):
        site_folds(data, 27, seed=0)
    with pytest.raises(FoldError, match=r"test_folds = 1: cross-fitting needs at least 2 folds"):
        site_folds(data, 1, seed=0, setting="test_folds")
