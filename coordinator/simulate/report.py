"""What a simulated run measured, judged honestly: every model on the *same* held-out test
patients (those every compared model can score), chosen on validation only.

The models (kinds): ``best-block`` (the block the consortium would pick: the best consortium
validation metric of the blocks scored alone, never the test metric), ``ensemble`` and
``merge-uniform`` (of every block), ``merge`` (the version ``coordinator merge --recipe auto``
published), ``fuse`` (the early-stopped LegoFuse version, or its parent when no round was kept),
``recommended`` (the coordinator's recommended version), ``baseline`` (FedAvg from scratch on the
paired sites) and, for built-in scenarios, ``pooled`` (the same LegoFuse architecture trained
centrally on every training patient with all of that patient's modalities: what no consortium
can do). ``per_site``: the same models on each site's own test patients (seen through its
modalities), beside that site's own best block. Beside them: the centralized references that
check the federated result bit for bit, communication, wall time and memory."""

from __future__ import annotations

import copy
import math
import sqlite3
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from common.artifacts import BlockManifest
from common.artifacts.modelfile import load_model_folder, merge_model, recipe_model
from common.data.dataset import MultimodalDataset, concat_datasets
from common.data.sitefolder import load_site_folder
from common.data.splits import site_split
from common.evaluation.scoring import covered
from common.fuse import FuseConfig, centralized_fuse, fused_model, paired_only
from common.fuse.wire import trainable_names
from common.lego import LegoBlock, LegoEnsemble, LegoFuse, SingleModality
from common.serde import job_from_bytes, manifest_from_bytes
from common.tasks import TaskSpec, metric
from common.train import TrainConfig, fit, predict_scores
from common.train.dp import DPBudget
from common.train.siteblock import train_modality

from ..fuse_rounds import NodeInfo, run_rounds
from .inprocess import LocalSites
from .run import RunResult, block_training
from .scenario import Partition, Scenario

FUSE_TOLERANCE = 0.02  # federated LegoFuse vs centralized, test metric
KINDS = ("best-block", "ensemble", "merge-uniform", "merge", "fuse", "recommended", "baseline", "pooled")


@dataclass
class Candidate:
    """A model the report measures: its kind, a name for people, the modalities it reads."""

    kind: str
    name: str
    model: torch.nn.Module
    modalities: list[str]


@dataclass(frozen=True)
class Row:
    """One model's test metric on a set of patients."""

    kind: str
    model: str
    patients: int
    value: float


def measure(model: torch.nn.Module, modalities: list[str], data: MultimodalDataset, rows: np.ndarray, spec: TaskSpec) -> float:
    """The metric of ``model`` on ``data``'s patients ``rows`` (it reads only ``modalities``)."""
    part = data.subset(rows)
    part = part.select_modalities([m for m in modalities if m in part.modalities])
    with torch.no_grad():
        return metric(spec, predict_scores(model, part, spec, amp=False), part.targets())


def scorable(c: Candidate, data: MultimodalDataset) -> np.ndarray:
    return covered(data, c.modalities)


def rows_of(candidates: list[Candidate], data: MultimodalDataset, spec: TaskSpec) -> list[Row]:
    """Every candidate on the patients of ``data`` that all of them can score."""
    common = np.ones(len(data), dtype=bool)
    for c in candidates:
        common &= scorable(c, data)
    idx = np.flatnonzero(common)
    if idx.size == 0:
        return []
    return [Row(c.kind, c.name, int(idx.size), measure(c.model, c.modalities, data, idx, spec)) for c in candidates]


def round_bytes(model: torch.nn.Module) -> int:
    """What one round message carries: the trainable tensors, packed (common.fuse.wire)."""
    state = model.state_dict()
    return sum(state[n].numel() * state[n].element_size() for n in trainable_names(model))


def training_rows(data: MultimodalDataset, scn: Scenario) -> MultimodalDataset:
    """A site's training patients (never its validation patients)."""
    rows, _ = site_split(data, block_training(scn).val_fraction, scn.spec.seed)
    return data.subset(rows)


