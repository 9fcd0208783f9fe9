"""Training a site's blocks: one per enrolled modality found in its data folder, fitted to the
task the coordinator defines (latent shape, Fourier mode, outputs, shared initialisation), with
the site's own validation split for early stopping. Only aggregates leave with the block."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from common.artifacts import BlockManifest, load_signing_key, save_block
from common.data.dataset import MultimodalDataset
from common.data.splits import Standardizer, random_split
from common.lego import EncoderConfig, LegoBlock, SingleModality
from common.records import TaskRecord
from common.tasks import TaskSpec, inverse_frequency_weights
from common.train import TrainConfig, fit

from .config import SiteConfig

log = logging.getLogger("mmlego.site")


@dataclass(frozen=True)
class TrainedBlock:
    modality: str
    folder: Path
    manifest: BlockManifest
    val_metric: float


def local_spec(task: TaskRecord, train: MultimodalDataset) -> TaskSpec:
    """The task's outputs, with this site's class weights (a local loss setting)."""
    if task.spec.kind != train.task:
        raise ValueError(f"task {task.task_id!r} is {task.spec.kind}, but the site data folder holds {train.task} labels")
    if task.spec.kind == "classification":
        assert train.label is not None
        if int(train.label.max()) >= task.spec.n_classes:
            raise ValueError(f"site data has class {int(train.label.max())}, task {task.task_id!r} has {task.spec.n_classes} classes")
        return replace(task.spec, class_weights=inverse_frequency_weights(train.label, task.spec.n_classes))
    return task.spec


def train_modality(data: MultimodalDataset, modality: str, task: TaskRecord, cfg: SiteConfig,
                   stop: Callable[[], bool] | None = None) -> tuple[LegoBlock, dict[str, float]]:
    """Train one block on the site's patients that have ``modality``; returns it and aggregate stats."""
    t = cfg.train
    has = np.flatnonzero(data.modalities[modality].present.numpy())
    own = data.subset(has).select_modalities([modality])
    strata = own.event if own.task == "survival" else own.label
    half = t.val_fraction / 2
    split = random_split(len(own), t.seed, fractions=(1 - 2 * half, half, half), stratify=strata)
    train, val = own.subset(split.train), own.subset(np.concatenate([split.val, split.test]))
    spec = local_spec(task, train)
    mod = data.modalities[modality]
    enc = EncoderConfig(kind="tabular" if mod.kind == "tabular" else "bag", in_features=mod.n_features,
                        token_dim=t.token_dim, n_tokens=t.n_tokens)
    torch.manual_seed(t.seed * 1000 + sum(map(ord, modality)))
    block = LegoBlock(task.block_config(modality, enc, depth=t.depth).with_(task=spec))
    mean, std = Standardizer.fit(train).stats[modality]
    block.set_input_scaling(mean, std)
    tc = TrainConfig(epochs=t.epochs, patience=t.patience, batch_size=t.batch_size, lr=t.lr, seed=t.seed, device=t.device)
    res = fit(SingleModality(block, modality), train, val, spec, tc, label=f"block:{modality}", stop=stop)
    stats = {"n_train": float(len(train)), "n_val": float(len(val)), "val_metric": float(res.best_metric),
             "epochs": float(res.epochs_run)}
    if own.event is not None:
        stats["n_events_train"] = float(train.event.sum())  # type: ignore[union-attr]
    return block.cpu().eval(), stats


def train_site(cfg: SiteConfig, task: TaskRecord, data: MultimodalDataset, only: Sequence[str] | None = None,
               stop: Callable[[], bool] | None = None) -> list[TrainedBlock]:
    """Train, sign and write a block for every enrolled modality the task accepts and the data has
    (or just those in ``only``). ``stop`` interrupts training
    (:class:`common.train.Interrupted`); nothing of an unfinished block is left behind."""
    key = load_signing_key(cfg.signing_key)
    wanted = [m for m in cfg.modalities if m in task.modalities and (only is None or m in only)]
    if not wanted:
        raise ValueError(f"task {task.task_id!r} accepts {list(task.modalities)}; site {cfg.site!r} is enrolled for "
                         f"{list(cfg.modalities)}: nothing to train")
    missing = [m for m in wanted if m not in data.modalities]
    if len(missing) == len(wanted):
        raise ValueError(f"the site data folder has none of the modalities {wanted} (it has {sorted(data.modalities)})")
    out = []
    for modality in wanted:
        if modality in missing:
            log.warning("the data folder has no modality %r; no block for it", modality)
            continue
        log.info("training block %s on %s", modality, cfg.site)
        block, stats = train_modality(data, modality, task, cfg, stop)
        tmp = cfg.blocks / f".{modality}.partial"
        manifest = save_block(block, tmp, site=cfg.site, task_id=task.task_id, train_stats=stats, signing_key=key)
        folder = cfg.blocks / f"{task.task_id}-{modality}-{manifest.weights_sha256[:12]}"
        if folder.exists():
            shutil.rmtree(tmp)
        else:
            tmp.rename(folder)
        out.append(TrainedBlock(modality, folder, manifest, stats["val_metric"]))
    return out


def current_blocks(cfg: SiteConfig, task_id: str) -> dict[str, Path]:
    """The newest readable block folder of every modality of ``task_id`` in the site's block folder."""
    from common.artifacts import read_block_files

    out: dict[str, tuple[float, Path]] = {}
    for folder in cfg.blocks.glob(f"{task_id}-*") if cfg.blocks.is_dir() else []:
        try:
            m = read_block_files(folder).manifest
        except (OSError, ValueError):
            continue  # a half-written or foreign folder is not a block
        if m.task_id == task_id and m.site == cfg.site:
            stamp = folder.stat().st_mtime
            if m.modality not in out or stamp > out[m.modality][0]:
                out[m.modality] = (stamp, folder)
    return {k: v[1] for k, v in out.items()}
