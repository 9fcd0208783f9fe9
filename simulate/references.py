"""The references a reviewer would accept, computed in the simulator's process from the same data
the sites hold (never their test patients), each chosen on validation or out-of-fold evidence:

- ``local``: per hospital, the best model it can build on its own patients alone (each of its
  blocks, their merge and ensemble, its own LegoFuse when it holds paired data), chosen by its own
  cross-validation: what a hospital has without the consortium;
- ``baseline``: the same multimodal architecture trained from scratch by FedAvg over *every*
  site (missing modalities masked), its round count chosen on the sites' validation splits and
  then trained again on all their patients, with the epoch budget of blocks plus fuse;
  ``baseline-paired``: the same over the paired sites only;
- ``ceiling``: the best of several central model families on the pooled patients of all sites
  (each with its site's modalities), chosen on a pooled validation split and refitted on all of
  them: pooled LegoFuse (``ceiling-fuse``), the pooled ensemble of per-modality blocks
  (``ceiling-ensemble``), the architecture trained end to end (``ceiling-e2e``) and elastic-net
  Cox / penalised logistic regression on the concatenated features with missing-modality
  indicators (``ceiling-classical``)."""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from common.artifacts.foldcopies import FoldCopies, fold_folder, load_fold_copies
from common.bench.baselines import Classical
from common.data.bags import BagData
from common.data.dataset import MultimodalDataset, concat_datasets
from common.data.sitefolder import load_site_folder
from common.data.splits import Standardizer, random_split, site_folds, site_split, strata_of
from common.evaluation.paired import TestSet, within_site_metric
from common.evaluation.scoring import fold_parts, predict_parts
from common.fuse import FuseConfig, fused_model, paired_only
from common.lego import LegoBlock, LegoEnsemble, LegoFuse, SingleModality
from common.lego.recipe import BLOCK_KINDS, Recipe
from common.records import TaskRecord
from common.tasks import TaskSpec
from common.train import TrainConfig, fit, predict_scores
from common.train.loop import fit_folds, train_fixed
from common.train.siteblock import BlockTraining, train_for, train_modality
from coordinator.fuse_rounds import NodeInfo, run_rounds

from .evidence import (
    CeilingChoice,
    CeilingInfo,
    FedAvgInfo,
    LocalInfo,
    ReferenceInfo,
    RoundPoint,
)
from .inprocess import LocalSites
from .scenario import Partition, Scenario

log = logging.getLogger("mmlego.simulate")
FUSE_LR = 5e-4  # LegoFuse's learning rate (FuseConfig's default)


@dataclass
class Entry:
    """A model the report measures: its kind, a name for people, the modalities it reads, and
    its scores (risk, or class probabilities) of every patient of a dataset."""

    kind: str
    name: str
    modalities: list[str]
    predict: Callable[[MultimodalDataset], np.ndarray]
    info: ReferenceInfo | None = None  # how a reference was chosen (validation figures)
    # a hospital's own version of this kind (the recommendation for its patients), if other
    per_site: dict[str, Entry] = field(default_factory=dict)


def module_entry(
    kind: str,
    name: str,
    model: torch.nn.Module,
    modalities: Sequence[str],
    spec: TaskSpec,
    info: ReferenceInfo | None = None,
) -> Entry:
    model = model.eval()

    def predict(data: MultimodalDataset) -> np.ndarray:
        part = data.select_modalities([m for m in modalities if m in data.modalities])
        with torch.no_grad():
            return predict_scores(model, part, spec, amp=False)

    return Entry(kind, name, list(modalities), predict, info)


def within(spec: TaskSpec, data: MultimodalDataset, scores: np.ndarray, sites: np.ndarray) -> float:
    """The within-site metric of ``scores`` on ``data`` (patients compared only within their
    site)."""
    n_classes = spec.n_classes if spec.kind == "classification" else 0
    return within_site_metric(
        TestSet(spec.kind, n_classes, sites, data.targets(), {"m": scores}), "m"
    )


