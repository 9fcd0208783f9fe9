"""The pieces of one evaluation split: a seeded 70/15/15 split with train-only preprocessing, the
task spec from the training part, and training one LegoBlock per modality."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .data.dataset import MultimodalDataset
from .data.splits import Split, Standardizer, random_split
from .lego import BlockConfig, EncoderConfig, LegoBlock, SingleModality
from .tasks import TaskSpec, inverse_frequency_weights, survival_bins
from .train import TrainConfig, fit


@dataclass(frozen=True)
class ExperimentConfig:
    """Block hyper-parameters and training settings used by ``mmlego demo`` and ``mmlego bench``."""

    latent_rows: int = 16  # c
    latent_dim: int = 64  # d
    depth: int = 2  # S update steps
    fourier: str = "2d"  # the paper's mode; "1d" measured as an ablation (docs/RESULTS.md)
    n_tokens: int = 4  # K tokens per encoder
    token_dim: int = 64  # D
    n_bins: int = 4  # survival time bins
    shared_init: bool = True  # all blocks start from the same L0 and head (wins on validation)
    train: TrainConfig = field(default_factory=TrainConfig)
    # LegoFuse: 2 epochs from the trained blocks; the start is kept if validation does not improve
    fuse: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=2, patience=2, lr=5e-4, select_initial=True)
    )


def prepare_split(
    data: MultimodalDataset, seed: int
) -> tuple[Split, MultimodalDataset, MultimodalDataset, MultimodalDataset]:
    """Stratified 70/15/15 split; standardisation fitted on the training part only."""
    strata = data.event if data.task == "survival" else data.label
    split = random_split(len(data), seed, stratify=strata)
    train, val, test = (data.subset(ix) for ix in (split.train, split.val, split.test))
    scaler = Standardizer.fit(train)
    return split, scaler.apply(train), scaler.apply(val), scaler.apply(test)


def task_for(train: MultimodalDataset, n_bins: int) -> TaskSpec:
    """The task spec, with survival bins / class weights computed on the training split only."""
    if train.task == "survival":
        assert train.time is not None and train.event is not None
        return TaskSpec(
            "survival", n_bins=n_bins, bin_edges=survival_bins(train.time, train.event, n_bins)
        )
    assert train.label is not None
    return TaskSpec(
        "classification",
        n_classes=train.n_classes,
        class_weights=inverse_frequency_weights(train.label, train.n_classes),
    )


def block_config(
    data: MultimodalDataset, modality: str, task: TaskSpec, cfg: ExperimentConfig, seed: int
) -> BlockConfig:
    mod = data.modalities[modality]
    kind = "tabular" if mod.kind == "tabular" else "bag"
    enc = EncoderConfig(
        kind=kind, in_features=mod.n_features, token_dim=cfg.token_dim, n_tokens=cfg.n_tokens
    )
    return BlockConfig(
        modality=modality,
        encoder=enc,
        task=task,
        latent_rows=cfg.latent_rows,
        latent_dim=cfg.latent_dim,
        depth=cfg.depth,
        fourier=cfg.fourier,  # type: ignore[arg-type]
        init_seed=seed if cfg.shared_init else None,
    )


def train_block(
    train: MultimodalDataset,
    val: MultimodalDataset,
    modality: str,
    task: TaskSpec,
    cfg: ExperimentConfig,
    seed: int,
    progress: bool = False,
) -> tuple[LegoBlock, float, float]:
    """Train one block on the patients that have ``modality``; returns (block, val metric,
    samples/s)."""
    import torch

    torch.manual_seed(seed * 1000 + sum(map(ord, modality)))  # encoder init differs per modality
    block = LegoBlock(block_config(train, modality, task, cfg, seed))
    has_tr = np.flatnonzero(train.modalities[modality].present.numpy())
    has_va = np.flatnonzero(val.modalities[modality].present.numpy())
    tr, va = (
        train.subset(has_tr).select_modalities([modality]),
        val.subset(has_va).select_modalities([modality]),
    )
    res = fit(
        SingleModality(block, modality),
        tr,
        va,
        task,
        cfg.train,
        progress,
        label=f"block:{modality}",
    )
    return block, res.best_metric, res.samples_per_second
