"""How a site trains its block for a task (shared by the site client and the simulator's
centralized reference, which must train bit for bit the same block): the ``[train]`` settings
of site.toml, cross-fitting over all the site's patients (``[evaluation] folds``) or its own
validation split for early stopping, its input standardisation and class weights. Only
aggregates leave with the block; fold copies stay at the site."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from pydantic import Field

from ..artifacts.foldcopies import FoldCopies
from ..data.bags import BagData
from ..data.dataset import MultimodalDataset
from ..data.splits import FoldError, Standardizer, site_folds, site_split
from ..evaluation.scoring import enough
from ..lego import EncoderConfig, LegoBlock, SingleModality
from ..records import TaskRecord
from ..tasks import TaskSpec, inverse_frequency_weights
from ..tomlconfig import Strict
from .dp import DPAccount, DPBudget, DPError, PrivateBlock, noise_multiplier
from .loop import FitResult, TrainConfig, fit, fit_folds, train_fixed

log = logging.getLogger("mmlego.site")
MIN_CELL = 5  # the default minimum cell size: no count below it leaves a site
COUNTS = ("n_train", "n_val", "n_events_train")  # the patient counts among a block's train_stats


class SitePrivacy(Strict):
    """site.toml's [privacy] section."""

    # Fewer patients than this behind any count that leaves the site (a block's stats, its class
    # weights, a fuse round's patient count) and the count is withheld or the site does not take
    # part.
    min_cell_size: int = Field(
        default=MIN_CELL,
        ge=1,
        description="no count of fewer patients leaves the site (block stats, class weights, fuse "
        "rounds, evaluation)",
    )
    # Set: every block is trained with DP-SGD (Opacus) so that it spends at most this epsilon at
    # block_delta over the planned [train] epochs; the manifest records the accounting.
    block_epsilon: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="set (e.g. 3.0): train blocks with DP-SGD at this epsilon; the task must give "
        "public ranges",
    )
    block_delta: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="DP delta of a block; 0: 1 / (10 x its training patients)",
    )
    max_grad_norm: float = Field(
        default=0.1,
        gt=0,
        allow_inf_nan=False,
        description="DP-SGD: each patient's gradient is clipped to this norm",
    )
    block_lr: float = Field(
        default=3e-3,
        gt=0,
        allow_inf_nan=False,
        description="DP-SGD's learning rate (used instead of [train] lr)",
    )

    def budget(self) -> DPBudget | None:
        if self.block_epsilon is None:
            return None
        return DPBudget(self.block_epsilon, self.block_delta, self.max_grad_norm, self.block_lr)