@dataclass
class SiteScaling:
    """Each hospital's own input standardisation, as each does locally before its data is pooled or
    trained on by FedAvg (so that a hospital's assay scale or case mix does not shift every
    feature for the pooled model: the blocks have their site's scaling built in). A (hospital,
    modality) it does not hold falls back to the pooled statistics. Bags keep their own scaling."""

    by_site: dict[str, Standardizer]
    pooled: Standardizer

    @classmethod
    def fit(cls, parts: dict[str, MultimodalDataset], min_cell: int, seed: int) -> SiteScaling:
        def dense(d: MultimodalDataset) -> MultimodalDataset:
            return d.select_modalities(
                [m for m, mod in d.modalities.items() if not isinstance(mod, BagData)]
            )

        pooled = Standardizer.fit(
            dense(_pooled(parts, sorted({m for d in parts.values() for m in d.modalities}))),
            min_cell,
            seed,
        )
        return cls(
            {s: Standardizer.fit(dense(d), min_cell, seed) for s, d in parts.items()}, pooled
        )

    def apply(self, data: MultimodalDataset) -> MultimodalDataset:
        """``data`` (``groups``: each patient's hospital) standardised hospital by hospital."""
        assert data.groups is not None, "each patient's hospital is needed to standardise it"
        groups = np.asarray(data.groups)
        mods: dict[str, Any] = {}
        for name, mod in data.modalities.items():
            if isinstance(mod, BagData) or name not in self.pooled.stats:
                mods[name] = mod
                continue
            x = mod.x.clone()
            for site in np.unique(groups):
                rows = torch.from_numpy(groups == site)
                own = self.by_site.get(str(site))
                mean, std = (
                    own.stats[name]
                    if own is not None and name in own.stats
                    else self.pooled.stats[name]
                )
                x[rows] = (x[rows] - mean) / std
            keep = mod.present.view(-1, *([1] * (x.dim() - 1)))
            if mod.mask is not None:
                keep = keep & mod.mask.unsqueeze(-1)
            mods[name] = replace(mod, x=torch.where(keep, x, torch.zeros_like(x)))
        return replace(data, modalities=mods)

    def entry(self, e: Entry) -> Entry:
        """``e`` predicting from hospital-standardised inputs."""
        return Entry(e.kind, e.name, e.modalities, lambda d: e.predict(self.apply(d)), e.info)


def _config(scn: Scenario, epochs: int, lr: float, patience: int | None = None) -> TrainConfig:
    return TrainConfig(
        epochs=max(1, epochs),
        patience=patience or scn.spec.patience,
        batch_size=scn.spec.batch_size,
        lr=lr,
        seed=scn.spec.seed,
        device="cpu",
        amp=False,
    )


# ---- local: each hospital alone ------------------------------------------------------------------
@dataclass
class LocalChoice:
    site: str
    entry: Entry
    info: LocalInfo  # every candidate's out-of-fold (or validation) metric on the site's patients


def local_models(
    scn: Scenario,
    task: TaskRecord,
    site_dirs: dict[str, Any],
    own: dict[str, list[tuple[str, LegoBlock]]],
) -> dict[str, LocalChoice]:
    """Every hospital's own best model (``own``: site -> its released (block id, block) pairs)."""
    return {
        s.name: local_model(scn, task, s.name, site_dirs[s.name], own.get(s.name, []))
        for s in scn.spec.sites
        if own.get(s.name)
    }


