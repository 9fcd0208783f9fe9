"""A site's block training never lets a count below its minimum cell size travel with the block:
not in its stats, its validation metric, its class weights or its input scaling; and
cross-fitting chooses the block's epochs out of fold and trains it on every patient."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from common.data.dataset import ModalityData, MultimodalDataset
from common.data.splits import fold_rare_values
from common.records import TaskRecord
from common.tasks import TaskSpec, inverse_frequency_weights
from common.train.siteblock import BlockTraining, train_modality
from tests.coordinator.conftest import TASK as SURVIVAL
from tests.coordinator.test_fuse_rounds import paired_data

QUICK = BlockTraining(epochs=1, patience=1, token_dim=8, n_tokens=2, depth=1, device="cpu")


def test_small_counts_are_withheld_and_too_few_patients_refused() -> None:
    data = paired_data(40, 0)
    assert data.event is not None
    data.event[:] = False
    data.event[:6] = True  # a few events
    stats = train_modality(data, "genes", SURVIVAL, QUICK, min_cell=1).stats
    events = int(stats["n_events_train"])
    assert 0 < events < stats["n_val"] < stats["n_train"]
    stats = train_modality(data, "genes", SURVIVAL, QUICK, min_cell=events + 1).stats
    assert "n_events_train" not in stats and stats["n_train"] > events and stats["n_val"] > events
    with pytest.raises(ValueError, match=r"at least 60 .*min_cell_size"):
        train_modality(data, "genes", SURVIVAL, QUICK, min_cell=60)


def test_class_weights_do_not_reveal_a_class_smaller_than_the_cell_size() -> None:
    assert inverse_frequency_weights(np.array([0] * 20 + [1] * 2), 3, min_count=5) == pytest.approx(
        (22 / 60, 22 / 15, 0.0)
    )  # class 1 weighted as if it had 5 patients; an absent class stays 0
    n = 40
    rng = np.random.default_rng(0)
    label = np.array([1] * 4 + [0] * (n - 4))
    mods = {
        "genes": ModalityData(
            "tabular",
            torch.tensor(rng.normal(size=(n, 3)).astype(np.float32)),
            torch.ones(n, dtype=torch.bool),
            ["a", "b", "c"],
        )
    }
    data = MultimodalDataset(
        "synthetic", "classification", [f"p{i}" for i in range(n)], mods, label=label
    )
    task = TaskRecord(
        "t2",
        TaskSpec("classification", n_classes=2),
        latent_rows=4,
        latent_dim=8,
        fourier="2d",
        init_seed=7,
        modalities=("genes",),
    )
    trained = train_modality(data, "genes", task, QUICK, min_cell=5)
    block, stats = trained.block, trained.stats
    w = block.config.task.class_weights
    # w1 / w0 = n0 / max(n1, 5) with n1 < 5: the block says "fewer than 5", not how many.
    assert any(w[1] / w[0] == pytest.approx((stats["n_train"] - n1) / 5) for n1 in (1, 2, 3, 4)), w


@pytest.mark.parametrize(
    ("column", "folded"),
    [
        ([0.0] * 26 + [1.0] * 2, [0.0] * 28),  # a one-hot category of 2 patients
        ([0.0] * 27 + [3.7], [0.0] * 28),  # one patient's value in an otherwise zero feature
        (
            [0.0] * 20 + [1.0] * 20 + [2.0] * 2,
            [0.0] * 22 + [1.0] * 20,
        ),  # 2 patients in the third level (ties: the first)
        ([0.0] * 20 + [1.0] * 8, None),  # both categories large enough
        (
            [0.0] * 20 + [0.5, 1.5, 2.5, 3.5, 4.5, 5.5],
            None,
        ),  # six rare values: their share is an aggregate of 6
        (list(np.linspace(0, 1, 28)), None),  # a continuous feature
    ],
)
def test_rare_values_are_folded_before_the_scaling_statistics(
    column: list[float], folded: list[float] | None
) -> None:
    x = torch.tensor(column, dtype=torch.float32).view(-1, 1)
    out = fold_rare_values(x, 5)[:, 0].tolist()
    assert sorted(out) == pytest.approx(sorted(folded if folded is not None else column))
    assert fold_rare_values(x, 1)[:, 0].tolist() == pytest.approx(column)


def test_a_blocks_input_scaling_does_not_reveal_a_small_category() -> None:
    data = paired_data(40, 0)
    genes = data.modalities["genes"]
    genes.x[:, 2] = 0.0
    genes.x[:3, 2] = 1.0  # three patients in a category, as a one-hot column
    block = train_modality(data, "genes", SURVIVAL, QUICK, min_cell=5).block
    mean = block.state_dict()["scaling.mean"]
    assert float(mean[2]) == 0.0  # not k / n_train for a k < 5
    trained = train_modality(data, "genes", SURVIVAL, QUICK, min_cell=1)
    assert (
        0
        < round(float(trained.block.state_dict()["scaling.mean"][2]) * trained.stats["n_train"])
        <= 3
    )  # what it would have said


def test_a_validation_metric_on_fewer_patients_than_the_cell_size_is_not_published() -> None:
    data = paired_data(40, 0)  # a 15 % validation split: 6 patients, 2-3 events
    trained = train_modality(data, "genes", SURVIVAL, QUICK, min_cell=5)
    assert (
        trained.stats["n_val"] >= 5 and "val_metric" not in trained.stats
    )  # too few events behind it
    assert np.isfinite(trained.val_metric)  # the site itself still sees it
    assert "val_metric" in train_modality(data, "genes", SURVIVAL, QUICK, min_cell=1).stats


def test_cross_fitting_chooses_the_epochs_out_of_fold_and_trains_the_block_on_every_patient() -> (
    None
):
    data = paired_data(60, 0)
    settings = QUICK.model_copy(update={"epochs": 4, "patience": 4})
    trained = train_modality(data, "genes", SURVIVAL, settings, min_cell=5, folds=3)
    stats = trained.stats
    assert (
        stats["folds"] == 3 and stats["n_train"] == 60 and "n_val" not in stats
    )  # every patient, none held out
    assert 1 <= stats["epochs"] <= 4 and stats["epochs"] == trained.best_epoch
    assert stats["val_metric"] == pytest.approx(
        trained.val_metric
    )  # enough events over all 60: published
    copies = trained.folds
    assert copies is not None and copies.folds == 3 and len(copies.blocks) == 3
    assert sorted(copies.fold_of) == sorted(data.ids) and set(copies.fold_of.values()) == {0, 1, 2}
    weights = [dict(b.state_dict()) for b in (trained.block, *copies.blocks)]
    assert all(
        not torch.equal(weights[0]["head.linear.weight"], w["head.linear.weight"])
        for w in weights[1:]
    )
    again = train_modality(data, "genes", SURVIVAL, settings, min_cell=5, folds=3)
    assert torch.equal(
        again.block.state_dict()["head.linear.weight"], weights[0]["head.linear.weight"]
    )  # seeded
    fold_epochs = stats["epochs"]
    plain = train_modality(
        data,
        "genes",
        SURVIVAL,
        settings.model_copy(update={"epochs": int(fold_epochs)}),
        min_cell=5,
    )
    assert plain.stats["n_train"] < 60  # a validation split trains on fewer patients


def test_more_folds_than_the_smallest_class_is_refused_before_anything_is_trained() -> None:
    from common.data.splits import FoldError

    data = paired_data(40, 0)
    assert data.event is not None
    data.event[:] = False
    data.event[:4] = True
    with pytest.raises(
        FoldError,
        match=r"\[evaluation\] folds = 5 is more folds than this site's smallest class \(4 events",
    ):
        train_modality(data, "genes", SURVIVAL, QUICK, min_cell=1, folds=5)
    with pytest.raises(FoldError, match="at least 2 folds"):
        train_modality(data, "genes", SURVIVAL, QUICK, min_cell=1, folds=1)
