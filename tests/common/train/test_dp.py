"""Differentially private blocks: Opacus's per-sample gradients of every trainable tensor equal
single-sample backward passes; a DP block is accounted on its manifest, scaled by public ranges
only, carries no class weights or events count; bad settings are named."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from common.artifacts import load_block, save_block
from common.artifacts.manifest import DPAccount
from common.artifacts.modelcard import privacy, render_markdown
from common.data.dataset import MultimodalDataset
from common.lego import BlockConfig, EncoderConfig, LegoBlock
from common.lego.inputs import ModalityInput
from common.records import PublicRanges, TaskRecord
from common.serde import manifest_from_bytes, manifest_to_bytes, task_from_pb, task_to_pb
from common.tasks import TaskSpec, task_loss
from common.train.dp import DPBudget, DPError, PrivateBlock, noise_multiplier, per_sample_gradients
from common.train.siteblock import BlockTraining, train_modality
from tests.coordinator.test_fuse_rounds import paired_data
from tests.factories import SURV

QUICK = BlockTraining(
    epochs=4, patience=4, batch_size=16, token_dim=8, n_tokens=2, depth=1, device="cpu"
)


def synthetic_site_data(n: int, seed: int, task: str = "survival") -> MultimodalDataset:
    data = paired_data(n, seed)
    if task == "survival":
        return data
    label = (data.modalities["genes"].x[:, 0] > 0).numpy().astype(np.int64)
    return MultimodalDataset("synthetic", "classification", data.ids, data.modalities, label=label)


def private_block(kind: str, features: int) -> PrivateBlock:
    torch.manual_seed(3)
    enc = EncoderConfig(
        kind, in_features=features, token_dim=16, n_tokens=3, hidden=32, dropout=0.0
    )
    block = LegoBlock(
        BlockConfig(
            "m",
            enc,
            SURV,
            latent_rows=4,
            latent_dim=8,
            dim_head=8,
            ff_dropout=0.0,
            attn_dropout=0.0,
        )
    )
    return PrivateBlock(block.train(), "m")


@pytest.mark.parametrize("kind", ["tabular", "bag"])
def test_per_sample_gradients_equal_single_sample_backward_passes(kind: str) -> None:
    """Every trainable tensor (encoder, learned latent L0, attention, feed-forward, head) gets a
    per-sample gradient, and each equals the gradient of that sample's loss alone."""
    g = torch.Generator().manual_seed(0)
    b = 5
    x = torch.randn(b, 7, generator=g) if kind == "tabular" else torch.randn(b, 9, 4, generator=g)
    mask = (
        None
        if kind == "tabular"
        else torch.arange(9)[None, :] < torch.tensor([9, 3, 5, 1, 7])[:, None]
    )
    targets = {
        "bin": torch.tensor([0, 1, 3, 2, 1]),
        "event": torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0]),
    }
    model = private_block(kind, x.shape[-1])
    grads = per_sample_gradients(
        model, lambda logits: task_loss(SURV, logits, targets), {"m": ModalityInput(x, mask)}
    )
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(grads) == names and "l0.value" in names and any(n.startswith("head.") for n in names)
    for i in range(b):
        model.zero_grad(set_to_none=True)
        one = {"m": ModalityInput(x[i : i + 1], None if mask is None else mask[i : i + 1])}
        task_loss(SURV, model(one), {k: v[i : i + 1] for k, v in targets.items()}).backward()
        for name, p in model.named_parameters():
            expected = p.grad if p.grad is not None else torch.zeros_like(p)
            torch.testing.assert_close(
                grads[name][i], expected, rtol=1e-4, atol=1e-5, msg=f"{name}, sample {i}"
            )


def task_with_ranges(data_features: list[str], spec: TaskSpec = SURV) -> TaskRecord:
    return TaskRecord(
        "t",
        spec,
        latent_rows=6,
        latent_dim=8,
        modalities=("genes", "clinical"),
        public_ranges={
            "genes": PublicRanges(all=(-4.0, 4.0), features={data_features[0]: (0.0, 10.0)})
        },
    )