# ---- the models ----------------------------------------------------------------------------------
def best_block(run: RunResult, blocks: list[LegoBlock], ids: list[str]) -> tuple[int, str]:
    """The block the consortium would pick: the best consortium validation metric among the blocks
    scored alone in the merge's evaluation; when no site could score them, the best validation
    metric each site reported with its own block (its manifest)."""
    validation = run.merged.card.get("validation", {})
    alone = {}
    for row in validation.get("candidates", []):
        if row["candidate"].startswith("alone-") and row.get("value") is not None:
            alone[row["candidate"]] = row["value"]
    by_id = {b.block_id: b for b in run.blocks}
    labels = [f"{by_id[i].site}/{by_id[i].modality}" for i in ids]
    if alone:
        cands = [c for c in validation["candidates"] if c["candidate"] in alone]
        best = max(cands, key=lambda c: alone[c["candidate"]])
        i = int(best["candidate"].split("-")[1])
        return i, f"{labels[i]} alone (best consortium validation {alone[best['candidate']]:.3f})"
    stats = [manifest_from_bytes(by_id[i].manifest).train_stats.get("val_metric", -1.0) for i in ids]
    i = int(np.argmax(stats))
    return i, f"{labels[i]} alone (no consortium validation; best of the sites' own block validation, {stats[i]:.3f})"


def pooled_reference(scn: Scenario, part: Partition, run: RunResult) -> Candidate | None:
    """LegoFuse of blocks trained centrally on every training patient (all modalities), then
    fine-tuned on them with early stopping on the validation patients: the upper bound."""
    if part.train_pool is None:
        return None
    spec = run.task.spec
    train = part.train_pool.select_modalities(list(run.task.modalities))
    val = part.val[0].select_modalities(list(run.task.modalities))
    train.holdout, val.holdout = np.zeros(len(train), dtype=bool), np.ones(len(val), dtype=bool)
    pool = concat_datasets([train, val])
    settings = block_training(scn)
    blocks = [train_modality(pool, m, run.task, settings)[0] for m in run.task.modalities]
    model = LegoFuse(blocks, mode=scn.spec.fuse_mode)  # type: ignore[arg-type]
    both = paired_only(train, model.modalities)
    cfg = TrainConfig(epochs=max(1, scn.spec.rounds) * scn.spec.epochs, patience=scn.spec.patience_rounds, lr=5e-4,
                      seed=scn.spec.seed, device="cpu", amp=False, select_initial=True)
    fit(model, both, paired_only(val, model.modalities), spec, cfg, label="pooled")
    return Candidate("pooled", "LegoFuse trained centrally on every training patient (no consortium can)", model.eval(),
                     list(model.modalities))


def fedavg_baseline(scn: Scenario, run: RunResult, part: Partition, blocks: list[LegoBlock], target_val: float | None,
                    fuse_cfg: FuseConfig) -> tuple[dict[str, Any], LegoFuse | None]:
    """A multimodal model of the same architecture trained from scratch (the task's shared
    initialisation, untrained encoders) by FedAvg on the paired sites' training patients only,
    round by round until its validation metric reaches LegoFuse's or ``baseline_max_rounds``."""
    paired = [s for s in scn.spec.sites if s.paired]
    if not paired:
        return {"skipped": "no site holds paired data"}, None
    fresh = []
    for b in blocks:
        torch.manual_seed(scn.spec.seed * 1000 + sum(map(ord, b.config.modality)))
        new = LegoBlock(b.config)
        new.scaling.load_state_dict(b.scaling.state_dict())  # the same input standardisation as the sites'
        fresh.append(new)
    start = fused_model(fresh, fuse_cfg.mode, run.merged.parameters)
    data = [paired_only(training_rows(load_site_folder(run.site_dirs[s.name] / "data"), scn), start.modalities) for s in paired]
    nodes = [NodeInfo(i, s.name, tuple(s.modalities), True) for i, s in enumerate(paired)]
    val = concat_datasets(part.val, union=True)
    curve, reached = [], False
    for r in range(1, scn.spec.baseline_max_rounds + 1):
        cfg = FuseConfig(mode=fuse_cfg.mode, rounds=1, epochs=fuse_cfg.epochs, lr=fuse_cfg.lr, seed=scn.spec.seed * 100 + r)
        sites = LocalSites(lambda: copy.deepcopy(start), data, cfg)
        start.load_state_dict(run_rounds(sites, nodes, start, cfg, "baseline", 3600, len(nodes)).state)
        v = measure(start.eval(), list(start.modalities), val, np.flatnonzero(covered(val, start.modalities)), run.task.spec)
        curve.append({"round": r, "val": v})
        if target_val is not None and v >= target_val:
            reached = True
            break
    return ({"rounds": len(curve), "reached_target": reached, "target_val": target_val, "curve": curve,
             "model_bytes": round_bytes(start), "sites": [s.name for s in paired]}, start.eval())


