"""Benchmark report: results.json, results.md (the paper's Table 2 layout) and PNG plots."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .runner import OVERLAPS, JobResult

FIXED_ORDER = (
    "legomerge",
    "merge-chosen",
    "legofuse-stack",
    "legofuse-weave",
    "ensemble",
    "late-concat",
    "early-fusion",
    "classical",
)


def aggregate(results: Sequence[JobResult]) -> list[dict[str, Any]]:
    """One row per (dataset, method, metric): mean, std and the per-split values with their
    seeds."""
    rows: list[dict[str, Any]] = []
    for ds in dict.fromkeys(r.dataset for r in results):
        mine = [r for r in results if r.dataset == ds]
        for attr, metric_name in (("test", mine[0].metric), ("accuracy", "accuracy")):
            methods = list(dict.fromkeys(m for r in mine for m in getattr(r, attr)))
            for method in methods:
                folds = [getattr(r, attr)[method] for r in mine if method in getattr(r, attr)]
                seeds = [r.seed for r in mine if method in getattr(r, attr)]
                rows.append(
                    {
                        "dataset": ds,
                        "method": method,
                        "metric": metric_name,
                        "mean": float(np.mean(folds)),
                        "std": float(np.std(folds)),
                        "folds": folds,
                        "seeds": seeds,
                    }
                )
    return rows


def _get(
    rows: list[dict[str, Any]], ds: str, method: str, metric: str | None = None
) -> dict[str, Any] | None:
    for r in rows:
        if (
            r["dataset"] == ds
            and r["method"] == method
            and (metric is None or r["metric"] == metric)
        ):
            return r
    return None


def table_methods(rows: list[dict[str, Any]], ds: str) -> list[str]:
    main = [
        r["method"]
        for r in rows
        if r["dataset"] == ds and r["metric"] != "accuracy" and not r["method"].startswith("fig6:")
    ]
    blocks = [m for m in main if m.startswith("block:") and m.count(":") == 1]
    encoders = [m for m in main if m.startswith("encoder:")]
    rest = [m for m in FIXED_ORDER if m in main]
    extra = [m for m in main if m not in blocks + encoders + rest]
    return blocks + encoders + rest + extra


def uplift(rows: list[dict[str, Any]], ds: str, method: str = "legomerge") -> float | None:
    main = _get(rows, ds, method)
    blocks = [
        r["mean"]
        for r in rows
        if r["dataset"] == ds
        and r["method"].startswith("block:")
        and r["method"].count(":") == 1
        and r["metric"] != "accuracy"
    ]
    return None if main is None or not blocks else main["mean"] - max(blocks)


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    out = [
        "# mmlego bench",
        "",
        f"Command: `{meta.get('command', '')}`  ",
        f"Machine: {meta.get('machine', '')}  ",
        f"Wall time: {meta.get('wall_seconds', 0):.0f} s; "
        f"splits: {meta.get('splits')} (seeds {meta.get('seeds')}), "
        "70/15/15, model selection on validation only.",
        "",
    ]
    for ds in datasets:
        metric = next(r["metric"] for r in rows if r["dataset"] == ds and r["metric"] != "accuracy")
        out += [
            f"## {ds} (test {metric}, mean +- std)",
            "",
            "| method | " + metric + " | per split |",
            "|---|---|---|",
        ]
        for m in table_methods(rows, ds):
            r = _get(rows, ds, m)
            assert r is not None
            acc = _get(rows, ds, m, "accuracy")
            acc_txt = f" (accuracy {acc['mean']:.3f})" if acc else ""
            out.append(
                f"| {m} | {r['mean']:.3f} +- {r['std']:.3f}{acc_txt} | "
                f"{' '.join(f'{v:.3f}' for v in r['folds'])} |"
            )
        up = uplift(rows, ds)
        if up is not None:
            out += ["", f"merge uplift vs best block: {up:+.3f}"]
        fig6 = [
            (s, _get(rows, ds, f"fig6:legomerge@{s:g}"), _get(rows, ds, f"fig6:ensemble@{s:g}"))
            for s in OVERLAPS
        ]
        if all(a and b for _, a, b in fig6):
            out += [
                "",
                "Figure 6 (blocks trained on patient sets with symmetric difference s):",
                "",
                "| s | legomerge | ensemble |",
                "|---|---|---|",
            ]
            out += [
                f"| {s:g} | {a['mean']:.3f} +- {a['std']:.3f} | {b['mean']:.3f} +- {b['std']:.3f} |"  # type: ignore[index]
                for s, a, b in fig6
            ]
        out.append("")
    return "\n".join(out)


def plots(results: Sequence[JobResult], rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """Bars with error bars per dataset; Kaplan-Meier curves of LegoMerge's low/high-risk groups
    (survival); ROC curves of LegoMerge and the blocks (classification). Pooled over splits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        methods = table_methods(rows, ds)
        vals = [_get(rows, ds, m) for m in methods]
        fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(methods)), 3.6))
        colors = [
            "tab:orange" if m.startswith(("legomerge", "legofuse")) else "tab:blue" for m in methods
        ]
        ax.bar(
            range(len(methods)),
            [v["mean"] for v in vals],  # type: ignore[index]
            yerr=[v["std"] for v in vals],  # type: ignore[index]
            color=colors,
            capsize=3,
        )
        ax.set_xticks(range(len(methods)), methods, rotation=40, ha="right", fontsize=8)
        lo = min(v["mean"] - v["std"] for v in vals)  # type: ignore[index]
        ax.set_ylim(max(0.0, lo - 0.05), 1.0)
        ax.set_ylabel(vals[0]["metric"])  # type: ignore[index]
        ax.set_title(f"{ds}: test metric, mean +- std over splits")
        fig.tight_layout()
        stem = re.sub(
            r"[^A-Za-z0-9_.-]", "_", Path(ds).name
        )  # a site data folder's name, not its path
        written.append(out / f"{stem}-bars.png")
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
        mine = [r for r in results if r.dataset == ds]
        if mine[0].metric == "c-index" and all("legomerge" in r.predictions for r in mine):
            written.append(_km_plot(mine, out / f"{stem}-km.png", plt))
        elif mine[0].metric == "auc":
            written.append(_roc_plot(mine, out / f"{stem}-roc.png", plt))
    return written


