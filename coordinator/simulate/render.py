"""Writing what ``mmlego simulate`` measured: report.json, report.md and plots for one run, and
the summary over several seeds (``--seeds N``): every kind of model's mean and standard
deviation over the seeds, each seed measured on the same test patients for every model."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from .report import KINDS


def _mb(n: float) -> str:
    return f"{n / 1e6:.2f}"


def _f(x: Any, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if isinstance(x, int | float) and math.isfinite(x) else "-"


# ---- over seeds ----------------------------------------------------------------------------------
def summarize(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation over seeds of every kind's test metric (each seed: every model
    on that seed's same test patients), and the same per site beside its own best block."""
    rows = []
    for kind in KINDS:
        got = [(r["seed"], x) for r in reports for x in r.get("summary", []) if x["kind"] == kind]
        if not got:
            continue
        values = [x["mean"] for _, x in got]
        rows.append({"model": _model_name(kind, [x["model"] for _, x in got]), "kind": kind,
                     "patients": statistics.mean(x["patients"] for _, x in got), "mean": statistics.mean(values),
                     "std": statistics.stdev(values) if len(values) > 1 else 0.0, "seeds": [s for s, _ in got],
                     "values": values, "picked": [x["model"] for _, x in got]})
    sites: dict[str, dict[str, list[float]]] = {}
    patients: dict[str, list[int]] = {}
    for r in reports:
        for site in r.get("per_site", []):
            patients.setdefault(site["site"], []).append(site["patients"])
            for x in site["rows"]:
                sites.setdefault(site["site"], {}).setdefault(x["kind"], []).append(x["value"])
    per_site = [{"site": name, "patients": statistics.mean(patients[name]),
                 "rows": [{"kind": k, "mean": statistics.mean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0,
                           "seeds": len(v)} for k, v in kinds.items()]} for name, kinds in sites.items()]
    return {"scenario": reports[0]["scenario"], "metric": reports[0]["metric"], "seeds": [r["seed"] for r in reports],
            "summary": rows, "per_site": per_site}


def _model_name(kind: str, names: list[str]) -> str:
    generic = {"best-block": "the block the consortium picks on validation", "ensemble": "mean of every block's prediction",
               "merge-uniform": "LegoMerge of every block, equal weights", "merge": "the version `merge --recipe auto` published",
               "fuse": "early-stopped LegoFuse (its parent when no round was kept)",
               "recommended": "the coordinator's recommended version", "baseline": "FedAvg from scratch on the paired sites",
               "pooled": "LegoFuse trained centrally on every training patient (no consortium can)"}
    return generic.get(kind, names[0])


def summary_table(summary: dict[str, Any]) -> list[str]:
    m = summary["metric"]
    lines = [f"| kind | model | test patients | {m} mean | std | seeds |", "|---|---|---|---|---|---|"]
    for r in summary["summary"]:
        lines.append(f"| {r['kind']} | {r['model']} | {r['patients']:.0f} | {_f(r['mean'])} | {_f(r['std'])} | {len(r['seeds'])} |")
    kinds = [k for k in KINDS if any(x["kind"] == k for s in summary["per_site"] for x in s["rows"])]
    if summary["per_site"]:
        lines += ["", f"Per site (its own test patients, through its modalities; {m} mean over seeds):", "",
                  "| site | test patients | its own best block | " + " | ".join(kinds) + " |",
                  "|---|---|---|" + "---|" * len(kinds)]
        for s in summary["per_site"]:
            by = {x["kind"]: x["mean"] for x in s["rows"]}
            lines.append(f"| {s['site']} | {s['patients']:.0f} | {_f(by.get('own-block'))} | "
                         + " | ".join(_f(by.get(k)) for k in kinds) + " |")
    return lines