@dataclass
class Reference:
    """The centralized references computed in this process from the same site data."""

    blocks: list[LegoBlock]
    merge_exact: bool
    merge_max_abs_diff: float
    fuse_test: float | None


def centralized(run: RunResult, scn: Scenario, test: MultimodalDataset, rows: np.ndarray, federated: torch.nn.Module,
                order: list[tuple[str, str]], fuse_cfg: FuseConfig, kept_round: int) -> Reference:
    """Every block trained again here exactly as its site did (the site's data folder, the
    [train] settings its site.toml was written with, one thread), made into the published recipe;
    then LegoFuse's kept rounds on the paired sites' training patients pooled."""
    settings = block_training(scn)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        blocks = []
        for site, modality in order:
            block, _, _ = train_modality(load_site_folder(run.site_dirs[site] / "data"), modality, run.task, settings,
                                         min_cell=scn.spec.min_cell_size, private=dp_budget(scn))
            blocks.append(block)
        mine = recipe_model(run.merged.recipe, blocks, run.merged.parameters)
        part = test.subset(rows)
        a = predict_scores(federated, part, run.task.spec, amp=False)
        b = predict_scores(mine, part, run.task.spec, amp=False)
        fuse_test = None
        paired = [s for s in scn.spec.sites if s.paired]
        if run.fused is not None and paired and kept_round > 0:
            model = fused_model(blocks, fuse_cfg.mode, run.merged.parameters)
            pooled = concat_datasets([paired_only(training_rows(load_site_folder(run.site_dirs[s.name] / "data"), scn),
                                                  model.modalities) for s in paired])
            centralized_fuse(model, pooled, model.task, FuseConfig(mode=fuse_cfg.mode, rounds=kept_round,
                                                                   epochs=fuse_cfg.epochs, seed=fuse_cfg.seed))
            fuse_test = measure(model.eval(), list(model.modalities), test, rows, run.task.spec)
    finally:
        torch.set_num_threads(threads)
    return Reference(blocks, bool(np.array_equal(a, b)), float(np.max(np.abs(a - b))) if a.size else 0.0, fuse_test)


# ---- communication -------------------------------------------------------------------------------
def _evaluation_bytes(run: RunResult, site: str) -> tuple[int, int]:
    """(sent, received) for federated evaluation: the reports' scores; the blocks and versions the
    site fetched to rebuild candidates, and the round weights it downloaded."""
    db = run.out / "coordinator" / "store" / "registry.sqlite"
    sent = received = 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        sent = int(con.execute("SELECT COALESCE(SUM(LENGTH(message)), 0) FROM eval_scores WHERE site = ?", (site,)).fetchone()[0])
        for (raw,) in con.execute("SELECT e.message FROM evaluations e JOIN eval_reports r ON r.job_id = e.job_id "
                                  "WHERE r.site = ? AND r.declined = ''", (site,)):
            received += sum(c.weights_size for c in job_from_bytes(bytes(raw)).candidates if c.kind == "fuse-round")
    state = run.site_dirs[site]
    for folder in (state / "verified-blocks", state / "models"):  # what it fetched (its own trained blocks are elsewhere)
        if folder.is_dir():
            received += sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    return sent, received