class BlockTraining(Strict):
    """site.toml's [train] section."""

    epochs: int = Field(default=50, ge=1)
    patience: int = Field(default=10, ge=1)
    batch_size: int = Field(default=32, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    n_tokens: int = Field(default=4, ge=1)
    token_dim: int = Field(default=64, ge=1)
    depth: int = Field(default=2, ge=1)  # update steps S
    val_fraction: float = Field(
        default=0.15,
        gt=0,
        lt=0.5,
        description="with [evaluation] folds = 0: validation patients drawn at random when the "
        "data has no split column",
    )
    seed: int = 0
    device: str = "auto"  # "auto" (CUDA when present), "cpu", "cuda", "cuda:1"
    loader_workers: int = Field(
        default=2, ge=0
    )  # processes reading bags from per-slide files (0: in the training process)


def local_spec(task: TaskRecord, train: MultimodalDataset, min_cell: int = 1) -> TaskSpec:
    """The task's outputs, with this site's class weights (a local loss setting; classes with fewer
    than ``min_cell`` patients are weighted as if they had ``min_cell``)."""
    if task.spec.kind != train.task:
        raise ValueError(
            f"task {task.task_id!r} is {task.spec.kind}, "
            f"but the site data folder holds {train.task} labels"
        )
    if task.spec.kind == "classification":
        assert train.label is not None
        if int(train.label.max()) >= task.spec.n_classes:
            raise ValueError(
                f"site data has class {int(train.label.max())}, "
                f"task {task.task_id!r} has {task.spec.n_classes} classes"
            )
        return replace(
            task.spec,
            class_weights=inverse_frequency_weights(train.label, task.spec.n_classes, min_cell),
        )
    return task.spec


@dataclass
class SiteBlock:
    """A trained block, the aggregates that travel with it, and what stays at the site."""

    block: LegoBlock
    stats: dict[str, float]
    privacy: DPAccount | None = None
    folds: FoldCopies | None = None  # cross-fitted blocks only
    # the site's own figure (out of fold, or on its validation split), published or not
    val_metric: float = float("nan")
    # the epochs of the released weights: chosen out of fold, or the best on the validation split
    best_epoch: int = 0


def train_modality(
    data: MultimodalDataset,
    modality: str,
    task: TaskRecord,
    t: BlockTraining,
    stop: Callable[[], bool] | None = None,
    min_cell: int = MIN_CELL,
    private: DPBudget | None = None,
    folds: int = 0,
) -> SiteBlock:
    """Train one block on the site's patients that have ``modality``. ``folds`` = 0: early
    stopping on the site's validation split (the block never sees those patients). ``folds`` =
    K >= 2 (cross-fitting): K fold copies trained in lockstep on K-1 folds each choose the epoch
    count by their out-of-fold metric over *every* patient, then the block is trained on all of
    them for that many epochs (:mod:`common.train.loop` ``fit_folds``, ``train_fixed``).

    Nothing that travels with the block reveals a count below ``min_cell`` (the site's minimum
    cell size): fewer training patients than that is refused, smaller counts are left out of the
    stats, the validation metric is published only when its patients, events and censored
    patients (or its smallest class) reach ``min_cell``, and class weights treat a smaller class
    as if it had ``min_cell`` patients. With ``private`` the block (and each fold copy) is
    trained with DP-SGD (:mod:`common.train.dp`): its input scaling comes from the task's public
    ranges, it has no class weights, and the events count is withheld; cross-fitted, it trains for
    the planned epochs (no choice on its own patients' labels) and publishes no validation
    metric."""
    if folds:
        return _cross_fitted(data, modality, task, t, stop, min_cell, private, folds)
    has = data.modalities[modality].present.numpy()
    rows, val_rows = site_split(data, t.val_fraction, t.seed)
    train = data.subset(rows[has[rows]]).select_modalities([modality])
    val = data.subset(val_rows[has[val_rows]]).select_modalities([modality])
    if len(val) == 0:
        raise ValueError(
            f"modality {modality!r}: none of the site's validation patients has it; "
            "early stopping needs some"
        )
    _check(data, modality, task, t, len(train), min_cell, private, t.epochs)
    spec = local_spec(task, train, min_cell) if private is None else task.spec
    block, model = _fresh(data, modality, task, t, spec, train, min_cell, private)
    res = fit(
        model,
        train,
        val,
        spec,
        _config(t, private),
        label=f"block:{modality}",
        stop=stop,
        private=private,
    )
    stats = {
        "n_train": float(len(train)),
        "n_val": float(len(val)),
        "val_metric": float(res.best_metric),
        "epochs": float(res.epochs_run),
    }
    return SiteBlock(
        block.cpu().eval(),
        _published(stats, train, val, spec, modality, min_cell, private),
        res.privacy,
        val_metric=res.best_metric,
        best_epoch=res.best_epoch,
    )


def _cross_fitted(
    data: MultimodalDataset,
    modality: str,
    task: TaskRecord,
    t: BlockTraining,
    stop: Callable[[], bool] | None,
    min_cell: int,
    private: DPBudget | None,
    folds: int,
) -> SiteBlock:
    fold_all = site_folds(
        data, folds, t.seed
    )  # every patient of the site, stratified: the same folds for every modality
    has = np.flatnonzero(data.modalities[modality].present.numpy())
    mine = data.subset(has).select_modalities([modality])
    fold_of = fold_all[has]
    if np.unique(fold_of).size < folds:
        raise FoldError(
            f"[evaluation] folds = {folds}: the {len(mine)} patients with modality {modality!r} "
            f"do not fill {folds} folds; set fewer folds"
        )
    smallest = min(int((fold_of != k).sum()) for k in range(folds))
    _check(data, modality, task, t, smallest, min_cell, private, t.epochs)
    spec = local_spec(task, mine, min_cell) if private is None else task.spec
    assignment = dict(zip(data.ids, fold_all.tolist(), strict=True))
    if private is not None:
        return _cross_fitted_private(
            data, mine, fold_all, modality, task, t, stop, min_cell, private, assignment
        )
    copies = [
        _fresh(
            data,
            modality,
            task,
            t,
            spec,
            mine.subset(np.flatnonzero(fold_of != k)),
            min_cell,
            private,
        )
        for k in range(folds)
    ]
    ff = fit_folds(
        [m for _, m in copies],
        mine,
        fold_of,
        spec,
        _config(t, private),
        label=f"block:{modality} folds",
        stop=stop,
    )
    block, res = train_for(data, modality, task, t, ff.best_epoch, min_cell, private, stop, spec)
    log.info(
        "block:%s: trained on all %d patients for the %d epochs chosen out of fold",
        modality,
        len(mine),
        ff.best_epoch,
    )
    stats = {
        "n_train": float(len(mine)),
        "folds": float(folds),
        "val_metric": ff.best_metric,
        "epochs": float(ff.best_epoch),
    }
    kept = FoldCopies(assignment, [b.cpu().eval() for b, _ in copies])
    return SiteBlock(
        block,
        _published(stats, mine, mine, spec, modality, min_cell, private),
        res.privacy,
        kept,
        ff.best_metric,
        ff.best_epoch,
    )


def _cross_fitted_private(
    data: MultimodalDataset,
    mine: MultimodalDataset,
    fold_all: np.ndarray,
    modality: str,
    task: TaskRecord,
    t: BlockTraining,
    stop: Callable[[], bool] | None,
    min_cell: int,
    private: DPBudget,
    assignment: dict[str, int],
) -> SiteBlock:
    """Cross-fitting of a DP block: nothing is chosen on the labels of the patients it trains on
    (that choice would fall outside its epsilon). The block and each fold copy train for exactly
    the planned ``[train] epochs`` with DP-SGD calibrated for them; the out-of-fold metric stays
    at the site (not on the manifest); the copies serve the site's out-of-fold scores."""
    folds = int(fold_all.max()) + 1
    copies = [
        train_for(
            data.subset(np.flatnonzero(fold_all != k)),
            modality,
            task,
            t,
            t.epochs,
            min_cell,
            private,
            stop,
            task.spec,
        )[0]
        for k in range(folds)
    ]
    block, res = train_for(data, modality, task, t, t.epochs, min_cell, private, stop, task.spec)
    log.info(
        "block:%s: DP, trained on all %d patients for the planned %d epochs "
        "(nothing chosen on their labels)",
        modality,
        len(mine),
        t.epochs,
    )
    stats = {"n_train": float(len(mine)), "folds": float(folds), "epochs": float(t.epochs)}
    return SiteBlock(
        block,
        _published(stats, mine, mine, task.spec, modality, min_cell, private),
        res.privacy,
        FoldCopies(assignment, copies),
        float("nan"),
        t.epochs,
    )


def train_for(
    data: MultimodalDataset,
    modality: str,
    task: TaskRecord,
    t: BlockTraining,
    epochs: int,
    min_cell: int = MIN_CELL,
    private: DPBudget | None = None,
    stop: Callable[[], bool] | None = None,
    spec: TaskSpec | None = None,
) -> tuple[LegoBlock, FitResult]:
    """A block trained on every patient of ``data`` that has ``modality`` for exactly ``epochs``
    epochs (no validation): a cross-fitted block's last step, or a central refit."""
    mine = data.subset(np.flatnonzero(data.modalities[modality].present.numpy())).select_modalities(
        [modality]
    )
    spec = spec or (local_spec(task, mine, min_cell) if private is None else task.spec)
    block, model = _fresh(data, modality, task, t, spec, mine, min_cell, private)
    res = train_fixed(
        model, mine, spec, replace(_config(t, private), epochs=epochs), stop=stop, private=private
    )
    return block.cpu().eval(), res


def _check(
    data: MultimodalDataset,
    modality: str,
    task: TaskRecord,
    t: BlockTraining,
    n_train: int,
    min_cell: int,
    private: DPBudget | None,
    epochs: int,
) -> None:
    """Refuse, before anything is trained, too few training patients or a DP budget or data that
    cannot work."""
    if n_train < min_cell:
        raise ValueError(
            f"modality {modality!r} has {n_train} training patients at this site; "
            f"at least {min_cell} (the site's [privacy] min_cell_size) are needed to train a block"
        )
    if private is not None:
        if isinstance(data.modalities[modality], BagData):
            raise DPError(
                f"modality {modality!r} is read from per-slide files: DP training of slide blocks "
                "is not supported yet (DP-SGD needs each patient's bag padded in memory); "
                "unset [privacy] block_epsilon for it"
            )
        noise_multiplier(private, n_train, t.batch_size, epochs)


def _fresh(
    data: MultimodalDataset,
    modality: str,
    task: TaskRecord,
    t: BlockTraining,
    spec: TaskSpec,
    train: MultimodalDataset,
    min_cell: int,
    private: DPBudget | None,
) -> tuple[LegoBlock, torch.nn.Module]:
    """A new block from the task's shared initialisation (the same for the block and its fold
    copies), its input scaling fitted on ``train`` (DP: from public ranges), and the module that
    trains it."""
    mod = data.modalities[modality]
    enc = EncoderConfig(
        kind="tabular" if mod.kind == "tabular" else "bag",
        in_features=mod.n_features,
        token_dim=t.token_dim,
        n_tokens=t.n_tokens,
    )
    torch.manual_seed(t.seed * 1000 + sum(map(ord, modality)))
    block = LegoBlock(task.block_config(modality, enc, depth=t.depth).with_(task=spec))
    if private is None:
        mean, std = Standardizer.fit(train, min_cell, t.seed).stats[modality]
    else:
        mean, std = public_scaling(task, modality, list(mod.features))
    block.set_input_scaling(mean, std)
    model: torch.nn.Module = (
        SingleModality(block, modality) if private is None else PrivateBlock(block, modality)
    )
    return block, model


def _config(t: BlockTraining, private: DPBudget | None) -> TrainConfig:
    return TrainConfig(
        epochs=t.epochs,
        patience=t.patience,
        batch_size=t.batch_size,
        lr=t.lr if private is None else private.lr,
        seed=t.seed,
        device=t.device,
        workers=t.loader_workers,
        amp=private is None,
    )


def _published(
    stats: dict[str, float],
    train: MultimodalDataset,
    val: MultimodalDataset,
    spec: TaskSpec,
    modality: str,
    min_cell: int,
    private: DPBudget | None,
) -> dict[str, float]:
    """``stats`` as they may travel: counts below ``min_cell`` withheld, and the validation metric
    only when the patients it was measured on pass the minimum cell size (the same rule as a
    site's evaluation report: it would reveal what the site refuses to send there)."""
    if train.event is not None and private is None:
        stats["n_events_train"] = float(train.event.sum())
    for key in [k for k in COUNTS if k in stats and stats[k] < min_cell]:
        log.info(
            "%s of %s is below the minimum cell size %d; not reported with the block",
            key,
            modality,
            min_cell,
        )
        del stats[key]
    if "val_metric" in stats and not enough(val, spec, np.ones(len(val), dtype=bool), min_cell):
        log.info(
            "the validation metric of %s rests on fewer than %d patients, events or censored "
            "patients; not reported with the block",
            modality,
            min_cell,
        )
        del stats["val_metric"]
    return stats


def public_scaling(
    task: TaskRecord, modality: str, features: list[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """A DP block's input scaling: from the task's public ranges, never from the site's data."""
    ranges = task.public_ranges.get(modality)
    if ranges is None:
        raise DPError(
            f"[privacy] block_epsilon is set, but task {task.task_id!r} has no public ranges for "
            f"modality {modality!r}: a DP block takes its input scaling from them "
            f"([public_ranges.{modality}] in task.toml)"
        )
    try:
        mean, std = ranges.scaling(modality, features)
    except ValueError as exc:
        raise DPError(str(exc)) from None
    return torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