def _km_plot(results: Sequence[JobResult], path: Path, plt: Any) -> Path:
    from lifelines import KaplanMeierFitter

    groups: dict[str, tuple[list[float], list[bool]]] = {
        "low risk": ([], []),
        "high risk": ([], []),
    }
    for r in results:
        risk = np.asarray(r.predictions["legomerge"])
        high = risk > np.median(risk)  # split by each split's own test median
        for name, sel in (("low risk", ~high), ("high risk", high)):
            groups[name][0].extend(np.asarray(r.targets["time"])[sel].tolist())
            groups[name][1].extend(np.asarray(r.targets["event"])[sel].astype(bool).tolist())
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for name, (t, e) in groups.items():
        KaplanMeierFitter(label=f"{name} (n={len(t)})").fit(t, e).plot_survival_function(
            ax=ax, ci_show=True
        )
    ax.set_title(f"{results[0].dataset}: LegoMerge risk groups (test, pooled)")
    ax.set_xlabel("time")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _roc_plot(results: Sequence[JobResult], path: Path, plt: Any) -> Path:
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(4.5, 4))
    names = [
        m
        for m in results[0].predictions
        if m == "legomerge" or (m.startswith("block:") and m.count(":") == 1)
    ]
    for name in names:
        y = np.concatenate([np.asarray(r.targets["label"]) for r in results])
        p = np.concatenate([np.asarray(r.predictions[name]) for r in results])
        if p.shape[1] == 2:
            fpr, tpr, _ = roc_curve(y, p[:, 1])
        else:  # micro-averaged one-vs-rest
            onehot = np.eye(p.shape[1])[y]
            fpr, tpr, _ = roc_curve(onehot.ravel(), p.ravel())
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"{results[0].dataset}: ROC (test, pooled)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(results: Sequence[JobResult], meta: dict[str, Any], out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    rows = aggregate(results)
    doc = {"rows": rows, "meta": meta}
    (out / "results.json").write_text(json.dumps(doc, indent=1))
    (out / "results.md").write_text(markdown(rows, meta))
    meta["plots"] = [p.name for p in plots(results, rows, out)]
    (out / "results.json").write_text(json.dumps(doc, indent=1))
    return doc