def test_a_dp_block_is_accounted_and_scaled_by_public_ranges_only(tmp_path) -> None:
    data = synthetic_site_data(n=120, seed=2)
    features = list(data.modalities["genes"].features)
    task = task_with_ranges(features)
    trained = train_modality(data, "genes", task, QUICK, min_cell=5, private=DPBudget(3.0))
    block, stats, dp = trained.block, trained.stats, trained.privacy
    assert (
        dp is not None
        and 0 < dp.epsilon <= 3.0
        and dp.target_epsilon == 3.0
        and dp.accountant == "rdp"
    )
    assert dp.steps > 0 and dp.noise_multiplier > 0 and dp.max_grad_norm == 0.1
    n = int(stats["n_train"])
    assert dp.delta == pytest.approx(1 / (10 * n)) and dp.sample_rate == pytest.approx(16 / n)
    assert "n_events_train" not in stats  # no count of events leaves with a DP block
    expected_mean = [5.0] + [0.0] * (len(features) - 1)
    expected_std = [2.5] + [2.0] * (len(features) - 1)
    assert torch.equal(block.scaling.mean, torch.tensor(expected_mean)) and torch.equal(
        block.scaling.std, torch.tensor(expected_std)
    )
    manifest = save_block(block, tmp_path / "b", site="s", task_id="t", train_stats=stats, dp=dp)
    again = manifest_from_bytes(manifest_to_bytes(manifest))
    assert again.dp == dp and load_block(tmp_path / "b")[1].dp == dp
    assert not any(
        hasattr(p, "grad_sample") and p.grad_sample is not None for p in block.parameters()
    )  # Opacus detached


def test_dp_classification_blocks_have_no_class_weights() -> None:
    data = synthetic_site_data(n=120, seed=3, task="classification")
    spec = TaskSpec("classification", n_classes=2)
    private = train_modality(
        data,
        "genes",
        task_with_ranges(list(data.modalities["genes"].features), spec),
        QUICK,
        min_cell=5,
        private=DPBudget(8.0),
    )
    block, dp = private.block, private.privacy
    assert dp is not None and not block.config.task.class_weights
    unnoised = train_modality(
        data,
        "genes",
        task_with_ranges(list(data.modalities["genes"].features), spec),
        QUICK,
        min_cell=5,
    )
    plain, none = unnoised.block, unnoised.privacy
    assert (
        none is None and plain.config.task.class_weights
    )  # without DP the site's class weights are used


def test_settings_that_cannot_work_are_named() -> None:
    with pytest.raises(DPError, match="block_epsilon must be a positive number"):
        DPBudget(0.0).check()
    with pytest.raises(DPError, match="block_epsilon must be a positive number"):
        DPBudget(math.inf).check()
    with pytest.raises(DPError, match="block_delta must be at least 0 and below 1"):
        DPBudget(1.0, delta=1.0).check()
    with pytest.raises(DPError, match="max_grad_norm"):
        DPBudget(1.0, max_grad_norm=0.0).check()
    with pytest.raises(DPError, match="too small for even one epoch"):
        noise_multiplier(DPBudget(1e-8), n=100, batch_size=32, epochs=10)
    assert noise_multiplier(DPBudget(8.0), 100, 32, 10) < noise_multiplier(
        DPBudget(1.0), 100, 32, 10
    )
    data = synthetic_site_data(n=60, seed=1)
    bare = TaskRecord("t", SURV, latent_rows=6, latent_dim=8, modalities=("genes", "clinical"))
    with pytest.raises(DPError, match="no public ranges for modality 'genes'"):
        train_modality(data, "genes", bare, QUICK, min_cell=5, private=DPBudget(3.0))
    partial = replace(bare, public_ranges={"genes": PublicRanges(features={"g0": (0.0, 1.0)})})
    with pytest.raises(DPError, match="no range for feature"):
        train_modality(data, "genes", partial, QUICK, min_cell=5, private=DPBudget(3.0))


def test_public_ranges_and_the_epsilon_limit_travel_with_the_task() -> None:
    task = TaskRecord(
        "t",
        SURV,
        modalities=("genes", "clinical"),
        max_block_epsilon=3.0,
        public_ranges={
            "genes": PublicRanges((0.0, 16.0)),
            "clinical": PublicRanges(None, {"age": (18.0, 95.0)}),
        },
    )
    assert task_from_pb(task_to_pb(task)) == task
    assert task.public_ranges["clinical"].interval("er=positive") == (
        0.0,
        1.0,
    )  # one-hot columns need no range
    with pytest.raises(ValueError, match="low < high"):
        PublicRanges((1.0, 1.0))
    with pytest.raises(ValueError, match="public_ranges names modality 'slides'"):
        TaskRecord(
            "t", SURV, modalities=("genes",), public_ranges={"slides": PublicRanges((0.0, 1.0))}
        )


