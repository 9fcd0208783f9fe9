"""What a simulated run measured, judged with power: every model on the *same* held-out test
patients (each hospital's own test fold), with the within-site c-index / AUC (patients are
compared only within their hospital, as the sites' validation metric does), chosen on validation
or out-of-fold evidence only, and every comparison a paired difference with a 95 % interval.

The federated kinds: ``best-block`` (the block the consortium picks on validation), ``ensemble``
and ``merge-uniform`` (of every block), ``merge`` (the version ``coordinator merge --recipe auto``
published), ``fuse`` (the early-stopped LegoFuse version, or its parent when no round was kept),
``recommended`` (the coordinator's recommended version). The references (:mod:`.references`):
``local`` (each hospital alone), ``baseline`` (FedAvg from scratch over every site),
``baseline-paired`` (the same over the paired sites), ``ceiling`` and its families (central
analysts on the pooled patients). ``summary``: every kind on the test patients of every hospital
(with every modality the dataset has); ``per_site``: each hospital's own test patients through its
own modalities, where ``recommended`` against ``local`` is the gain from joining. Beside them:
the consortium's validation evidence, a retraining check, communication, wall time and memory."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.artifacts import BlockManifest, load_block, weights_bytes
from common.artifacts.hashing import sha256_bytes
from common.artifacts.modelfile import load_model_folder
from common.data.dataset import MultimodalDataset, concat_datasets
from common.data.sitefolder import load_site_folder
from common.evaluation.paired import TestSet, compare_models, within_site_metric
from common.evaluation.scoring import covered
from common.fuse import FuseConfig, centralized_fuse, fused_model, round_patients
from common.fuse.history import history_from_json
from common.fuse.wire import trainable_names
from common.lego import LegoBlock, LegoEnsemble, LegoFuse, SingleModality
from common.lego.recipe import MergeRecipe, Recipe
from common.serde import manifest_from_bytes
from common.tasks import TaskSpec
from common.train.dp import DPBudget
from common.train.siteblock import train_modality
from coordinator.store import evaluation_traffic

from . import references as refs
from . import reuse
from .evidence import (
    BaselineRow,
    CandidateRow,
    CurvePoint,
    FedAvgInfo,
    LocalInfo,
    ReferenceRow,
    ValidationSummary,
)
from .measurements import (
    ComparisonRow,
    KindRow,
    SiteResult,
    SummaryRow,
)
from .references import Entry, module_entry
from .reportfile import (
    BlockRow,
    Centralized,
    CommunicationRow,
    FuseNotStored,
    FuseSection,
    FuseStored,
    MergeSection,
    Recommended,
    Report,
    SiteRow,
    Traffic,
)
from .run import RunResult, block_training, fuse_config
from .scenario import Partition, Scenario

FUSE_TOLERANCE = 0.02  # federated LegoFuse vs centralized, test metric
FEDERATED = ("best-block", "ensemble", "merge-uniform", "merge", "fuse", "recommended")
REFERENCES = (
    "local",
    "baseline",
    "baseline-paired",
    "ceiling",
    "ceiling-fuse",
    "ceiling-ensemble",
    "ceiling-e2e",
    "ceiling-classical",
)
KINDS = FEDERATED + REFERENCES
REUSED_PHASE = "references read from an earlier run (not trained again)"  # --references-from
REPLICATES = 2000  # bootstrap replicates of every paired interval


@dataclass
class Measured:
    """What a report's comparisons rest on: the test scores of every kind, for the summary and
    per site (kept beside report.json so that seeds can be combined)."""

    summary: TestSet | None = None
    per_site: dict[str, TestSet] = field(default_factory=dict)


def round_bytes(model: torch.nn.Module) -> int:
    """What one round message carries per run: the trainable tensors, packed (common.fuse.wire)."""
    state = model.state_dict()
    return sum(state[n].numel() * state[n].element_size() for n in trainable_names(model))


# ---- the federated models ------------------------------------------------------------------------
def best_block(run: RunResult, ids: list[str]) -> tuple[int, str]:
    """The block the consortium would pick: the best consortium validation metric among the blocks
    scored alone in the merge's evaluation; when no site could score them, the best validation
    metric the sites published with their blocks (out of fold, where counts allow it)."""
    validation = run.merged.card.get("validation", {})
    alone = {
        r["candidate"]: r["value"]
        for r in validation.get("candidates", [])
        if r["candidate"].startswith("alone-") and r.get("value") is not None
    }
    by_id = {b.block_id: b for b in run.blocks}
    labels = [f"{by_id[i].site}/{by_id[i].modality}" for i in ids]
    if alone:
        best = max(alone, key=lambda c: alone[c])
        i = int(best.split("-")[1])
        return i, f"{labels[i]} alone (best consortium validation {alone[best]:.3f})"
    stats = [
        manifest_from_bytes(by_id[i].manifest).train_stats.get("val_metric", -1.0) for i in ids
    ]
    i = int(np.argmax(stats))
    return i, (
        f"{labels[i]} alone (no consortium validation; the best validation the sites published "
        f"with their blocks, {stats[i]:.3f})"
        if stats[i] >= 0
        else f"{labels[i]} alone (nothing validated: the first block)"
    )


def federated(
    run: RunResult, spec: TaskSpec, merged: Any, blocks: list[LegoBlock], ids: list[str]
) -> list[Entry]:
    mods = [b.modality for b in blocks]
    fused = (
        load_model_folder(run.model_dirs[run.fused.model_id])[0] if run.fused is not None else None
    )
    recommended = (
        load_model_folder(run.model_dirs[run.recommended.model.model_id])[0]
        if run.recommended
        else merged
    )
    i, name = best_block(run, ids)
    fuse_name = (
        f"{run.fused.model_id}: LegoFuse, round "
        f"{run.fused.card.get('fuse', {}).get('kept_round')} kept"
        if run.fused is not None
        else f"no round kept: {run.merged.model_id} (the parent)"
    )
    chosen = run.merged.card.get("validation", {}).get("chosen", run.merged.recipe.kind)
    rec_id = run.recommended.model.model_id if run.recommended else run.merged.model_id
    own = {
        site: module_entry(
            "recommended",
            r.model.model_id,
            model,
            list(model.modalities),
            spec,
        )
        for site, r in sorted(run.site_recommended.items())
        if r.model.model_id != rec_id
        for model in [load_model_folder(run.model_dirs[r.model.model_id])[0]]
    }
    return [
        module_entry(
            "best-block",
            name,
            SingleModality(blocks[i], blocks[i].modality),
            [blocks[i].modality],
            spec,
        ),
        module_entry(
            "ensemble", f"ensemble of {len(blocks)} blocks", LegoEnsemble(blocks), mods, spec
        ),
        module_entry(
            "merge-uniform",
            f"uniform LegoMerge of {len(blocks)} blocks",
            Recipe(MergeRecipe.name).make(blocks),
            mods,
            spec,
        ),
        module_entry("merge", f"{run.merged.model_id}: {chosen}", merged, mods, spec),
        module_entry("fuse", fuse_name, fused if fused is not None else merged, mods, spec),
        replace(
            module_entry(
                "recommended",
                rec_id + "".join(f"; {s}: {e.name}" for s, e in own.items()),
                recommended,
                mods,
                spec,
            ),
            per_site=own,
        ),
    ]


# ---- measuring on the test patients --------------------------------------------------------------
def test_set(
    entries: list[Entry],
    locals_: dict[str, Entry],
    data: MultimodalDataset,
    sites: np.ndarray,
    spec: TaskSpec,
) -> tuple[TestSet | None, np.ndarray]:
    """Every entry (and ``local``: each patient by its own hospital's model) scored on the
    patients of ``data`` that all of them can score; and those patients' rows."""
    common = np.ones(len(data), dtype=bool)
    for e in entries:
        common &= covered(data, e.modalities)
        for site, own in e.per_site.items():
            common &= (sites != site) | covered(data, own.modalities)
    for site, e in locals_.items():
        mine = sites == site
        common &= ~mine | covered(data, e.modalities)
    if locals_:
        common &= np.isin(sites, list(locals_))
    rows = np.flatnonzero(common)
    if rows.size < 2:
        return None, rows
    part = data.subset(rows)
    scores = {e.kind: np.asarray(e.predict(part)) for e in entries}
    for e in entries:  # a hospital's own version of a kind scores its patients
        for site, own in e.per_site.items():
            mine = np.flatnonzero(sites[rows] == site)
            if mine.size:
                scores[e.kind][mine] = np.asarray(own.predict(part.subset(mine)))
    if locals_:
        parts = {}
        for site, e in locals_.items():
            mine = np.flatnonzero(sites[rows] == site)
            if mine.size:
                parts[site] = (mine, np.asarray(e.predict(part.subset(mine))))
        first = next(iter(parts.values()))[1]
        local = np.zeros((rows.size, *first.shape[1:]))
        for mine, s in parts.values():
            local[mine] = s
        scores["local"] = local
    n_classes = spec.n_classes if spec.kind == "classification" else 0
    return TestSet(spec.kind, n_classes, sites[rows], part.targets(), scores), rows


def rows_of(test: TestSet, names: dict[str, str]) -> list[KindRow]:
    """One row per kind: its within-site metric on the test set's patients."""
    return [
        KindRow(k, names.get(k, k), test.patients, within_site_metric(test, k))
        for k in KINDS
        if k in test.scores
    ]


def comparisons(tests: list[TestSet], replicates: int = REPLICATES) -> tuple[ComparisonRow, ...]:
    """``recommended`` against every other kind: paired differences and 95 % bootstrap
    intervals."""
    kinds = [k for k in KINDS if k != "recommended" and any(k in t.scores for t in tests)]
    found = compare_models(tests, "recommended", kinds, replicates=replicates)
    return tuple(ComparisonRow.from_json(c.to_dict()) for c in found)


# ---- checks against a central retraining ---------------------------------------------------------
def centralized(
    run: RunResult,
    scn: Scenario,
    part: Partition,
    test: TestSet | None,
    summary_data: MultimodalDataset,
    blocks: list[LegoBlock],
    ids: list[str],
    kept_round: int,
    merged_recipe: Recipe,
) -> Centralized:
    """The blocks of the hospital with the fewest patients trained again here exactly as it did
    (its data folder, its [train] and [evaluation] settings, one thread): they must be its pushed
    blocks bit for bit; and LegoFuse's kept rounds run centrally on the patients of the sites that
    trained in them (the paired sites', or with ``fuse_sites`` "all" every site's)."""
    by_id = {b.block_id: b for b in run.blocks}
    site = min(scn.spec.sites, key=lambda s: len(part.sites[s.name])).name
    settings = block_training(scn)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = load_site_folder(run.site_dirs[site] / "data")
        exact = True
        for i in ids:
            if by_id[i].site != site:
                continue
            again = train_modality(
                data,
                by_id[i].modality,
                run.task,
                settings,
                min_cell=scn.spec.min_cell_size,
                private=dp_budget(scn),
                folds=scn.spec.folds,
            )
            exact &= sha256_bytes(weights_bytes(again.block)) == i
        fuse_test = None
        fusing = scn.fuse_sites()
        # the same rounds run centrally: only when every site trained in every round
        every = scn.spec.fuse_sites_per_round == 0
        if run.fused is not None and fusing and kept_round > 0 and test is not None and every:
            cfg = fuse_config(scn)
            model = fused_model(blocks, cfg.mode, merged_recipe)
            pooled = concat_datasets(
                [
                    round_patients(_fuse_rows(run, scn, s.name), model.modalities, cfg.sites)
                    for s in fusing
                ],
                union=cfg.sites == "all",  # sites holding different modalities
            )
            centralized_fuse(
                model,
                pooled,
                model.task,
                FuseConfig(
                    mode=cfg.mode,
                    rounds=kept_round,
                    epochs=cfg.epochs,
                    seed=cfg.seed,
                    batch_size=cfg.batch_size,
                    proximal_mu=cfg.proximal_mu,
                    folds=0,
                    sites=cfg.sites,
                ),
            )
            fuse_test = within_site_metric(
                _with(
                    test,
                    "central",
                    module_entry("c", "", model, model.modalities, run.task.spec).predict(
                        summary_data
                    ),
                ),
                "central",
            )
    finally:
        torch.set_num_threads(threads)
    return Centralized(site, exact, fuse_test)


def _with(test: TestSet, kind: str, scores: np.ndarray) -> TestSet:
    return TestSet(
        test.kind, test.n_classes, test.site, test.targets, {**test.scores, kind: scores}
    )


def _fuse_rows(run: RunResult, scn: Scenario, site: str) -> MultimodalDataset:
    """The patients a site trains LegoFuse's full run on (before the run's ``sites`` rule picks
    among them): all of them when cross-fitting, else its training patients."""
    from common.data.splits import site_split

    data = load_site_folder(run.site_dirs[site] / "data")
    if scn.spec.folds:
        return data
    return data.subset(site_split(data, scn.spec.val_fraction, scn.spec.seed)[0])


# ---- communication -------------------------------------------------------------------------------
def _evaluation_bytes(run: RunResult, site: str) -> tuple[int, int]:
    """(sent, received) for federated evaluation: the reports' scores; the blocks and versions the
    site fetched to rebuild candidates, and the round weights it downloaded."""
    traffic = evaluation_traffic(run.out / "coordinator" / "store", site)
    sent = traffic.score_bytes
    received = sum(
        c.weights_size for job in traffic.answered for c in job.candidates if c.kind == "fuse-round"
    )
    state = run.site_dirs[site]
    for folder in (
        state / "verified-blocks",
        state / "models",
    ):  # what it fetched (its own trained blocks are elsewhere)
        if folder.is_dir():
            received += sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    return sent, received


def communication(
    run: RunResult, scn: Scenario, round_state_bytes: int, baselines: dict[str, BaselineRow]
) -> dict[str, CommunicationRow]:
    """Payload bytes per site (tensors, manifests, signatures, scores; not gRPC/HTTP/TLS framing):
    MM-Lego = the blocks a site pushed, the trainable weights of every fuse round both ways (the
    full run and its fold runs) and federated evaluation (scores sent; blocks, versions and round
    weights fetched); each FedAvg baseline = its trainable weights both ways every round it ran
    (choosing the round count, then training again)."""
    out: dict[str, CommunicationRow] = {}
    # every round run, kept or not
    rounds = history_from_json(run.fuse_detail.get("history", []))
    runs = 1 + fuse_config(scn).fold_runs
    for s in scn.spec.sites:
        up = sum(
            b.size + len(b.manifest) + len(b.signature) for b in run.blocks if b.site == s.name
        )
        took = sum(s.name in r.sites for r in rounds)
        asked = sum(s.name in r.asked for r in rounds)
        ev_up, ev_down = _evaluation_bytes(run, s.name)
        traffic = {}
        for kind, base in baselines.items():
            n = base.rounds_run * base.model_bytes if s.name in base.info.sites else 0
            traffic[kind] = Traffic(n, n, base.rounds_run if n else 0)
        out[s.name] = CommunicationRow(
            up + took * runs * round_state_bytes + ev_up,
            asked * runs * round_state_bytes + ev_down,
            took,
            ev_up,
            ev_down,
            traffic,
        )
    return out


# ---- the report ----------------------------------------------------------------------------------
def build_report(
    run: RunResult,
    scn: Scenario,
    part: Partition,
    extra_phases: dict[str, float] | None = None,
    references_from: Path | None = None,
) -> tuple[Report, Measured]:
    """Every figure of the run, and the test scores its comparisons rest on; the references
    trained here, or with ``references_from`` read from an earlier run of the same scenario and
    seed once they are checked to fit (:mod:`.reuse`)."""
    spec = run.task.spec
    merged, _ = load_model_folder(run.model_dirs[run.merged.model_id])
    if isinstance(merged, LegoFuse):
        raise ValueError(
            f"{run.merged.model_id} is a fused version; the merge of the run was expected"
        )
    ids = list(run.merged.block_ids)
    folder = run.model_dirs[run.merged.model_id] / "blocks"  # a grouped version built none
    blocks = list(merged.members) or [load_block(folder / i)[0].eval() for i in ids]
    by_id = {b.block_id: b for b in run.blocks}
    phases = dict(run.phases)
    test = concat_datasets(
        [_labelled(part.test[part.test_of[s.name]], s.name) for s in scn.spec.sites], union=True
    )
    test = test.select_modalities([m for m in run.task.modalities if m in test.modalities])
    sites = np.asarray(test.groups)
    entries = federated(run, spec, merged, blocks, ids)
    block_rows = []
    for i, b in zip(ids, blocks, strict=True):
        manifest = manifest_from_bytes(by_id[i].manifest)
        block_rows.append(
            BlockRow(
                by_id[i].site,
                by_id[i].modality,
                i[:12],
                int(manifest.train_stats.get("n_train", 0)),
                manifest.train_stats.get("val_metric"),
                dp_epsilon(manifest),
                _block_test(b, test, sites, spec),
            )
        )
    rec = run.recommended
    report = Report(
        scenario=scn.name,
        description=scn.spec.description,
        synthetic=part.synthetic,
        metric=spec.metric_name,
        metric_scope="within-site (patients are compared only within their hospital)",
        task=run.task.task_id,
        seed=scn.spec.seed,
        engine=run.engine,
        folds=scn.spec.folds,
        test_fold=f"{scn.spec.seed % scn.spec.test_folds + 1} of {scn.spec.test_folds}",
        test_folds=scn.spec.test_folds,
        placement=dict(run.placement),
        sites=tuple(_site_row(s, part) for s in scn.spec.sites),
        test_patients=len(test),
        blocks=tuple(block_rows),
        merge=MergeSection(
            run.merged.model_id, run.merged.recipe.kind, run.merged.card.get("validation", {})
        ),
        fuse=_fuse_section(run),
        recommended=Recommended(
            rec.model.model_id,
            _finite(rec.metric),
            rec.reason,
            {
                site: (r.model.model_id, r.reason)
                for site, r in sorted(run.site_recommended.items())
                if r.model.model_id != rec.model.model_id
            },
        )
        if rec
        else None,
        validation=validation_summary(run, scn, part),
        rounds=scn.spec.rounds,
        epochs=scn.spec.epochs,
    )
    measured = Measured()
    baselines: dict[str, BaselineRow] = {}
    if scn.spec.compare:
        reused = None
        if references_from is not None:
            t = time.monotonic()
            reused = _reused(run, scn, part, ids, list(test.modalities), references_from)
            entries = entries + reused.entries
            locals_, local_info, baselines = reused.locals_, reused.local_info, reused.baselines
            phases[REUSED_PHASE] = time.monotonic() - t
        else:
            entries, locals_, local_info, baselines = _references(
                run, scn, part, blocks, ids, entries, phases
            )
        names = {e.kind: e.name for e in entries}
        names["local"] = "each hospital's own best model (its own cross-validation)"
        summary, common = test_set(entries, locals_, test, sites, spec)
        if reused is not None:
            reuse.check(reused, "summary", summary)
        if summary is not None:
            measured.summary = summary
            report = replace(
                report,
                summary=tuple(SummaryRow.of(r, scn.spec.seed) for r in rows_of(summary, names)),
                comparisons=comparisons([summary]),
            )
        per_site = []
        for s in scn.spec.sites:
            view = _site_view(run, part, s)
            usable = [
                e
                for e in entries
                if set(e.modalities) & set(view.modalities)
                and (e.kind != "best-block" or e.modalities[0] in view.modalities)
            ]
            mine = {s.name: locals_[s.name]} if s.name in locals_ else {}
            one, _ = test_set(usable, mine, view, np.full(len(view), s.name), spec)
            if reused is not None:
                reuse.check(reused, f"site:{s.name}", one)
            if one is None:
                continue
            measured.per_site[s.name] = one
            per_site.append(
                SiteResult(
                    s.name,
                    tuple(s.modalities),
                    one.patients,
                    tuple(rows_of(one, names)),
                    comparisons([one]),
                    local_info.get(s.name),
                )
            )
        references = {e.kind: ReferenceRow(e.name, e.info) for e in entries if e.kind in REFERENCES}
        t = time.monotonic()
        kept = (
            int(run.fused.card.get("fuse", {}).get("kept_round", 0)) if run.fused is not None else 0
        )
        ref = centralized(
            run,
            scn,
            part,
            measured.summary,
            test.subset(common),
            blocks,
            ids,
            kept,
            run.merged.recipe,
        )
        report = replace(report, per_site=tuple(per_site), references=references, centralized=ref)
        phases["centralized check (in process)"] = time.monotonic() - t
    cfg = fuse_config(scn)
    per_round = round_bytes(fused_model(blocks, cfg.mode, run.merged.recipe))
    traffic = communication(run, scn, per_round, baselines)
    phases.update(extra_phases or {})
    report = replace(
        report,
        baselines=baselines,
        communication=traffic,
        round_bytes=per_round,
        phases_s={k: round(v, 2) for k, v in phases.items()},
        peak_rss_mb={k: round(v / 2**20, 1) for k, v in run.peaks.items()},
    )
    return replace(report, checks=checks(report, scn, {b.site for b in run.blocks})), measured


def _fuse_section(run: RunResult) -> FuseSection:
    if run.fused is not None:
        card = run.fused.card
        return FuseStored(run.fused.model_id, card.get("fuse", {}), card.get("validation", {}))
    return FuseNotStored(run.fuse_note, tuple(run.fuse_detail.get("curve", [])))


def _references(
    run: RunResult,
    scn: Scenario,
    part: Partition,
    blocks: list[LegoBlock],
    ids: list[str],
    entries: list[Entry],
    phases: dict[str, float],
) -> tuple[list[Entry], dict[str, Entry], dict[str, LocalInfo], dict[str, BaselineRow]]:
    by_id = {b.block_id: b for b in run.blocks}
    t = time.monotonic()
    own: dict[str, list[tuple[str, LegoBlock]]] = {}
    for i, b in zip(ids, blocks, strict=True):
        own.setdefault(by_id[i].site, []).append((i, b))
    chosen = refs.local_models(scn, run.task, run.site_dirs, own)
    locals_ = {site: c.entry for site, c in chosen.items()}
    phases["local references (each hospital alone, in process)"] = time.monotonic() - t
    template = [
        blocks[[b.modality for b in blocks].index(m)]
        for m in run.task.modalities
        if m in [b.modality for b in blocks]
    ]
    baselines: dict[str, BaselineRow] = {}
    out = list(entries)
    for kind, who in (
        ("baseline", scn.spec.sites),
        ("baseline-paired", [s for s in scn.spec.sites if s.paired]),
    ):
        if not who:
            continue
        t = time.monotonic()
        e = refs.fedavg(
            scn,
            run.task,
            {s.name: load_site_folder(run.site_dirs[s.name] / "data") for s in who},
            kind,
            template,
        )
        out.append(e)
        probe = fused_model(template, scn.spec.fuse_mode)
        assert isinstance(e.info, FedAvgInfo), "a FedAvg baseline records how it chose its rounds"
        rounds_run = len(e.info.curve) + e.info.rounds_chosen
        baselines[kind] = BaselineRow(e.info, rounds_run, round_bytes(probe))
        phases[f"{kind}: FedAvg from scratch (in process)"] = time.monotonic() - t
    t = time.monotonic()
    out += refs.ceiling(scn, run.task, part)
    phases["ceiling: central families (in process)"] = time.monotonic() - t
    return out, locals_, {site: c.info for site, c in chosen.items()}, baselines


def _reused(
    run: RunResult,
    scn: Scenario,
    part: Partition,
    ids: list[str],
    summary_modalities: list[str],
    folder: Path,
) -> reuse.Reused:
    by_id = {b.block_id: b for b in run.blocks}
    site_blocks: dict[str, list[str]] = {}
    for i in ids:
        site_blocks.setdefault(by_id[i].site, []).append(by_id[i].modality)
    views = {s.name: _site_view(run, part, s) for s in scn.spec.sites}
    return reuse.load(
        folder,
        scn.name,
        scn.spec.seed,
        views,
        summary_modalities,
        list(run.task.modalities),
        site_blocks,
    )


def _site_view(run: RunResult, part: Partition, s: Any) -> MultimodalDataset:
    """A hospital's test patients, labelled with its name, through its own modalities."""
    return _labelled(part.test[part.test_of[s.name]], s.name).select_modalities(
        [m for m in s.modalities if m in run.task.modalities]
    )


def _labelled(d: MultimodalDataset, site: str) -> MultimodalDataset:
    out = d.subset(np.arange(len(d)))
    out.groups, out.holdout = np.full(len(out), site), None
    return out


def _block_test(b: LegoBlock, test: MultimodalDataset, sites: np.ndarray, spec: TaskSpec) -> float:
    """A block alone on the test patients that have its modality (within-site)."""
    rows = np.flatnonzero(covered(test, [b.modality]))
    part = test.subset(rows)
    scores = module_entry("b", "", SingleModality(b, b.modality), [b.modality], spec).predict(part)
    return refs.within(spec, part, scores, sites[rows])


def _site_row(s: Any, part: Partition) -> SiteRow:
    d = part.sites[s.name]
    events = int(np.asarray(d.event).sum()) if d.task == "survival" else None
    tests = len(part.test[part.test_of[s.name]])
    return SiteRow(s.name, tuple(s.modalities), s.paired, len(d), events, tests)


def validation_summary(run: RunResult, scn: Scenario, part: Partition) -> ValidationSummary:
    """What the choices rested on: every merge candidate's consortium validation value and
    standard error, who scored or declined (with the patients each site holds), the LegoFuse
    rounds' validation, and how sites validate (out of fold over all their patients, or a
    split)."""
    v = run.merged.card.get("validation", {})
    fuse = run.fused.card.get("validation", {}) if run.fused is not None else {}
    curve = fuse.get("curve") or run.fuse_detail.get("curve", [])
    return ValidationSummary(
        how=f"{scn.spec.folds}-fold cross-fitting over every patient"
        if scn.spec.folds
        else f"a {scn.spec.val_fraction:.0%} validation split of each site",
        candidates=tuple(CandidateRow.from_json(r) for r in v.get("candidates", [])),
        chosen=v.get("chosen"),
        scored_by=tuple(v.get("scored_by", [])),
        declined_by=tuple(v.get("declined_by", [])),
        silent=tuple(v.get("silent", [])),
        site_patients={s.name: len(part.sites[s.name]) for s in scn.spec.sites},
        fuse_rounds=tuple(CurvePoint.from_json(c) for c in curve if c),
    )


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def dp_budget(scn: Scenario) -> DPBudget | None:
    """The sites' DP budget for blocks (the scenario's block_epsilon), or None."""
    return DPBudget(scn.spec.block_epsilon) if scn.spec.block_epsilon is not None else None


def dp_epsilon(m: BlockManifest) -> float | None:
    return m.dp.epsilon if m.dp is not None else None


def checks(report: Report, scn: Scenario, pushed: set[str]) -> dict[str, bool]:
    """The report's internal consistency: what must hold for the run to be trusted (``pushed``:
    the sites with an accepted block; the report's block rows are the merged version's blocks,
    which may be a subset, e.g. each modality's largest blocks)."""
    summary = report.summary or ()
    out = {
        "every site has a block": pushed == {s.name for s in scn.spec.sites}
        and {b.site for b in report.blocks} <= pushed,
        "every site sent bytes": all(c.mmlego_up > 0 for c in report.communication.values()),
        "metrics are finite": all(math.isfinite(b.test) for b in report.blocks)
        and all(math.isfinite(r.mean) for r in summary),
    }
    if report.summary is not None:
        out["the summary compares every model on the same patients"] = (
            len({r.patients for r in report.summary}) == 1
        )
        out["every comparison's interval holds its difference"] = all(
            c.low <= c.diff <= c.high
            for c in report.comparisons or ()
            if c.low is not None and c.diff is not None and c.high is not None
        )
    if scn.spec.block_epsilon is not None:
        out[f"every block spent at most epsilon {scn.spec.block_epsilon:g}"] = all(
            b.dp_epsilon is not None and b.dp_epsilon <= scn.spec.block_epsilon
            for b in report.blocks
        )
    cen = report.centralized
    if cen is not None and scn.spec.block_epsilon is None:  # DP noise is secret: no retrain matches
        same = f"{cen.site}'s blocks trained again here == its pushed blocks (bit for bit)"
        out[same] = bool(cen.blocks_exact)
        fuse = next((r for r in summary if r.kind == "fuse"), None)
        if cen.fuse_test is not None and fuse is not None:
            gap = abs(fuse.mean - cen.fuse_test)
            out[f"federated fuse within {FUSE_TOLERANCE} of centralized"] = gap <= FUSE_TOLERANCE
    return out
