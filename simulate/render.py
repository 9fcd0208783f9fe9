"""Writing what ``mmlego simulate`` measured: report.json, report.md, plots and the test scores
for one run, and the summary over several seeds (``--seeds N``): every kind's mean and standard
deviation over the seeds and, beside them, paired differences to the recommended version with 95 %
intervals combined over the seeds (each seed's test patients resampled within each hospital)."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from common.evaluation.paired import TestSet

from .evidence import (
    CeilingChoice,
    CeilingInfo,
    FedAvgInfo,
)
from .measurements import (
    ComparisonRow,
)
from .report import KINDS, REFERENCES, Measured, comparisons
from .reportfile import (
    FuseNotStored,
    FuseSection,
    FuseStored,
    Report,
)
from .seedsfile import SeedRow, SeedRun, SeedSite, SeedsSummary, SiteKindRow

SCORES = "test-scores.npz"


def _mb(n: float) -> str:
    return f"{n / 1e6:.2f}"


def _f(x: Any, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if isinstance(x, int | float) and math.isfinite(x) else "-"


def _interval(c: ComparisonRow | None) -> str:
    if c is None or c.diff is None:
        return "-"
    return f"{c.diff:+.3f} [{_f(c.low)}, {_f(c.high)}]"


# ---- test scores on disk -------------------------------------------------------------------------
def save_measured(m: Measured, out: Path) -> Path:
    """The test scores every comparison of a run rests on (numpy arrays, no pickle)."""
    arrays: dict[str, np.ndarray] = {}
    for name, test in [("summary", m.summary), *((f"site:{s}", t) for s, t in m.per_site.items())]:
        if test is None:
            continue
        arrays[f"{name}|site"] = np.asarray(test.site).astype(str)
        arrays[f"{name}|meta"] = np.asarray([test.kind, str(test.n_classes)])
        arrays.update({f"{name}|target|{k}": np.asarray(v) for k, v in test.targets.items()})
        arrays.update({f"{name}|score|{k}": np.asarray(v) for k, v in test.scores.items()})
    np.savez_compressed(out / SCORES, **arrays)  # type: ignore[arg-type]
    return out / SCORES


def load_measured(path: Path) -> Measured:
    with np.load(path, allow_pickle=False) as z:
        names = sorted({k.split("|")[0] for k in z.files})
        tests = {}
        for name in names:
            kind, n_classes = (str(x) for x in z[f"{name}|meta"])
            pick = {k.split("|", 2)[2]: z[k] for k in z.files if k.startswith(f"{name}|target|")}
            scores = {k.split("|", 2)[2]: z[k] for k in z.files if k.startswith(f"{name}|score|")}
            tests[name] = TestSet(kind, int(n_classes), z[f"{name}|site"], pick, scores)
    return Measured(
        tests.get("summary"),
        {n.split(":", 1)[1]: t for n, t in tests.items() if n.startswith("site:")},
    )


# ---- over seeds ----------------------------------------------------------------------------------
def summarize(reports: list[Report], measured: list[Measured]) -> SeedsSummary:
    """Mean and standard deviation over seeds of every kind's within-site test metric, and
    ``recommended`` minus every other kind with 95 % intervals combined over the seeds (the
    summary and each hospital's own test patients)."""
    rows = []
    for kind in KINDS:
        got = [(r.seed, x) for r in reports for x in r.summary or () if x.kind == kind]
        if not got:
            continue
        values = [x.value for _, x in got]
        rows.append(
            SeedRow(
                model=_model_name(kind, [x.model for _, x in got]),
                kind=kind,
                patients=sum(x.patients for _, x in got),
                mean=statistics.mean(values),
                std=statistics.stdev(values) if len(values) > 1 else 0.0,
                seeds=tuple(s for s, _ in got),
                values=tuple(values),
                picked=tuple(x.model for _, x in got),
            )
        )

    # seeds of one block of test_folds test disjoint patients; a later block re-deals them, so
    # combining it would count patients twice as if they were new: intervals combine the first
    # block's seeds only
    def cohort(r: Report) -> int:
        return int(r.seed // r.test_folds) if r.test_folds else 0

    block = [m for r, m in zip(reports, measured, strict=True) if cohort(r) == cohort(reports[0])]
    tests = [m.summary for m in block if m.summary is not None]
    per_site = []
    for name in dict.fromkeys(s.site for r in reports for s in r.per_site or ()):
        by_kind: dict[str, list[float]] = {}
        patients = 0
        for r in reports:
            for s in r.per_site or ():
                if s.site == name:
                    patients += s.patients
                    for x in s.rows:
                        by_kind.setdefault(x.kind, []).append(x.value)
        site_tests = [m.per_site[name] for m in block if name in m.per_site]
        per_site.append(
            SeedSite(
                site=name,
                patients=patients,
                rows=tuple(
                    SiteKindRow(
                        k,
                        statistics.mean(v),
                        statistics.stdev(v) if len(v) > 1 else 0.0,
                        len(v),
                    )
                    for k, v in by_kind.items()
                ),
                comparisons=comparisons(site_tests) if site_tests else (),
            )
        )
    runs = [
        SeedRun(
            seed=r.seed,
            merge=r.merge.validation.get("chosen"),
            scored_by=r.validation.scored_by,
            declined_by=r.validation.declined_by,
            fuse=_fuse_line(r.fuse),
            recommended=r.recommended.model if r.recommended is not None else None,
            validation=r.validation,
            for_sites={s: m for s, (m, _) in r.recommended.for_sites.items()}
            if r.recommended is not None
            else {},
        )
        for r in reports
    ]
    return SeedsSummary(
        scenario=reports[0].scenario,
        metric=reports[0].metric,
        metric_scope=reports[0].metric_scope,
        folds=reports[0].folds,
        seeds=tuple(r.seed for r in reports),
        summary=tuple(rows),
        comparisons=comparisons(tests) if tests else (),
        comparison_seeds=len(tests),
        per_site=tuple(per_site),
        runs=tuple(runs),
    )


def _fuse_line(fuse: FuseSection) -> str:
    """The fused version of a seed, or why none was stored."""
    if isinstance(fuse, FuseStored) and fuse.model:
        return fuse.model
    return "not stored: " + (fuse.not_stored if isinstance(fuse, FuseNotStored) else "")[:200]


def _model_name(kind: str, names: list[str]) -> str:
    generic = {
        "best-block": "the block the consortium picks on validation",
        "ensemble": "mean of every block's prediction",
        "merge-uniform": "LegoMerge of every block, equal weights",
        "merge": "the version `merge --recipe auto` published",
        "fuse": "early-stopped LegoFuse (its parent when no round was kept)",
        "recommended": "the coordinator's recommended version",
        "local": "each hospital's own best model (its own cross-validation)",
        "baseline": "FedAvg from scratch over every site",
        "baseline-paired": "FedAvg from scratch over the paired sites",
        "ceiling": "the best central family on pooled validation",
        "ceiling-fuse": "pooled LegoFuse (central)",
        "ceiling-ensemble": "pooled ensemble of per-modality blocks (central)",
        "ceiling-e2e": "the architecture trained end to end (central)",
        "ceiling-classical": "elastic-net Cox / penalised logistic regression (central)",
    }
    return generic.get(kind, names[0])


class TableRow(Protocol):
    """A kind's row of the headline table (one seed's summary row, or a row over seeds)."""

    @property
    def kind(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def patients(self) -> int: ...
    @property
    def mean(self) -> float: ...
    @property
    def std(self) -> float: ...
    @property
    def seeds(self) -> tuple[int, ...]: ...


@dataclass(frozen=True)
class SiteTable:
    """A hospital's own test patients in the tables: every kind's mean, and the comparisons."""

    site: str
    patients: int
    means: dict[str, float]
    comparisons: tuple[ComparisonRow, ...]


def summary_table(
    metric: str,
    rows: Sequence[TableRow],
    comparisons: Sequence[ComparisonRow],
    sites: Sequence[SiteTable],
) -> list[str]:
    """The headline tables: every kind on the same test patients (mean over seeds, and recommended
    minus it with its paired interval), then each hospital's own view: recommended against what it
    has alone (``local``), and every kind on its own patients."""
    m = metric
    by = {c.b: c for c in comparisons}
    lines = [
        f"| kind | model | test patients | {m} mean | std | seeds | "
        "recommended minus it [95 % interval] |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.kind} | {r.model} | {r.patients:.0f} | {_f(r.mean)} | {_f(r.std)} | "
            f"{len(r.seeds)} | {'-' if r.kind == 'recommended' else _interval(by.get(r.kind))} |"
        )
    if not sites:
        return lines
    lines += [
        "",
        f"The gain from joining: each hospital's own test patients, through its own modalities "
        f"({m}; recommended minus local with its paired 95 % interval):",
        "",
        "| site | test patients | local (alone) | recommended | recommended minus local |",
        "|---|---|---|---|---|",
    ]
    for s in sites:
        c = next((c for c in s.comparisons if c.b == "local"), None)
        lines.append(
            f"| {s.site} | {s.patients:.0f} | {_f(s.means.get('local'))} | "
            f"{_f(s.means.get('recommended'))} | {_interval(c)} |"
        )
    kinds = [k for k in KINDS if any(k in s.means for s in sites)]
    lines += [
        "",
        f"Every kind on each hospital's own test patients ({m}, mean over seeds):",
        "",
        "| site | " + " | ".join(kinds) + " |",
        "|---|" + "---|" * len(kinds),
    ]
    for s in sites:
        lines.append(f"| {s.site} | " + " | ".join(_f(s.means.get(k)) for k in kinds) + " |")
    return lines


def seeds_table(summary: SeedsSummary) -> list[str]:
    """:func:`summary_table` of the summary over seeds."""
    sites = [
        SiteTable(s.site, s.patients, {x.kind: x.mean for x in s.rows}, s.comparisons)
        for s in summary.per_site
    ]
    return summary_table(summary.metric, summary.summary, summary.comparisons, sites)


def write_summary(summary: SeedsSummary, out: Path) -> list[Path]:
    (out / "report.json").write_text(json.dumps(summary.to_json(), indent=1, default=float) + "\n")
    lines = [
        f"# mmlego simulate: {summary.scenario}, seeds {list(summary.seeds)}",
        "",
        f"Every model of a seed is measured on the same test patients "
        f"({summary.metric_scope or 'within-site'}); the seeds' test sets are disjoint folds of "
        "every hospital's patients. Choices were made on the sites' own patients only (out of "
        "fold, or a validation split). Intervals: paired bootstrap over the test patients, within "
        "each hospital, combined over the seeds.",
        "",
    ]
    lines += seeds_table(summary)
    lines += [
        "",
        "What the consortium chose, seed by seed:",
        "",
        "| seed | merge | scored by | declined by | fuse | recommended |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.seed} | {r.merge} | {', '.join(r.scored_by) or '-'} | "
        f"{', '.join(r.declined_by) or '-'} | {r.fuse[:80]} | {r.recommended} |"
        for r in summary.runs
    ]
    lines += [
        "",
        "Each seed's own report: "
        + ", ".join(f"[seed {s}](seed-{s}/report.md)" for s in summary.seeds),
        "",
    ]
    (out / "report.md").write_text("\n".join(lines))
    return [out / "report.json", out / "report.md"]


# ---- one run -------------------------------------------------------------------------------------
def write_report(report: Report, out: Path, measured: Measured | None = None) -> list[Path]:
    """report.json, report.md, the plots and the test scores; returns the files written."""
    files = [out / "report.json", out / "report.md"]
    (out / "report.json").write_text(json.dumps(report.to_json(), indent=1, default=float) + "\n")
    if measured is not None:
        files.append(save_measured(measured, out))
    files += plots(report, out)
    m = report.metric
    lines = [
        f"# mmlego simulate: {report.scenario} (seed {report.seed})",
        "",
        report.description,
        "",
    ]
    if report.synthetic:
        lines += [
            "**Synthetic data** (generated with a known signal per modality; not a clinical "
            "result).",
            "",
        ]
    where = report.placement  # ray engine: the Ray node of each site's block training
    node_col = (" Ray node |", "---|") if where else ("", "")
    lines += [
        "## Sites",
        "",
        "| site | modalities | paired | patients it holds | events | its test patients |"
        f"{node_col[0]}",
        f"|---|---|---|---|---|---|{node_col[1]}",
    ]
    lines += [
        f"| {s.name} | {', '.join(s.modalities)} | {'yes' if s.paired else 'no'} | "
        f"{s.patients} | {s.events if s.events is not None else '-'} | {s.test_patients} |"
        + (f" {where.get(s.name, '?')} |" if where else "")
        for s in report.sites
    ]
    if where:
        lines += [
            "",
            f"Engine: ray. Each site's block training ran as one Ray task; Ray nodes used: "
            f"{', '.join(sorted(set(where.values())))}.",
        ]
    lines += [
        "",
        f"Held-out test set: {report.test_patients} patients (test fold "
        f"{report.test_fold} of every hospital) that no site trains on or chooses with. "
        "Every choice (the blocks' epochs, the merge recipe, the LegoFuse round, the recommended "
        f"version, the best block) rested on the sites' own patients: {report.validation.how}, "
        "through federated evaluation (pair counts only).",
        "",
    ]
    if report.summary is not None:
        lines += [f"## Test {m} (within-site): every model on the same patients", ""]
        sites = [
            SiteTable(s.site, s.patients, {x.kind: x.value for x in s.rows}, s.comparisons)
            for s in report.per_site or ()
        ]
        lines += summary_table(m, report.summary, report.comparisons or (), sites)
        lines += [""]
    lines += _validation_lines(report)
    lines += _reference_lines(report)
    lines += [
        "## Blocks (test: alone, on the test patients with the block's modality)",
        "",
        "| block | patients | validation (published) | test | DP epsilon |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {b.site} / {b.modality} | {b.n_train} | {_f(b.val_metric)} | {_f(b.test)} | "
        f"{_f(b.dp_epsilon) if b.dp_epsilon is not None else 'no DP'} |"
        for b in report.blocks
    ]
    cen = report.centralized
    dp = any(b.dp_epsilon is not None for b in report.blocks)
    if cen:
        same = (
            "not comparable (DP blocks: the noise is secret, a retrain draws other noise)"
            if dp
            else "identical bit for bit"
            if cen.blocks_exact
            else "DIFFERENT"
        )
        lines += [
            "",
            f"Central check: {cen.site}'s blocks trained again in this process from its data "
            f"folder are {same} to the blocks it pushed; LegoFuse's kept rounds run centrally: "
            f"{_f(cen.fuse_test)}.",
        ]
    base_kinds = [k for k in ("baseline", "baseline-paired") if k in report.baselines]
    lines += [
        "",
        "## Communication (payload bytes per site, MB)",
        "",
        "| site | MM-Lego sent | MM-Lego received | of which evaluation (sent / received) | "
        "fuse rounds | " + " | ".join(f"{k} sent / received (rounds)" for k in base_kinds) + " |",
        "|---|---|---|---|---|" + "---|" * len(base_kinds),
    ]
    for site, c in report.communication.items():
        lines.append(
            f"| {site} | {_mb(c.mmlego_up)} | {_mb(c.mmlego_down)} | {_mb(c.evaluation_up)} / "
            f"{_mb(c.evaluation_down)} | {c.mmlego_rounds} | "
            + " | ".join(
                f"{_mb(c.baselines[k].up)} / {_mb(c.baselines[k].down)} ({c.baselines[k].rounds})"
                for k in base_kinds
            )
            + " |"
        )
    lines += ["", "## Wall time per phase (s)", "", "| phase | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in report.phases_s.items()]
    lines += ["", "## Peak memory (resident, MB)", "", "| process | peak |", "|---|---|"]
    lines += [f"| {k} | {v:.0f} |" for k, v in report.peak_rss_mb.items()]
    lines += ["", "## Checks", ""] + [
        f"- [{'x' if ok else ' '}] {name}" for name, ok in report.checks.items()
    ]
    lines += [
        "",
        "Plots: " + ", ".join(f"[{p.name}]({p.name})" for p in files if p.suffix == ".png"),
        "",
    ]
    (out / "report.md").write_text("\n".join(lines))
    return files


def _validation_lines(report: Report) -> list[str]:
    """The merge's candidates as the sites scored them, and LegoFuse's validation curve."""
    val = report.validation
    v = report.merge.validation  # the merged version's card, as stored
    lines = [
        "## Consortium validation (what the choices rest on)",
        "",
        f"How sites validate: {val.how}. Patients each site holds: "
        + ", ".join(f"{k} {n}" for k, n in val.site_patients.items())
        + ".",
        "",
    ]
    if not v.get("evaluated"):
        lines += [f"The merge was not measured: {v.get('reason', '')}.", ""]
    else:
        lines += [
            f"Merge {report.merge.model}: scored by "
            f"{', '.join(v.get('scored_by', [])) or 'no site'}; declined by "
            f"{', '.join(v.get('declined_by', [])) or 'none'}. Chosen: **{v['chosen']}**: "
            f"{v['reason']}.",
            "",
            "| candidate | validation | standard error | vs uniform | standard error | patients |",
            "|---|---|---|---|---|---|",
        ]
        for r in v.get("candidates", []):
            lines.append(
                f"| {r['label']} | {_f(r.get('value'), 4)} | {_f(r.get('se'), 4)} | "
                f"{_f(r.get('diff'), 4)} | {_f(r.get('se_diff'), 4)} | {r.get('patients', '-')} |"
            )
        lines.append("")
    fuse = report.fuse
    if isinstance(fuse, FuseNotStored):
        lines += [f"LegoFuse: no fused version stored: {fuse.not_stored}", ""]
    else:
        lines += [f"LegoFuse {fuse.model}: {fuse.validation.get('reason', '')}.", ""]
    if val.fuse_rounds:
        lines += [
            "| round | validation | parent | difference | standard error |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {i + 1} | {_f(c.value, 4)} | {_f(c.parent, 4)} | {_f(c.diff, 4)} | "
            f"{_f(c.se_diff, 4)} |"
            for i, c in enumerate(val.fuse_rounds)
        ]
        lines.append("")
    rec = report.recommended
    if rec is not None:
        lines += [f"Recommended version: **{rec.model}** ({rec.reason}).", ""]
    return lines


def _reference_lines(report: Report) -> list[str]:
    """How each reference was chosen (validation figures only)."""
    refs = report.references or {}
    if not refs:
        return []
    lines = ["## References (chosen on validation or out-of-fold evidence)", ""]
    for kind in REFERENCES:
        r = refs.get(kind)
        if r is None:
            continue
        extra = ""
        if isinstance(r.info, FedAvgInfo):
            extra = (
                f"; {r.info.rounds_chosen} rounds chosen on the sites' validation splits "
                f"({_f(r.info.val)}) of at most {r.info.budget}"
            )
        elif isinstance(r.info, CeilingChoice):
            extra = "; pooled validation: " + ", ".join(
                f"{k} {_f(x)}" for k, x in r.info.val.items()
            )
        elif isinstance(r.info, CeilingInfo):
            extra = f"; pooled validation {_f(r.info.val)}"
        lines.append(f"- **{kind}**: {r.name}{extra}.")
    for s in report.per_site or ():
        info = s.local
        if info is not None and info.evidence:
            lines.append(
                f"- local at {s.site}: {info.chosen} ({info.how}: "
                + ", ".join(f"{k} {_f(x)}" for k, x in info.evidence.items())
                + ")"
            )
    return [*lines, ""]


def plots(report: Report, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    m = report.metric
    rows = report.summary or ()
    if rows:
        by = {
            c.b: (c.diff, c.low, c.high)
            for c in report.comparisons or ()
            if c.diff is not None and c.low is not None and c.high is not None
        }
        fig, ax = plt.subplots(figsize=(max(7, 0.9 * len(rows)), 4))
        diffs = [by[r.kind][0] if r.kind in by else 0.0 for r in rows]
        lows = [
            d - by[r.kind][1] if r.kind in by else 0.0 for r, d in zip(rows, diffs, strict=True)
        ]
        highs = [
            by[r.kind][2] - d if r.kind in by else 0.0 for r, d in zip(rows, diffs, strict=True)
        ]
        ax.errorbar(range(len(rows)), diffs, yerr=[lows, highs], fmt="o", color="#1f77b4")
        ax.axhline(0, color="#888", lw=0.8)
        ax.set_xticks(range(len(rows)), [r.kind for r in rows], fontsize=8, rotation=30)
        ax.set_ylabel(f"recommended minus kind, test {m}")
        ax.set_title(
            f"{report.scenario} (seed {report.seed}): {rows[0].patients} test patients, "
            "95 % paired intervals" + (" (synthetic data)" if report.synthetic else ""),
            fontsize=9,
        )
        fig.tight_layout()
        files.append(out / "comparisons.png")
        fig.savefig(files[-1], dpi=110)
        plt.close(fig)
    base = report.baselines.get("baseline")
    if base is not None and base.info.curve:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(
            [c.round for c in base.info.curve],
            [c.val for c in base.info.curve],
            "o-",
            color="#d62728",
            label="FedAvg from scratch over every site",
        )
        ax.axvline(base.info.rounds_chosen, color="#2ca02c", ls="--", label="rounds chosen")
        ax.set_xlabel("round")
        ax.set_ylabel(f"validation {m} (within-site)")
        ax.legend()
        fig.tight_layout()
        files.append(out / "baseline_rounds.png")
        fig.savefig(files[-1], dpi=110)
        plt.close(fig)
    sites = list(report.communication)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(sites)), 4))
    x = np.arange(len(sites))
    comm = report.communication
    ax.bar(
        x - 0.2,
        [(comm[s].mmlego_up + comm[s].mmlego_down) / 1e6 for s in sites],
        0.4,
        label="MM-Lego",
    )
    if "baseline" in report.baselines:
        ax.bar(
            x + 0.2,
            [
                (comm[s].baselines["baseline"].up + comm[s].baselines["baseline"].down) / 1e6
                for s in sites
            ],
            0.4,
            label="FedAvg from scratch (every site)",
        )
    ax.set_xticks(x, sites, fontsize=8, rotation=45 if len(sites) > 8 else 0)
    ax.set_ylabel("MB sent + received")
    ax.legend()
    fig.tight_layout()
    files.append(out / "communication.png")
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)
    return files
