"""Training a site's blocks: one per enrolled modality found in its data folder, fitted to the
task the coordinator defines (latent shape, Fourier mode, outputs, shared initialisation),
cross-fitted over all the site's patients (``[evaluation] folds``; the fold copies are kept in
the state folder) or early-stopped on its own validation split. Only aggregates leave with the
block."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from common.artifacts import BlockManifest, load_signing_key, save_block
from common.artifacts.foldcopies import ASSIGNMENT, fold_folder, save_fold_copies
from common.data.dataset import MultimodalDataset
from common.records import TaskRecord
from common.train.siteblock import train_modality

from .config import SiteConfig

log = logging.getLogger("mmlego.site")


@dataclass(frozen=True)
class TrainedBlock:
    modality: str
    folder: Path
    manifest: BlockManifest
    val_metric: float


def train_site(
    cfg: SiteConfig,
    task: TaskRecord,
    data: MultimodalDataset,
    only: Sequence[str] | None = None,
    stop: Callable[[], bool] | None = None,
) -> list[TrainedBlock]:
    """Train, sign and write a block for every enrolled modality the task accepts and the data has
    (or just those in ``only``). ``stop`` interrupts training
    (:class:`common.train.Interrupted`); nothing of an unfinished block is left behind."""
    key = load_signing_key(cfg.signing_key)
    wanted = [m for m in cfg.modalities if m in task.modalities and (only is None or m in only)]
    if not wanted:
        raise ValueError(
            f"task {task.task_id!r} accepts {list(task.modalities)}; "
            f"site {cfg.site!r} is enrolled for {list(cfg.modalities)}: nothing to train"
        )
    missing = [m for m in wanted if m not in data.modalities]
    if len(missing) == len(wanted):
        raise ValueError(
            f"the site data folder has none of the modalities {wanted} "
            f"(it has {sorted(data.modalities)})"
        )
    out = []
    for modality in wanted:
        if modality in missing:
            log.warning("the data folder has no modality %r; no block for it", modality)
            continue
        log.info("training block %s on %s", modality, cfg.site)
        trained = train_modality(
            data,
            modality,
            task,
            cfg.train,
            stop,
            cfg.min_cell_size,
            cfg.privacy.budget(),
            folds=cfg.evaluation.folds,
        )
        tmp = cfg.blocks / f".{modality}.partial"
        manifest = save_block(
            trained.block,
            tmp,
            site=cfg.site,
            task_id=task.task_id,
            train_stats=trained.stats,
            signing_key=key,
            dp=trained.privacy,
        )
        if (
            trained.folds is not None
        ):  # kept in the state folder, never beside the block that is pushed
            save_fold_copies(fold_folder(cfg.state, manifest.weights_sha256), trained.folds)
        folder = cfg.blocks / f"{task.task_id}-{modality}-{manifest.weights_sha256[:12]}"
        if folder.exists():
            shutil.rmtree(tmp)
        else:
            tmp.rename(folder)
        out.append(TrainedBlock(modality, folder, manifest, trained.val_metric))
    return out


def matches(cfg: SiteConfig, manifest: BlockManifest) -> bool:
    """A block trained as the site's settings now ask: with ``[evaluation] folds`` its fold copies
    are in the state folder (a block trained otherwise is trained again)."""
    folds = int(manifest.train_stats.get("folds", 0))
    if folds != cfg.evaluation.folds:
        return False
    return folds == 0 or (fold_folder(cfg.state, manifest.weights_sha256) / ASSIGNMENT).is_file()


def current_blocks(cfg: SiteConfig, task_id: str) -> dict[str, Path]:
    """The newest readable block folder of every modality of ``task_id`` in the site's block
    folder."""
    from common.artifacts import read_block_files

    out: dict[str, tuple[float, Path]] = {}
    for folder in cfg.blocks.glob(f"{task_id}-*") if cfg.blocks.is_dir() else []:
        try:
            m = read_block_files(folder).manifest
        except (OSError, ValueError):
            continue  # a half-written or foreign folder is not a block
        if m.task_id == task_id and m.site == cfg.site and matches(cfg, m):
            stamp = folder.stat().st_mtime
            if m.modality not in out or stamp > out[m.modality][0]:
                out[m.modality] = (stamp, folder)
    return {k: v[1] for k, v in out.items()}