def communication(run: RunResult, scn: Scenario, fused_state_bytes: int, baseline: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Payload bytes per site (tensors, manifests, signatures, scores; not gRPC/HTTP/TLS framing):
    MM-Lego = the blocks a site pushed, the trainable weights of every fuse round both ways (and
    the merge version a paired site pulls for them), and federated evaluation (scores sent; blocks,
    versions and round weights fetched); the baseline = its trainable weights both ways every round."""
    out: dict[str, dict[str, Any]] = {}
    rounds = run.fuse_detail.get("history", [])  # every round run, kept or not
    for s in scn.spec.sites:
        up = sum(b.size + len(b.manifest) + len(b.signature) for b in run.blocks if b.site == s.name)
        took = sum(s.name in r.get("sites", []) for r in rounds)
        asked = sum(s.name in r.get("sites", []) + r.get("failed", []) + r.get("no_answer", []) for r in rounds)
        ev_up, ev_down = _evaluation_bytes(run, s.name)
        row = {"mmlego_up": up + took * fused_state_bytes + ev_up, "mmlego_down": asked * fused_state_bytes + ev_down,
               "mmlego_rounds": took, "evaluation_up": ev_up, "evaluation_down": ev_down}
        if s.name in baseline.get("sites", []):
            n = baseline["rounds"] * baseline["model_bytes"]
            row.update({"baseline_up": n, "baseline_down": n, "baseline_rounds": baseline["rounds"]})
        else:
            row.update({"baseline_up": 0, "baseline_down": 0, "baseline_rounds": 0})
        out[s.name] = row
    return out


# ---- the report ----------------------------------------------------------------------------------
def build_report(run: RunResult, scn: Scenario, part: Partition, extra_phases: dict[str, float] | None = None) -> dict[str, Any]:
    """Every figure of the run, as one JSON-able dict."""
    spec = run.task.spec
    merged, _ = load_model_folder(run.model_dirs[run.merged.model_id])
    if isinstance(merged, LegoFuse):
        raise ValueError(f"{run.merged.model_id} is a fused version; the merge of the run was expected")
    blocks = list(merged.block_list)
    ids = list(run.merged.block_ids)
    by_id = {b.block_id: b for b in run.blocks}
    order = [(by_id[i].site, by_id[i].modality) for i in ids]
    test = concat_datasets(part.test, union=True)
    phases = dict(run.phases)

    fused_model_ = load_model_folder(run.model_dirs[run.fused.model_id])[0] if run.fused is not None else None
    recommended, _ = load_model_folder(run.model_dirs[run.recommended.model.model_id]) if run.recommended else (merged, None)
    best_i, best_name = best_block(run, blocks, ids)
    fuse_name = (f"{run.fused.model_id}: LegoFuse, round {run.fused.card.get('fuse', {}).get('kept_round')} kept"
                 if run.fused is not None else f"no round kept: {run.merged.model_id} (the parent)")
    models = [Candidate("best-block", best_name, SingleModality(blocks[best_i], blocks[best_i].modality), [blocks[best_i].modality]),
              Candidate("ensemble", f"ensemble of {len(blocks)} blocks", LegoEnsemble(blocks).eval(), [b.modality for b in blocks]),
              Candidate("merge-uniform", f"uniform LegoMerge of {len(blocks)} blocks", merge_model(blocks, {}),
                        [b.modality for b in blocks]),
              Candidate("merge", f"{run.merged.model_id}: {run.merged.card.get('validation', {}).get('chosen', run.merged.recipe)}",
                        merged, [b.modality for b in blocks]),
              Candidate("fuse", fuse_name, fused_model_ if fused_model_ is not None else merged, [b.modality for b in blocks]),
              Candidate("recommended", run.recommended.model.model_id if run.recommended else run.merged.model_id, recommended,
                        [b.modality for b in blocks])]
    fuse_cfg = FuseConfig(mode=scn.spec.fuse_mode, rounds=max(1, scn.spec.rounds), epochs=scn.spec.epochs, seed=scn.spec.seed,
                          patience=scn.spec.patience_rounds)
    report: dict[str, Any] = {
        "scenario": scn.name, "description": scn.spec.description, "synthetic": part.synthetic, "metric": spec.metric_name,
        "task": run.task.task_id, "seed": scn.spec.seed, "engine": run.engine,
        "placement": dict(run.placement),  # ray engine: site -> the Ray node that trained its block(s)
        "sites": [{"name": s.name, "modalities": s.modalities, "paired": s.paired, **_held(part.sites[s.name])}
                  for s in scn.spec.sites],
        "test_patients": len(test), "val_patients": sum(len(p) for p in part.val),
        "blocks": [{"site": by_id[i].site, "modality": by_id[i].modality, "block": i[:12],
                    "n_train": int(manifest_from_bytes(by_id[i].manifest).train_stats.get("n_train", 0)),
                    "dp_epsilon": dp_epsilon(manifest_from_bytes(by_id[i].manifest)),
                    "test": measure(SingleModality(b, b.modality), [b.modality], test,
                                    np.flatnonzero(covered(test, [b.modality])), spec)} for i, b in zip(ids, blocks, strict=True)],
        "merge": {"model": run.merged.model_id, "recipe": run.merged.recipe, "validation": run.merged.card.get("validation", {})},
        "fuse": ({"model": run.fused.model_id, "card": run.fused.card.get("fuse", {}),
                  "validation": run.fused.card.get("validation", {})} if run.fused is not None else
                 {"not_stored": run.fuse_note, "curve": run.fuse_detail.get("curve", [])}),
        "recommended": ({"model": run.recommended.model.model_id, "metric": _finite(run.recommended.metric),
                         "reason": run.recommended.reason} if run.recommended else {}),
        "rounds": scn.spec.rounds, "epochs": scn.spec.epochs,
    }
    baseline: dict[str, Any] = {"skipped": "the scenario does not compare (compare = false)"}
    if scn.spec.compare:
        t = time.monotonic()
        common = np.ones(len(test), dtype=bool)
        for c in models:
            common &= scorable(c, test)
        rows = np.flatnonzero(common)
        kept = int(run.fused.card.get("fuse", {}).get("kept_round", 0)) if run.fused is not None else 0
        ref = centralized(run, scn, test, rows, merged, order, fuse_cfg, kept)
        report["centralized"] = {"merge_exact": ref.merge_exact, "merge_max_abs_diff": ref.merge_max_abs_diff,
                                 "fuse_test": ref.fuse_test}
        phases["centralized references (in process)"] = time.monotonic() - t
        t = time.monotonic()
        fuse_val = run.fused.metrics.get("val_metric") if run.fused is not None else None
        baseline, base_model = fedavg_baseline(scn, run, part, blocks, fuse_val, fuse_cfg)
        if base_model is not None:
            models.append(Candidate("baseline", "FedAvg from scratch on the paired sites", base_model, list(base_model.modalities)))
        phases["FedAvg baseline (in process)"] = time.monotonic() - t
        t = time.monotonic()
        pooled = pooled_reference(scn, part, run)
        if pooled is not None:
            models.append(pooled)
            phases["pooled reference (in process)"] = time.monotonic() - t
        report["summary"] = [{"model": r.model, "kind": r.kind, "patients": r.patients, "mean": r.value, "std": 0.0,
                              "seeds": [scn.spec.seed]} for r in rows_of(models, test, spec)]
        report["per_site"] = per_site(run, scn, part, models, blocks, ids, test)
    report["baseline"] = baseline
    report["communication"] = communication(run, scn, round_bytes(fused_model(blocks, fuse_cfg.mode, run.merged.parameters)),
                                            baseline)
    phases.update(extra_phases or {})
    report["phases_s"] = {k: round(v, 2) for k, v in phases.items()}
    report["peak_rss_mb"] = {k: round(v / 2**20, 1) for k, v in run.peaks.items()}
    report["checks"] = checks(report, scn)
    return report


def _held(d: MultimodalDataset) -> dict[str, int]:
    val = int(d.holdout.sum()) if d.holdout is not None else 0
    return {"patients": len(d) - val, "validation_patients": val}


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def per_site(run: RunResult, scn: Scenario, part: Partition, models: list[Candidate], blocks: list[LegoBlock], ids: list[str],
             test: MultimodalDataset) -> list[dict[str, Any]]:
    """Each site: the models on its own test patients (its held-out part of its own folder; the
    pooled test set seen through its modalities in a built-in scenario), beside its own best block
    (the one with the best validation metric it reported itself)."""
    by_id = {b.block_id: b for b in run.blocks}
    out = []
    for s in scn.spec.sites:
        own = part.test[part.test_of[s.name]] if s.name in part.test_of else test
        view = own.select_modalities([m for m in s.modalities if m in own.modalities])
        mine = [i for i, b in enumerate(ids) if by_id[b].site == s.name]
        if not mine:
            continue
        stats = [manifest_from_bytes(by_id[ids[i]].manifest).train_stats.get("val_metric", -1.0) for i in mine]
        j = mine[int(np.argmax(stats))]
        own_best = Candidate("own-block", f"{s.name}/{blocks[j].modality} alone (its own best block)",
                             SingleModality(blocks[j], blocks[j].modality), [blocks[j].modality])
        usable = [own_best] + [c for c in models if set(c.modalities) & set(view.modalities) and
                               (c.kind != "best-block" or c.modalities[0] in view.modalities)]
        rows = rows_of(usable, view, run.task.spec)
        if rows:
            out.append({"site": s.name, "modalities": s.modalities, "patients": rows[0].patients,
                        "rows": [asdict(r) for r in rows]})
    return out


def dp_budget(scn: Scenario) -> DPBudget | None:
    """The sites' DP budget for blocks (the scenario's block_epsilon), or None."""
    return DPBudget(scn.spec.block_epsilon) if scn.spec.block_epsilon is not None else None


def dp_epsilon(m: BlockManifest) -> float | None:
    return m.dp.epsilon if m.dp is not None else None


def checks(report: dict[str, Any], scn: Scenario) -> dict[str, bool]:
    """The report's internal consistency: what must hold for the run to be trusted."""
    out = {"every site has a block": {b["site"] for b in report["blocks"]} == {s.name for s in scn.spec.sites},
           "every site sent bytes": all(c["mmlego_up"] > 0 for c in report["communication"].values()),
           "metrics are finite": all(math.isfinite(b["test"]) for b in report["blocks"])
           and all(math.isfinite(r["mean"]) for r in report.get("summary", []))}
    if "summary" in report:
        out["the summary compares every model on the same patients"] = len({r["patients"] for r in report["summary"]}) == 1
    if scn.spec.block_epsilon is not None:
        out[f"every block spent at most epsilon {scn.spec.block_epsilon:g}"] = all(
            b["dp_epsilon"] is not None and b["dp_epsilon"] <= scn.spec.block_epsilon for b in report["blocks"])
    if "centralized" in report and scn.spec.block_epsilon is None:  # DP noise is secret: a retrain cannot match
        out["federated merge == centralized merge (bit for bit)"] = bool(report["centralized"]["merge_exact"])
        fuse = next((r for r in report.get("summary", []) if r["kind"] == "fuse"), None)
        if report["centralized"]["fuse_test"] is not None and fuse is not None:
            gap = abs(fuse["mean"] - report["centralized"]["fuse_test"])
            out[f"federated fuse within {FUSE_TOLERANCE} of centralized"] = gap <= FUSE_TOLERANCE
    return out