def local_model(
    scn: Scenario, task: TaskRecord, site: str, site_dir: Any, own: list[tuple[str, LegoBlock]]
) -> LocalChoice:
    """The site's candidates (each block, the merge and ensemble of its blocks, its own LegoFuse
    when paired) measured as the site itself would: out of fold over all its patients with fold
    copies (``[evaluation] folds``), else on its validation split; the best one is its model."""
    spec = task.spec
    data = load_site_folder(site_dir / "data")
    blocks = [b for _, b in own]
    mods = [b.modality for b in blocks]
    folds = scn.spec.folds
    copies: list[FoldCopies] = (
        [load_fold_copies(fold_folder(site_dir, i)) for i, _ in own] if folds else []
    )
    fold_of = site_folds(data, folds, scn.spec.seed) if folds else None
    rows = (
        np.flatnonzero(fold_of >= 0)
        if fold_of is not None
        else site_split(data, scn.spec.val_fraction, scn.spec.seed)[1]
    )

    def oof(make: Callable[[list[LegoBlock]], torch.nn.Module]) -> np.ndarray:
        """Scores of the site's patients: each by the model made from the blocks (or fold
        copies) that never saw it."""
        own = dict(enumerate(copies))
        scores, _ = predict_parts(fold_parts(make, blocks, own, fold_of, len(data)), data, spec)
        assert scores is not None
        return scores

    def alone(j: int) -> Callable[[list[LegoBlock]], torch.nn.Module]:
        return lambda bs: SingleModality(bs[j], bs[j].modality)

    def recipe(kind: str) -> Callable[[list[LegoBlock]], torch.nn.Module]:
        return lambda bs: Recipe(kind).make(bs)

    made: dict[str, tuple[torch.nn.Module, list[str], np.ndarray]] = {}
    for j, b in enumerate(blocks):
        made[f"{b.modality} block"] = (alone(j)(blocks), [b.modality], oof(alone(j)))
    if len(blocks) > 1:
        for kind in BLOCK_KINDS:
            made[f"{kind} of its blocks"] = (recipe(kind)(blocks), mods, oof(recipe(kind)))
        made["its own LegoFuse"] = _local_fuse(scn, data, blocks, copies, fold_of, rows)
    every = np.zeros(len(data), dtype=bool)
    every[rows] = True
    for _, reads, _ in made.values():
        every &= np.all(np.stack([data.modalities[m].present.numpy() for m in reads]), axis=0)
    common = np.flatnonzero(every)
    target = data.subset(common)
    evidence = {
        name: within(spec, target, s[common], np.zeros(len(common)))
        for name, (_, _, s) in made.items()
    }
    best = max(evidence, key=lambda k: (evidence[k], -list(made).index(k)))
    model, reads, _ = made[best]
    how = "out of fold" if folds else "on its validation split"
    log.info("local %s: %s (%s %.4f)", site, best, how, evidence[best])
    return LocalChoice(
        site,
        module_entry("local", f"{site}: {best}", model, reads, spec),
        LocalInfo(evidence, best, how),
    )


def _local_fuse(
    scn: Scenario,
    data: MultimodalDataset,
    blocks: list[LegoBlock],
    copies: list[FoldCopies],
    fold_of: np.ndarray | None,
    rows: np.ndarray,
) -> tuple[torch.nn.Module, list[str], np.ndarray]:
    """The site's own LegoFuse of its blocks, fine-tuned on its own paired patients for an epoch
    count (up to the scenario's rounds x epochs) chosen out of fold (or on its validation split)."""
    spec = blocks[0].config.task
    mods = [b.modality for b in blocks]
    mode = scn.spec.fuse_mode
    budget = max(1, scn.spec.rounds) * scn.spec.epochs
    both = np.all(np.stack([data.modalities[m].present.numpy() for m in mods]), axis=0)
    config = _config(scn, budget, FUSE_LR, patience=scn.spec.patience_rounds)
    if fold_of is None:
        train_rows = np.setdiff1d(np.flatnonzero(both), rows)
        model = fused_model(blocks, mode)
        val = paired_only(data.subset(rows), mods)
        res = fit(
            model,
            paired_only(data.subset(train_rows), mods),
            val,
            spec,
            replace(config, select_initial=True),
            label="local fuse",
        )
        scores = predict_scores(
            model, data.select_modalities(mods), spec, amp=False
        )  # its validation rows are what counts
        log.info("local fuse: %d epochs kept (validation %.4f)", res.best_epoch, res.best_metric)
        return model, mods, scores
    paired = np.flatnonzero(both)
    pdata = data.subset(paired).select_modalities(mods)
    models = [
        fused_model([c.blocks[k] for c in copies], mode) for k in range(len(copies[0].blocks))
    ]
    ff = fit_folds(list(models), pdata, fold_of[paired], spec, config, label="local fuse folds")
    scores = np.zeros(
        (len(data), *predict_scores(models[0], pdata.subset([0]), spec, amp=False).shape[1:])
    )
    for k, m in enumerate(models):
        mine = np.flatnonzero(fold_of[paired] == k)
        scores[paired[mine]] = predict_scores(m, pdata.subset(mine), spec, amp=False)
    final = fused_model(blocks, mode)
    train_fixed(final, pdata, spec, replace(config, epochs=ff.best_epoch))
    return final, mods, scores


