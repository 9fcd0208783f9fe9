"""What a simulated run measured: the test metric of every site's block, the LegoMerge and the
LegoFuse version, beside (i) the same merge and fuse computed centrally in one process, (ii) the
best single block and (iii) a FedAvg baseline that trains the multimodal model from scratch on the
paired sites only; bytes each site sent and received; wall time per phase; peak memory. Written
as report.json, report.md and PNG plots."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.artifacts.modelfile import load_model_folder, merge_model
from common.data.dataset import ModalityData, MultimodalDataset
from common.data.sitefolder import load_site_folder
from common.fuse import FuseConfig, centralized_fuse, fused_model, paired_only
from common.fuse.wire import trainable_names
from common.lego import LegoBlock, LegoMerge, SingleModality
from common.serde import manifest_from_bytes
from common.tasks import TaskSpec, metric
from common.train import predict_scores
from common.train.siteblock import train_modality

from ..fuse_rounds import NodeInfo, run_rounds
from .inprocess import LocalSites
from .run import RunResult, block_training
from .scenario import Partition, Scenario

FUSE_TOLERANCE = 0.02  # federated LegoFuse vs centralized, test metric


def evaluate(model: torch.nn.Module, parts: list[MultimodalDataset], spec: TaskSpec, modalities: list[str] | None = None) -> float:
    """The metric over the concatenated predictions for every part (only ``modalities`` used)."""
    return metric(spec, _scores(model, parts, spec, modalities), _targets(parts))


def _scores(model: torch.nn.Module, parts: list[MultimodalDataset], spec: TaskSpec, modalities: list[str] | None = None) -> np.ndarray:
    out = []
    for p in parts:
        use = [m for m in (modalities or list(p.modalities)) if m in p.modalities]
        out.append(predict_scores(model, p.select_modalities(use), spec, amp=False))
    return np.concatenate(out)


def _targets(parts: list[MultimodalDataset]) -> dict[str, np.ndarray]:
    keys = parts[0].targets().keys()
    return {k: np.concatenate([np.asarray(p.targets()[k]) for p in parts]) for k in keys}


def concat(datasets: list[MultimodalDataset]) -> MultimodalDataset:
    """Patients of several sites with the same modalities, one after the other."""
    if len(datasets) == 1:
        return datasets[0]
    first = datasets[0]
    mods = {}
    for m, md in first.modalities.items():
        parts = [d.modalities[m] for d in datasets]
        if len({tuple(p.x.shape[1:]) for p in parts}) != 1:
            raise ValueError(f"modality {m} has different shapes at different sites; they cannot be pooled")
        mask = torch.cat([p.mask for p in parts]) if md.mask is not None else None  # type: ignore[misc]
        mods[m] = ModalityData(md.kind, torch.cat([p.x for p in parts]), torch.cat([p.present for p in parts]), md.features, mask)

    def cat(name: str) -> np.ndarray | None:
        values = [getattr(d, name) for d in datasets]
        return None if values[0] is None else np.concatenate(values)

    return MultimodalDataset(first.name, first.task, [i for d in datasets for i in d.ids], mods, time=cat("time"),
                             event=cat("event"), label=cat("label"), n_classes=first.n_classes)


def round_bytes(model: torch.nn.Module) -> int:
    """What one round message carries: the trainable tensors, packed (common.fuse.wire)."""
    state = model.state_dict()
    return sum(state[n].numel() * state[n].element_size() for n in trainable_names(model))


@dataclass
class Reference:
    """The centralized references computed in this process from the same site data."""

    blocks: list[LegoBlock]
    merge: LegoMerge
    merge_exact: bool
    merge_max_abs_diff: float
    fuse_test: float | None


def centralized(run: RunResult, scn: Scenario, part: Partition, federated: LegoMerge, order: list[tuple[str, str]],
                fuse_cfg: FuseConfig) -> Reference:
    """Every block trained again here exactly as its site did (the site's data folder, the
    [train] settings its site.toml was written with, one thread), merged in the version's order;
    then LegoFuse's R x E epochs on all paired sites' patients pooled."""
    settings = block_training(scn)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        blocks = []
        for site, modality in order:
            block, _ = train_modality(load_site_folder(run.site_dirs[site] / "data"), modality, run.task, settings)
            blocks.append(block)
        merge = merge_model(blocks, run.merged.parameters)
        a, b = _scores(federated, part.test, run.task.spec), _scores(merge, part.test, run.task.spec)
        exact = bool(np.array_equal(a, b))
        diff = float(np.max(np.abs(a - b))) if a.size else 0.0
        fuse_test = None
        paired = [s for s in scn.spec.sites if s.paired]
        if run.fused is not None and paired:
            model = fused_model(blocks, fuse_cfg.mode, run.merged.parameters)
            pooled = concat([paired_only(load_site_folder(run.site_dirs[s.name] / "data"), model.modalities) for s in paired])
            centralized_fuse(model, pooled, model.task, fuse_cfg)
            fuse_test = evaluate(model.eval(), part.test, run.task.spec)
    finally:
        torch.set_num_threads(threads)
    return Reference(blocks, merge, exact, diff, fuse_test)


def fedavg_baseline(reference: Reference, run: RunResult, scn: Scenario, part: Partition, target_val: float | None,
                    fuse_cfg: FuseConfig) -> dict[str, Any]:
    """A multimodal model of the same architecture trained from scratch (the task's shared
    initialisation, untrained encoders) by FedAvg on the paired sites only, round by round until
    its validation metric reaches LegoFuse's or ``baseline_max_rounds``."""
    paired = [s for s in scn.spec.sites if s.paired]
    if not paired:
        return {"skipped": "no site holds paired data"}
    fresh = []
    for b in reference.blocks:
        torch.manual_seed(scn.spec.seed * 1000 + sum(map(ord, b.config.modality)))
        new = LegoBlock(b.config)
        new.scaling.load_state_dict(b.scaling.state_dict())  # the same input standardisation as the sites'
        fresh.append(new)
    start = fused_model(fresh, fuse_cfg.mode, run.merged.parameters)
    data = [paired_only(load_site_folder(run.site_dirs[s.name] / "data"), start.modalities) for s in paired]
    nodes = [NodeInfo(i, s.name, tuple(s.modalities), True) for i, s in enumerate(paired)]
    curve, reached = [], False
    for r in range(1, scn.spec.baseline_max_rounds + 1):
        cfg = FuseConfig(mode=fuse_cfg.mode, rounds=1, epochs=fuse_cfg.epochs, lr=fuse_cfg.lr, seed=scn.spec.seed * 100 + r)
        sites = LocalSites(lambda: copy.deepcopy(start), data, cfg)
        start.load_state_dict(run_rounds(sites, nodes, start, cfg, "baseline", 3600, len(nodes)).state)
        val = evaluate(start.eval(), part.val, run.task.spec)
        curve.append({"round": r, "val": val})
        if target_val is not None and val >= target_val:
            reached = True
            break
    return {"rounds": len(curve), "reached_target": reached, "target_val": target_val, "curve": curve,
            "test": evaluate(start.eval(), part.test, run.task.spec), "model_bytes": round_bytes(start),
            "sites": [s.name for s in paired]}


