"""A site's block training never lets a count below its minimum cell size travel with the block."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from common.data.dataset import ModalityData, MultimodalDataset
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
    _, stats = train_modality(data, "genes", SURVIVAL, QUICK, min_cell=1)
    events = int(stats["n_events_train"])
    assert 0 < events < stats["n_val"] < stats["n_train"]
    _, stats = train_modality(data, "genes", SURVIVAL, QUICK, min_cell=events + 1)
    assert "n_events_train" not in stats and stats["n_train"] > events and stats["n_val"] > events
    with pytest.raises(ValueError, match=r"at least 60 .*min_cell_size"):
        train_modality(data, "genes", SURVIVAL, QUICK, min_cell=60)


def test_class_weights_do_not_reveal_a_class_smaller_than_the_cell_size() -> None:
    assert inverse_frequency_weights(np.array([0] * 20 + [1] * 2), 3, min_count=5) == pytest.approx(
        (22 / 60, 22 / 15, 0.0))  # class 1 weighted as if it had 5 patients; an absent class stays 0
    n = 40
    rng = np.random.default_rng(0)
    label = np.array([1] * 4 + [0] * (n - 4))
    mods = {"genes": ModalityData("tabular", torch.tensor(rng.normal(size=(n, 3)).astype(np.float32)),
                                  torch.ones(n, dtype=torch.bool), ["a", "b", "c"])}
    data = MultimodalDataset("synthetic", "classification", [f"p{i}" for i in range(n)], mods, label=label)
    task = TaskRecord("t2", TaskSpec("classification", n_classes=2), latent_rows=4, latent_dim=8, fourier="2d", init_seed=7,
                      modalities=("genes",))
    block, stats = train_modality(data, "genes", task, QUICK, min_cell=5)
    w = block.config.task.class_weights
    # w1 / w0 = n0 / max(n1, 5) with n1 < 5: the block says "fewer than 5", not how many.
    assert any(w[1] / w[0] == pytest.approx((stats["n_train"] - n1) / 5) for n1 in (1, 2, 3, 4)), w