# ---- FedAvg from scratch -------------------------------------------------------------------------
def fedavg(
    scn: Scenario,
    task: TaskRecord,
    parts: dict[str, MultimodalDataset],
    kind: str,
    template: Sequence[LegoBlock],
) -> Entry:
    """The architecture of a fused version (``template``'s modalities and shapes) trained from the
    task's shared initialisation by FedAvg over the sites ``parts`` (each with its own
    modalities; a patient's missing ones are masked), one local epoch a round at the blocks'
    learning rate. The round count (at most block epochs + fuse rounds x epochs) is chosen on the
    sites' validation splits (within-site metric over them, early stopping with the blocks'
    patience); then it is trained again from the start on all their patients for that many
    rounds."""
    spec = task.spec
    settings = BlockTraining(
        epochs=scn.spec.block_epochs, batch_size=scn.spec.batch_size, seed=scn.spec.seed
    )
    scaling = SiteScaling.fit(
        parts, scn.spec.min_cell_size, scn.spec.seed
    )  # each site standardises its own data
    parts = {s: scaling.apply(_labelled(d, s)) for s, d in parts.items()}
    pooled = Standardizer.fit(
        _pooled(parts, [b.modality for b in template]), scn.spec.min_cell_size, scn.spec.seed
    )
    fresh = []
    for b in template:
        torch.manual_seed(scn.spec.seed * 1000 + sum(map(ord, b.config.modality)))
        new = LegoBlock(b.config)
        new.set_input_scaling(
            *pooled.stats[b.modality]
        )  # ~identity on standardised tables; a bag's own scale
        fresh.append(new)
    mods = [b.modality for b in template]
    budget = scn.spec.block_epochs + max(1, scn.spec.rounds) * scn.spec.epochs
    names = sorted(parts)
    splits = {s: site_split(parts[s], scn.spec.val_fraction, scn.spec.seed) for s in names}
    train = [parts[s].subset(splits[s][0]) for s in names]
    val = _pooled({s: parts[s].subset(splits[s][1]) for s in names}, mods)

    def rounds(
        data: list[MultimodalDataset], count: int, watch: bool
    ) -> tuple[LegoFuse, list[RoundPoint]]:
        model = fused_model(fresh, scn.spec.fuse_mode)
        nodes = [
            NodeInfo(i, s, tuple(parts[s].modalities), len(parts[s].modalities) > 1)
            for i, s in enumerate(names)
        ]
        curve: list[RoundPoint] = []
        best, stale = (-math.inf, 0), 0
        for r in range(1, count + 1):
            cfg = FuseConfig(
                mode=scn.spec.fuse_mode,
                rounds=1,
                epochs=1,
                lr=settings.lr,
                batch_size=settings.batch_size,
                seed=scn.spec.seed * 100 + r,
                folds=0,
            )
            sites = LocalSites(_copier(model), data, cfg)
            model.load_state_dict(
                run_rounds(sites, nodes, model, cfg, kind, 3600, len(nodes)).state
            )
            if not watch:
                continue
            v = within(
                spec,
                val,
                predict_scores(model.eval(), val.select_modalities(mods), spec, amp=False),
                np.asarray(val.groups),
            )
            curve.append(RoundPoint(r, v))
            if v > best[0]:
                best, stale = (v, r), 0
            else:
                stale += 1
                if stale >= scn.spec.patience:
                    break
        return model, curve

    _, curve = rounds(train, budget, watch=True)
    chosen = max(curve, key=lambda c: (c.val, -c.round))
    model, _ = rounds([parts[s] for s in names], chosen.round, watch=False)
    info = FedAvgInfo(tuple(names), chosen.round, chosen.val, tuple(curve), budget)
    label = "every site" if kind == "baseline" else "the paired sites"
    return scaling.entry(
        module_entry(
            kind,
            f"FedAvg from scratch over {label} ({chosen.round} rounds, chosen on validation)",
            model,
            mods,
            spec,
            info,
        )
    )