def write_summary(summary: dict[str, Any], out: Path) -> list[Path]:
    (out / "report.json").write_text(json.dumps(summary, indent=1, default=float) + "\n")
    lines = [f"# mmlego simulate: {summary['scenario']}, seeds {summary['seeds']}", "",
             "Every model of a seed is measured on the same test patients; the table gives the mean and standard deviation "
             "over the seeds. Choices were made on validation patients only (the sites' own).", ""]
    lines += summary_table(summary)
    lines += ["", "Each seed's own report: " + ", ".join(f"[seed {s}](seed-{s}/report.md)" for s in summary["seeds"]), ""]
    (out / "report.md").write_text("\n".join(lines))
    return [out / "report.json", out / "report.md"]


# ---- one run -------------------------------------------------------------------------------------
def write_report(report: dict[str, Any], out: Path) -> list[Path]:
    """report.json, report.md and the plots; returns the files written."""
    files = [out / "report.json", out / "report.md"]
    (out / "report.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    files += plots(report, out)
    m = report["metric"]
    lines = [f"# mmlego simulate: {report['scenario']} (seed {report['seed']})", "", report["description"], ""]
    if report["synthetic"]:
        lines += ["**Synthetic data** (generated with a known signal per modality; not a clinical result).", ""]
    where = report.get("placement") or {}  # ray engine: the Ray node of each site's block training
    node_col = (" Ray node |", "---|") if where else ("", "")
    lines += ["## Sites", "", f"| site | modalities | paired | training patients | validation patients |{node_col[0]}",
              f"|---|---|---|---|---|{node_col[1]}"]
    lines += [f"| {s['name']} | {', '.join(s['modalities'])} | {'yes' if s['paired'] else 'no'} | {s['patients']} | "
              f"{s['validation_patients']} |" + (f" {where.get(s['name'], '?')} |" if where else "") for s in report["sites"]]
    if where:
        lines += ["", f"Engine: ray. Each site's block training ran as one Ray task; Ray nodes used: "
                      f"{', '.join(sorted(set(where.values())))}."]
    lines += ["", f"Held-out test set: {report['test_patients']} patients no site trains on or chooses with. Every choice "
              "(the merge recipe, the LegoFuse round, the recommended version, the best block) was made on the sites' own "
              "validation patients, through federated evaluation (pair counts only).", ""]
    if "summary" in report:
        lines += [f"## Test {m}: every model on the same patients", ""]
        lines += summary_table({"metric": m, "summary": report["summary"],
                                "per_site": [{"site": s["site"], "patients": s["patients"],
                                              "rows": [{"kind": x["kind"], "mean": x["value"]} for x in s["rows"]]}
                                             for s in report.get("per_site", [])]})
        lines += [""]
    lines += _validation_lines(report)
    lines += ["## Blocks (test, on the test patients with the block's modality)", "",
              "| block | training patients | test | DP epsilon |", "|---|---|---|---|"]
    lines += [f"| {b['site']} / {b['modality']} | {b['n_train']} | {_f(b['test'])} | "
              f"{_f(b['dp_epsilon']) if b.get('dp_epsilon') is not None else 'no DP'} |" for b in report["blocks"]]
    cen = report.get("centralized")
    dp = any(b.get("dp_epsilon") is not None for b in report["blocks"])
    if cen:
        same = ("not comparable (DP blocks: the noise is secret, a retrain draws other noise)" if dp else
                "identical bit for bit" if cen["merge_exact"] else "DIFFERENT")
        lines += ["", f"Centralized references: the published merge rebuilt here from blocks trained again in one process is "
                      f"{same}; LegoFuse's kept rounds run centrally: {_f(cen['fuse_test'])}."]
    base = report["baseline"]
    if "curve" in base:
        target = _f(base["target_val"]) if base["target_val"] is not None else "none"
        lines += [f"FedAvg from scratch on the paired sites ({', '.join(base['sites'])}): {base['rounds']} rounds, "
                  f"{'reached' if base['reached_target'] else 'did not reach'} LegoFuse's validation {m} ({target})."]
    else:
        lines += [f"FedAvg baseline: {base.get('skipped')}."]
    lines += ["", "## Communication (payload bytes per site, MB)", "",
              "| site | MM-Lego sent | MM-Lego received | of which evaluation (sent / received) | fuse rounds | baseline sent | "
              "baseline received | baseline rounds |", "|---|---|---|---|---|---|---|---|"]
    for site, c in report["communication"].items():
        lines.append(f"| {site} | {_mb(c['mmlego_up'])} | {_mb(c['mmlego_down'])} | {_mb(c['evaluation_up'])} / "
                     f"{_mb(c['evaluation_down'])} | {c['mmlego_rounds']} | {_mb(c['baseline_up'])} | {_mb(c['baseline_down'])} | "
                     f"{c['baseline_rounds']} |")
    lines += ["", "## Wall time per phase (s)", "", "| phase | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in report["phases_s"].items()]
    lines += ["", "## Peak memory (resident, MB)", "", "| process | peak |", "|---|---|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in report["peak_rss_mb"].items()]
    lines += ["", "## Checks", ""] + [f"- [{'x' if ok else ' '}] {name}" for name, ok in report["checks"].items()]
    lines += ["", "Plots: " + ", ".join(f"[{p.name}]({p.name})" for p in files if p.suffix == ".png"), ""]
    (out / "report.md").write_text("\n".join(lines))
    return files


def _validation_lines(report: dict[str, Any]) -> list[str]:
    """The merge's candidates as the sites scored them, and LegoFuse's validation curve."""
    v = report["merge"].get("validation", {})
    lines = ["## Consortium validation (what the choices rest on)", ""]
    if not v.get("evaluated"):
        lines += [f"The merge was not measured: {v.get('reason', '')}.", ""]
    else:
        lines += [f"Merge {report['merge']['model']}: scored by {', '.join(v.get('scored_by', [])) or 'no site'}; declined by "
                  f"{', '.join(v.get('declined_by', [])) or 'none'}. Chosen: **{v['chosen']}**: {v['reason']}.", "",
                  "| candidate | validation | standard error | vs uniform | standard error | sites |", "|---|---|---|---|---|---|"]
        for r in v.get("candidates", []):
            lines.append(f"| {r['label']} | {_f(r.get('value'), 4)} | {_f(r.get('se'), 4)} | {_f(r.get('diff'), 4)} | "
                         f"{_f(r.get('se_diff'), 4)} | {len(r.get('sites', []))} |")
        lines.append("")
    fuse = report["fuse"]
    if "not_stored" in fuse:
        lines += [f"LegoFuse: no fused version stored: {fuse['not_stored']}", ""]
        curve = fuse.get("curve", [])
    else:
        curve = fuse.get("validation", {}).get("curve", [])
        lines += [f"LegoFuse {fuse['model']}: {fuse.get('validation', {}).get('reason', '')}.", ""]
    if curve:
        lines += ["| round | validation | parent | difference | standard error |", "|---|---|---|---|---|"]
        lines += [f"| {i + 1} | {_f(c.get('value'), 4)} | {_f(c.get('parent'), 4)} | {_f(c.get('diff'), 4)} | "
                  f"{_f(c.get('se_diff'), 4)} |" for i, c in enumerate(curve) if c]
        lines.append("")
    rec = report.get("recommended", {})
    if rec:
        lines += [f"Recommended version: **{rec['model']}** ({rec['reason']}).", ""]
    return lines


def plots(report: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    m = report["metric"]
    rows = report.get("summary") or []
    if rows:
        fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(rows)), 4))
        values = [r["mean"] for r in rows]
        ax.bar(range(len(rows)), values, color=["#9aa5b1" if r["kind"] in ("best-block", "pooled", "baseline") else "#1f77b4"
                                                for r in rows])
        ax.set_xticks(range(len(rows)), [r["kind"] for r in rows], fontsize=8, rotation=20)
        ax.set_ylabel(f"test {m}")
        ax.set_ylim(max(0.0, min(values) - 0.1), min(1.0, max(values) + 0.05))
        ax.set_title(f"{report['scenario']} (seed {report['seed']}): {rows[0]['patients']} test patients"
                     + (" (synthetic data)" if report["synthetic"] else ""))
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
            ax.axhline(base["target_val"], color="#2ca02c", ls="--", label="LegoFuse (kept round)")
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