def communication(run: RunResult, scn: Scenario, fused_state_bytes: int, baseline: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Payload bytes per site (tensors, manifests, signatures; not gRPC/HTTP/TLS framing):
    MM-Lego = the blocks a site pushed, plus for a paired site the merge version it pulls and the
    trainable weights of every fuse round both ways; the baseline = its trainable weights both
    ways every round (its frozen input scaling is not counted: the sites hold it already)."""
    out: dict[str, dict[str, Any]] = {}
    pulled = sum(f.stat().st_size for f in run.model_dirs[run.merged.model_id].rglob("*") if f.is_file())
    rounds = run.fused.card.get("fuse", {}).get("rounds", []) if run.fused is not None else []
    for s in scn.spec.sites:
        up = sum(b.size + len(b.manifest) + len(b.signature) for b in run.blocks if b.site == s.name)
        took = sum(s.name in r.get("sites", []) for r in rounds)
        asked = sum(s.name in r.get("sites", []) + r.get("failed", []) + r.get("no_answer", []) for r in rounds)
        row = {"mmlego_up": up + took * fused_state_bytes, "mmlego_down": (pulled if asked else 0) + asked * fused_state_bytes,
               "mmlego_rounds": took}
        if s.name in baseline.get("sites", []):
            n = baseline["rounds"] * baseline["model_bytes"]
            row.update({"baseline_up": n, "baseline_down": n, "baseline_rounds": baseline["rounds"]})
        else:
            row.update({"baseline_up": 0, "baseline_down": 0, "baseline_rounds": 0})
        out[s.name] = row
    return out


def build_report(run: RunResult, scn: Scenario, part: Partition, extra_phases: dict[str, float] | None = None) -> dict[str, Any]:
    """Every figure of the run, as one JSON-able dict (the centralized references and the
    baseline only when the scenario compares)."""
    import time

    spec = run.task.spec
    merged, _ = load_model_folder(run.model_dirs[run.merged.model_id])
    assert isinstance(merged, LegoMerge)
    by_id = {b.block_id: b for b in run.blocks}
    order = [(by_id[i].site, by_id[i].modality) for i in run.merged.block_ids]
    blocks: list[dict[str, Any]] = []
    for block_id, block in zip(run.merged.block_ids, merged.block_list, strict=True):
        record = by_id[block_id]
        stats = manifest_from_bytes(record.manifest).train_stats
        blocks.append({"site": record.site, "modality": record.modality, "block": block_id[:12],
                       "test": evaluate(SingleModality(block, record.modality), part.test, spec, [record.modality]),
                       "n_train": int(stats.get("n_train", 0))})
    report: dict[str, Any] = {
        "scenario": scn.name, "description": scn.spec.description, "synthetic": part.synthetic, "metric": spec.metric_name,
        "task": run.task.task_id,
        "sites": [{"name": s.name, "modalities": s.modalities, "paired": s.paired, "patients": len(part.sites[s.name])}
                  for s in scn.spec.sites],
        "test_patients": sum(len(p) for p in part.test), "val_patients": sum(len(p) for p in part.val),
        "blocks": blocks, "best_block": max(blocks, key=lambda b: b["test"]),
        "merge": {"model": run.merged.model_id, "test": evaluate(merged, part.test, spec)},
        "rounds": scn.spec.rounds, "epochs": scn.spec.epochs, "seed": scn.spec.seed,
    }
    fuse_cfg = FuseConfig(mode=scn.spec.fuse_mode, rounds=max(1, scn.spec.rounds), epochs=scn.spec.epochs, seed=scn.spec.seed)
    fused_model_ = None
    if run.fused is not None:
        fused_model_, _ = load_model_folder(run.model_dirs[run.fused.model_id])
        report["fuse"] = {"model": run.fused.model_id, "test": evaluate(fused_model_, part.test, spec),
                          "val": evaluate(fused_model_, part.val, spec), "card": run.fused.card.get("fuse", {})}
    phases = dict(run.phases)
    baseline: dict[str, Any] = {"skipped": "the scenario does not compare (compare = false)"}
    if scn.spec.compare:
        t = time.monotonic()
        ref = centralized(run, scn, part, merged, order, fuse_cfg)
        report["centralized"] = {"merge_test": evaluate(ref.merge, part.test, spec), "merge_exact": ref.merge_exact,
                                 "merge_max_abs_diff": ref.merge_max_abs_diff, "fuse_test": ref.fuse_test}
        phases["centralized references (in process)"] = time.monotonic() - t
        t = time.monotonic()
        baseline = fedavg_baseline(ref, run, scn, part, report.get("fuse", {}).get("val"), fuse_cfg)
        phases["FedAvg baseline (in process)"] = time.monotonic() - t
    report["baseline"] = baseline
    fused_bytes = round_bytes(fused_model_) if fused_model_ is not None else 0
    report["communication"] = communication(run, scn, fused_bytes, baseline)
    phases.update(extra_phases or {})
    report["phases_s"] = {k: round(v, 2) for k, v in phases.items()}
    report["peak_rss_mb"] = {k: round(v / 2**20, 1) for k, v in run.peaks.items()}
    report["checks"] = checks(report, scn)
    return report


def checks(report: dict[str, Any], scn: Scenario) -> dict[str, bool]:
    """The report's internal consistency: what must hold for the run to be trusted."""
    out = {"every site has a block": {b["site"] for b in report["blocks"]} == {s.name for s in scn.spec.sites},
           "every site sent bytes": all(c["mmlego_up"] > 0 for c in report["communication"].values()),
           "metrics are finite": all(math.isfinite(b["test"]) for b in report["blocks"]) and math.isfinite(report["merge"]["test"])}
    if "centralized" in report:
        out["federated merge == centralized merge (bit for bit)"] = bool(report["centralized"]["merge_exact"])
        if report["centralized"]["fuse_test"] is not None and "fuse" in report:
            gap = abs(report["fuse"]["test"] - report["centralized"]["fuse_test"])
            out[f"federated fuse within {FUSE_TOLERANCE} of centralized"] = gap <= FUSE_TOLERANCE
    return out


# ---- writing ----------------------------------------------------------------------------------------------
def _mb(n: float) -> str:
    return f"{n / 1e6:.2f}"


def write_report(report: dict[str, Any], out: Path) -> list[Path]:
    """report.json, report.md and the plots; returns the files written."""
    files = [out / "report.json", out / "report.md"]
    (out / "report.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    files += plots(report, out)
    m = report["metric"]
    lines = [f"# mmlego simulate: {report['scenario']}", "", report["description"], ""]
    if report["synthetic"]:
        lines += ["**Synthetic data** (generated with a known signal per modality; not a clinical result).", ""]
    lines += ["## Sites", "", "| site | modalities | paired | training patients |", "|---|---|---|---|"]
    lines += [f"| {s['name']} | {', '.join(s['modalities'])} | {'yes' if s['paired'] else 'no'} | {s['patients']} |"
              for s in report["sites"]]
    lines += ["", f"Held-out test set: {report['test_patients']} patients no site trains on; validation set "
              f"{report['val_patients']} patients (used only to stop the baseline).", "",
              f"## Test {m}", "", "| model | federated (this run) | centralized (one process) |", "|---|---|---|"]
    for b in report["blocks"]:
        lines.append(f"| block {b['site']} / {b['modality']} ({b['n_train']} training patients) | {b['test']:.3f} | |")
    cen = report.get("centralized", {})
    lines.append(f"| LegoMerge {report['merge']['model']} | {report['merge']['test']:.3f} | "
                 f"{cen['merge_test']:.3f} |" if cen else f"| LegoMerge {report['merge']['model']} | {report['merge']['test']:.3f} | |")
    if "fuse" in report:
        c = f"{cen['fuse_test']:.3f}" if cen.get("fuse_test") is not None else ""
        lines.append(f"| LegoFuse {report['fuse']['model']} ({report['rounds']} rounds x {report['epochs']} epochs) | "
                     f"{report['fuse']['test']:.3f} | {c} |")
    best = report["best_block"]
    lines += ["", f"Best single block: {best['site']} / {best['modality']}, {best['test']:.3f}."]
    base = report["baseline"]
    if "curve" in base:
        target = f"{base['target_val']:.3f}" if base["target_val"] is not None else "none"
        lines += [f"FedAvg from scratch on the paired sites ({', '.join(base['sites'])}): {base['rounds']} rounds, "
                  f"{'reached' if base['reached_target'] else 'did not reach'} LegoFuse's validation {m} ({target}); "
                  f"test {base['test']:.3f}."]
    else:
        lines += [f"FedAvg baseline: {base.get('skipped')}."]
    lines += ["", "## Communication (payload bytes per site, MB)", "",
              "| site | MM-Lego sent | MM-Lego received | fuse rounds | baseline sent | baseline received | baseline rounds |",
              "|---|---|---|---|---|---|---|"]
    for site, c in report["communication"].items():
        lines.append(f"| {site} | {_mb(c['mmlego_up'])} | {_mb(c['mmlego_down'])} | {c['mmlego_rounds']} | "
                     f"{_mb(c['baseline_up'])} | {_mb(c['baseline_down'])} | {c['baseline_rounds']} |")
    lines += ["", "## Wall time per phase (s)", "", "| phase | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in report["phases_s"].items()]
    lines += ["", "## Peak memory (resident, MB)", "", "| process | peak |", "|---|---|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in report["peak_rss_mb"].items()]
    lines += ["", "## Checks", ""] + [f"- [{'x' if ok else ' '}] {name}" for name, ok in report["checks"].items()]
    lines += ["", "Plots: " + ", ".join(f"[{p.name}]({p.name})" for p in files if p.suffix == ".png"), ""]
    (out / "report.md").write_text("\n".join(lines))
    return files


def plots(report: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    m = report["metric"]
    names = [f"{b['site']}\n{b['modality']}" for b in report["blocks"]] + ["LegoMerge"]
    values = [b["test"] for b in report["blocks"]] + [report["merge"]["test"]]
    colors = ["#9aa5b1"] * len(report["blocks"]) + ["#1f77b4"]
    if "fuse" in report:
        names.append("LegoFuse")
        values.append(report["fuse"]["test"])
        colors.append("#2ca02c")
    if "test" in report["baseline"]:
        names.append("FedAvg\nscratch")
        values.append(report["baseline"]["test"])
        colors.append("#d62728")
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(names)), 4))
    ax.bar(range(len(names)), values, color=colors)
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_ylabel(f"test {m}")
    ax.set_ylim(max(0.0, min(values) - 0.1), min(1.0, max(values) + 0.05))
    ax.set_title(f"{report['scenario']}: held-out test {m}" + (" (synthetic data)" if report["synthetic"] else ""))
    for i, v in enumerate(values):
        ax.text(i, v, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
    fig.tight_layout()
    files.append(out / "test_metrics.png")
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)
    if "curve" in report["baseline"]:
        base = report["baseline"]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([c["round"] for c in base["curve"]], [c["val"] for c in base["curve"]], "o-", color="#d62728",
                label="FedAvg from scratch (paired sites)")
        if base["target_val"] is not None:
            ax.axhline(base["target_val"], color="#2ca02c", ls="--", label=f"LegoFuse ({report['rounds']} rounds)")
        ax.set_xlabel("round")
        ax.set_ylabel(f"validation {m}")
        ax.legend()
        fig.tight_layout()
        files.append(out / "baseline_rounds.png")
        fig.savefig(files[-1], dpi=110)
        plt.close(fig)
    sites = list(report["communication"])
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(sites)), 4))
    x = np.arange(len(sites))
    comm = report["communication"]
    ax.bar(x - 0.2, [(comm[s]["mmlego_up"] + comm[s]["mmlego_down"]) / 1e6 for s in sites], 0.4, label="MM-Lego")
    ax.bar(x + 0.2, [(comm[s]["baseline_up"] + comm[s]["baseline_down"]) / 1e6 for s in sites], 0.4, label="FedAvg from scratch")
    ax.set_xticks(x, sites, fontsize=8, rotation=45 if len(sites) > 8 else 0)
    ax.set_ylabel("MB sent + received")
    ax.legend()
    fig.tight_layout()
    files.append(out / "communication.png")
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)
    return files