def _copier(model: torch.nn.Module) -> Callable[[], torch.nn.Module]:
    return lambda: copy.deepcopy(model)


def _pooled(parts: dict[str, MultimodalDataset], mods: Sequence[str]) -> MultimodalDataset:
    """The sites' patients in one set (every one of ``mods``, absent where a site lacks it),
    ``groups`` = site."""
    return concat_datasets(
        [_labelled(d, name) for name, d in parts.items()], union=True
    ).select_modalities(list(mods))


def _labelled(d: MultimodalDataset, site: str) -> MultimodalDataset:
    """``d`` with ``groups`` naming its hospital (and no split column)."""
    out = d.subset(np.arange(len(d)))
    out.groups, out.holdout = np.full(len(out), site), None
    return out


# ---- the ceiling: central analysts on the pooled data --------------------------------------------
def ceiling(scn: Scenario, task: TaskRecord, part: Partition) -> list[Entry]:
    """Every central family (each refitted on all pooled patients) and ``ceiling``, the one with
    the best within-site metric on the pooled validation split."""
    spec = task.spec
    mods = list(task.modalities)
    scaling = SiteScaling.fit(
        part.sites, scn.spec.min_cell_size, scn.spec.seed
    )  # each hospital standardises before pooling
    pool = scaling.apply(part.pooled().select_modalities(mods))
    sites = np.asarray(pool.groups)
    split = random_split(
        len(pool),
        scn.spec.seed,
        fractions=(0.8, 0.1, 0.1),
        stratify=np.asarray([f"{s}:{e}" for s, e in zip(sites, strata_of(pool), strict=True)]),
    )
    val_rows = np.sort(
        np.concatenate([split.val, split.test])
    )  # a 20 % validation split, stratified by site and event
    is_val = np.zeros(len(pool), dtype=bool)
    is_val[val_rows] = True
    train, val = pool.subset(np.flatnonzero(~is_val)), pool.subset(val_rows)
    marked = pool.subset(np.arange(len(pool)))
    marked.holdout = is_val  # train_modality stops each block early on these
    settings = _training(scn)
    # per-modality blocks, early-stopped on the validation split, then trained on everyone for
    # that many epochs
    early = {m: train_modality(marked, m, task, settings, min_cell=1) for m in mods}
    refit = {
        m: train_for(pool, m, task, settings, max(1, early[m].best_epoch), min_cell=1)[0]
        for m in mods
    }
    out: list[Entry] = []
    val_of: dict[str, float] = {}
    epochs_of: dict[str, int] = {}  # the families trained for a number of epochs chosen on val

    def measure(name: str, predict: Callable[[MultimodalDataset], np.ndarray]) -> float:
        val_of[name] = within(spec, val, predict(val), np.asarray(val.groups))
        return val_of[name]

    ens_early = LegoEnsemble([early[m].block for m in mods]).eval()
    measure("ceiling-ensemble", module_entry("x", "", ens_early, mods, spec).predict)
    out.append(
        module_entry(
            "ceiling-ensemble",
            "ensemble of per-modality blocks trained centrally on every site's patients",
            LegoEnsemble([refit[m] for m in mods]).eval(),
            mods,
            spec,
        )
    )
    budget = max(1, scn.spec.rounds) * scn.spec.epochs
    fuse = fused_model([early[m].block for m in mods], scn.spec.fuse_mode)
    res = fit(
        fuse,
        train,
        val,
        spec,
        replace(_config(scn, budget, FUSE_LR, scn.spec.patience_rounds), select_initial=True),
        label="ceiling fuse",
    )
    measure("ceiling-fuse", module_entry("x", "", fuse, mods, spec).predict)
    final = fused_model([refit[m] for m in mods], scn.spec.fuse_mode)
    if res.best_epoch:
        train_fixed(
            final, pool, spec, replace(_config(scn, budget, FUSE_LR), epochs=res.best_epoch)
        )
    epochs_of["ceiling-fuse"] = res.best_epoch
    out.append(
        module_entry(
            "ceiling-fuse",
            f"LegoFuse of those blocks fine-tuned centrally ({res.best_epoch} epochs)",
            final,
            mods,
            spec,
        )
    )
    e2e_budget = scn.spec.block_epochs + budget
    e2e = _from_scratch(scn, task, pool, mods, early)
    res = fit(
        e2e, train, val, spec, _config(scn, e2e_budget, settings.lr), label="ceiling end to end"
    )
    measure("ceiling-e2e", module_entry("x", "", e2e, mods, spec).predict)
    e2e_final = _from_scratch(scn, task, pool, mods, early)
    train_fixed(
        e2e_final,
        pool,
        spec,
        replace(_config(scn, e2e_budget, settings.lr), epochs=max(1, res.best_epoch)),
    )
    epochs_of["ceiling-e2e"] = res.best_epoch
    out.append(
        module_entry(
            "ceiling-e2e",
            f"the same architecture trained end to end centrally ({res.best_epoch} epochs)",
            e2e_final,
            mods,
            spec,
        )
    )
    classical = Classical(spec, mods, indicators=True).fit(train, val)
    measure("ceiling-classical", classical.scores)
    refit_classical = classical.refit(pool)
    what = "elastic-net Cox" if spec.kind == "survival" else "penalised logistic regression"
    out.append(
        Entry(
            "ceiling-classical",
            f"{what} on the concatenated features with missing-modality indicators",
            mods,
            refit_classical.scores,
        )
    )
    for e in out:
        e.info = CeilingInfo(val_of[e.kind], epochs_of.get(e.kind))
    best = max(out, key=lambda e: val_of[e.kind])
    out.append(
        Entry(
            "ceiling",
            f"{best.kind}: the best central family on the pooled validation split",
            best.modalities,
            best.predict,
            CeilingChoice(best.kind, dict(val_of)),
        )
    )
    return [scaling.entry(e) for e in out]


def _training(scn: Scenario) -> BlockTraining:
    return BlockTraining(
        epochs=scn.spec.block_epochs,
        patience=scn.spec.patience,
        batch_size=scn.spec.batch_size,
        seed=scn.spec.seed,
        device="cpu",
    )


def _from_scratch(
    scn: Scenario, task: TaskRecord, pool: MultimodalDataset, mods: list[str], like: dict[str, Any]
) -> LegoFuse:
    """The fused architecture from the task's shared initialisation, untrained, with the pooled
    input scaling."""
    blocks = []
    for m in mods:
        torch.manual_seed(scn.spec.seed * 1000 + sum(map(ord, m)) + 7)
        b = LegoBlock(like[m].block.config)
        b.scaling.load_state_dict(like[m].block.scaling.state_dict())
        blocks.append(b)
    return fused_model(blocks, scn.spec.fuse_mode)