def test_the_card_shows_each_blocks_epsilon_and_a_fused_versions_composition() -> None:
    def entry(site: str, modality: str, eps: float | None) -> dict:
        dp = DPAccount(eps, 1e-3, 3.0, 1.2, 0.2, 100, 1.0) if eps is not None else None
        return {
            "block_id": "ab" * 32,
            "site": site,
            "modality": modality,
            "size": 1,
            "accepted_at": "now",
            "signer": {"signing_key_sha256": "cd" * 32, "certificate_serial": 1},
            "train_stats": {},
            "dp": dp.__dict__ if dp else None,
        }

    card = {
        "model_id": "t-v2",
        "blocks": [
            entry("a", "genes", 2.0),
            entry("a", "clinical", 1.0),
            entry("b", "genes", None),
        ],
        "fuse": {"privacy": {"epsilon": "0.5000", "delta": "1e-05"}, "rounds": []},
    }
    p = privacy(card)
    assert p["a"]["epsilon"] == pytest.approx(3.5) and p["a"]["delta"] == pytest.approx(2e-3 + 1e-5)
    assert (
        p["b"]["epsilon"] is None
    )  # a block without DP: no finite guarantee for its site's patients
    text = render_markdown(card)
    assert (
        "## Privacy" in text
        and "| a | genes 2, clinical 1 | 3.5 |" in text
        and "no finite guarantee" in text
    )


def test_an_invalid_dp_record_on_a_manifest_is_refused(tmp_path) -> None:
    block = LegoBlock(
        BlockConfig(
            "genes", EncoderConfig("tabular", in_features=3), SURV, latent_rows=4, latent_dim=8
        )
    )
    with pytest.raises(ValueError, match="DP accounting is not valid"):
        DPAccount(-1.0, 1e-3, 3.0, 1.0, 0.1, 10, 1.0)
    manifest = save_block(block, tmp_path / "b", dp=DPAccount(1.0, 1e-3, 3.0, 1.0, 0.1, 10, 1.0))
    from common.serde import manifest_to_pb

    msg = manifest_to_pb(manifest)
    msg.dp.delta = 2.0
    with pytest.raises(ValueError, match="manifest dp"):
        manifest_from_bytes(msg.SerializeToString())


def test_dp_needs_padded_bags() -> None:
    model = private_block("bag", 4)
    packed = ModalityInput(torch.randn(6, 4), None, None, torch.tensor([0, 2, 6]))
    with pytest.raises(DPError, match="padded in memory"):
        model({"m": packed})
    encoder = model._block[0].encoder
    assert encoder.pack_below == 0.0  # while DP trains it, the encoder never packs a padded batch
    model.release()
    assert (
        encoder.pack_below == type(encoder).pack_below
    )  # afterwards it packs mostly-padded batches again
    assert np.isfinite(
        float(model({"m": ModalityInput(torch.randn(2, 3, 4), None)}).detach().sum())
    )


def test_slides_read_from_files_are_refused_for_dp_with_a_message(tmp_path) -> None:
    from common.data.sitefolder import load_site_folder
    from common.data.slidecohort import SlideCohort, write_slide_cohort

    folder = write_slide_cohort(
        tmp_path / "c",
        SlideCohort(
            slides=30,
            features=4,
            median_instances=20,
            min_instances=5,
            max_instances=60,
            genes=3,
            seed=1,
        ),
    )
    data = load_site_folder(folder)
    task = TaskRecord(
        "t",
        SURV,
        latent_rows=6,
        latent_dim=8,
        modalities=("slides", "genes"),
        public_ranges={"slides": PublicRanges((-4.0, 4.0))},
    )
    with pytest.raises(DPError, match="DP training of slide blocks is not supported yet"):
        train_modality(data, "slides", task, QUICK, min_cell=1, private=DPBudget(3.0))


def test_a_cross_fitted_dp_block_trains_private_fold_copies_and_spends_at_most_its_budget() -> None:
    data = synthetic_site_data(n=120, seed=2)
    task = task_with_ranges(list(data.modalities["genes"].features))
    trained = train_modality(data, "genes", task, QUICK, min_cell=5, private=DPBudget(3.0), folds=3)
    assert trained.privacy is not None and 0 < trained.privacy.epsilon <= 3.0
    assert trained.folds is not None and trained.folds.folds == 3 and trained.stats["folds"] == 3
    assert "n_events_train" not in trained.stats  # withheld for DP blocks, as without folds
    assert (
        "val_metric" not in trained.stats and trained.stats["epochs"] == QUICK.epochs
    )  # nothing chosen on its patients' labels
    assert not any(
        hasattr(p, "grad_sample") and p.grad_sample is not None
        for b in trained.folds.blocks
        for p in b.parameters()
    )
