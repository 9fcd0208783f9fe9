"""The training loop keeps a real copy of the best weights and is seeded; bags read by worker
processes train exactly as bags read in process."""

from pathlib import Path

import numpy as np
import torch

from common.data import ModalityData, MultimodalDataset
from common.lego import SingleModality
from common.tasks import TaskSpec
from common.train import TrainConfig, evaluate, fit
from tests.factories import block

SPEC = TaskSpec("classification", n_classes=2)


def toy(n: int = 60, seed: int = 0) -> MultimodalDataset:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    label = (x[:, 0] + 0.3 * rng.normal(size=n) > 0).astype(int)
    mod = ModalityData(
        "tabular", torch.from_numpy(x), torch.ones(n, dtype=torch.bool), [f"f{i}" for i in range(5)]
    )
    return MultimodalDataset(
        "toy", "classification", [str(i) for i in range(n)], {"a": mod}, label=label, n_classes=2
    )


def model() -> SingleModality:
    return SingleModality(block(task=SPEC), "a")


def test_learns_a_simple_signal() -> None:
    m = model()
    res = fit(m, toy(), toy(seed=1), SPEC, TrainConfig(epochs=15, patience=15, seed=0))
    assert evaluate(m, toy(seed=2), SPEC) > 0.8
    assert res.samples_per_second > 0 and res.device == "cpu"


def test_restores_the_best_epoch_not_the_last() -> None:
    m = model()
    res = fit(m, toy(), toy(seed=1), SPEC, TrainConfig(epochs=12, patience=12, lr=3e-3))
    best = max(h["val_metric"] for h in res.history)
    assert res.best_metric == best
    # the weights now held give exactly the best validation metric, whatever came after it
    assert evaluate(m, toy(seed=1), SPEC) == best
    assert res.history[res.best_epoch - 1]["val_metric"] == best


def test_same_seed_same_weights() -> None:
    def run() -> dict:
        torch.manual_seed(0)
        m = model()
        fit(m, toy(), toy(seed=1), SPEC, TrainConfig(epochs=3, seed=5))
        return m.state_dict()

    a, b = run(), run()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_select_initial_can_keep_the_start() -> None:
    m = model()
    start = {k: v.clone() for k, v in m.state_dict().items()}
    res = fit(m, toy(), toy(seed=1), SPEC, TrainConfig(epochs=1, lr=0.0, select_initial=True))
    assert res.best_epoch == 0  # lr 0 cannot improve: the start is kept
    assert all(torch.equal(start[k], v) for k, v in m.state_dict().items())


def slide_folder(tmp_path: Path) -> MultimodalDataset:
    from common.data.sitefolder import load_site_folder
    from common.data.slidecohort import SlideCohort, write_slide_cohort

    folder = write_slide_cohort(
        tmp_path / "cohort",
        SlideCohort(
            slides=60,
            features=16,
            median_instances=40,
            min_instances=10,
            max_instances=200,
            genes=4,
            seed=2,
        ),
        train_instances=25,
    )
    return load_site_folder(folder)


def test_bags_read_by_workers_train_exactly_as_in_process(tmp_path: Path) -> None:
    """Worker processes draw the same instances as the training process (sampling is seeded per
    patient and epoch, not per worker), so the weights are identical; prediction reads every
    instance in batches bounded by instance features."""
    from common.lego import BlockConfig, EncoderConfig, LegoBlock
    from common.tasks import survival_bins
    from common.train.batches import evaluation_batches

    data = slide_folder(tmp_path).select_modalities(["slides"])
    assert data.lazy
    spec = TaskSpec("survival", n_bins=4, bin_edges=survival_bins(data.time, data.event, 4))
    train, val = data.subset(np.arange(40)), data.subset(np.arange(40, len(data)))
    states = []
    for workers in (0, 2):
        torch.manual_seed(0)
        m = SingleModality(
            LegoBlock(
                BlockConfig(
                    "slides",
                    EncoderConfig("bag", in_features=16, token_dim=8, n_tokens=2),
                    spec,
                    latent_rows=4,
                    latent_dim=8,
                )
            ),
            "slides",
        )
        fit(m, train, val, spec, TrainConfig(epochs=3, patience=3, batch_size=8, workers=workers))
        states.append(m.state_dict())
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k
    sizes = data.modalities["slides"].sizes()  # type: ignore[union-attr]
    batches = evaluation_batches(data, 256, elements=16 * 200)
    assert np.concatenate(batches).tolist() == list(range(len(data)))
    assert all(len(b) == 1 or sizes[b].sum() * 16 <= 16 * 200 for b in batches)
    assert len(batches) > 1
