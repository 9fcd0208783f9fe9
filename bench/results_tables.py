"""The tables of docs/RESULTS.md section 6, written from the benchmark files (nothing typed by
hand): every kind's test metric with ``recommended`` minus it and its paired 95 % interval, the gain
from joining per hospital, what the consortium chose, and the standard error of the uniform merge's
consortium validation with cross-fitting against a 15 % split on the same seeds.

    .venv/bin/python bench/results_tables.py docs/results/simulate.json \\
        docs/results/simulate-split.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

ORDER = (
    "best-block",
    "ensemble",
    "merge-uniform",
    "merge",
    "fuse",
    "recommended",
    "local",
    "baseline",
    "baseline-paired",
    "ceiling",
    "ceiling-fuse",
    "ceiling-ensemble",
    "ceiling-e2e",
    "ceiling-classical",
)


def f(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def interval(c: dict[str, Any] | None) -> str:
    if c is None or None in (c["diff"], c["low"], c["high"]):
        return "-"
    return f"{c['diff']:+.3f} [{c['low']:+.3f}, {c['high']:+.3f}]"


def summary(name: str, s: dict[str, Any]) -> list[str]:
    by = {c["b"]: c for c in s["comparisons"]}
    rows = {r["kind"]: r for r in s["summary"]}
    patients = next(iter(rows.values()))["patients"] if rows else 0
    out = [
        f"**{name}** ({patients:.0f} test patients over {len(s['seeds'])} seeds; "
        f"{s['metric']}, within-site):",
        "",
        "| kind | mean +- std over seeds | recommended minus it [95 % interval] |",
        "|---|---|---|",
    ]
    for k in ORDER:
        if k in rows:
            r = rows[k]
            out.append(
                f"| {k} | {f(r['mean'])} +- {f(r['std'])} | "
                f"{'-' if k == 'recommended' else interval(by.get(k))} |"
            )
    return [*out, ""]


def joining(name: str, s: dict[str, Any]) -> list[str]:
    out = [
        f"| {name} | site | test patients | local | recommended | recommended minus local |",
        "|---|---|---|---|---|---|",
    ]
    for site in s["per_site"]:
        v = {r["kind"]: r["mean"] for r in site["rows"]}
        c = next((c for c in site["comparisons"] if c["b"] == "local"), None)
        out.append(
            f"| | {site['site']} | {site['patients']:.0f} | {f(v.get('local'))} | "
            f"{f(v.get('recommended'))} | {interval(c)} |"
        )
    return [*out, ""]


def chosen(name: str, s: dict[str, Any]) -> str:
    runs = s["runs"]
    merges = ", ".join(str(r["merge"]) for r in runs)
    fused = sum(not str(r["fuse"]).startswith("not stored") for r in runs)
    declined = sorted({d for r in runs for d in r["declined_by"]})
    scored = min(len(r["scored_by"]) for r in runs)
    own: dict[str, int] = {}
    for r in runs:
        for site in r.get("for_sites", {}):
            own[site] = own.get(site, 0) + 1
    return (
        f"- {name}: merge chosen {merges}; a fused version kept in {fused} of {len(runs)} runs; "
        f"at least {scored} hospitals scored every merge"
        + (f"; declined: {', '.join(declined)}" if declined else "; none declined")
        + (
            "; a hospital's own version recommended: "
            + ", ".join(f"{s} in {n} of {len(runs)}" for s, n in sorted(own.items()))
            if own
            else ""
        )
    )


def uniform_se(s: dict[str, Any]) -> list[float | None]:
    out = []
    for r in s["runs"]:
        row = next((c for c in r["validation"]["candidates"] if c["candidate"] == "uniform"), None)
        out.append(None if row is None else row.get("se"))
    return out


def se_table(cross: dict[str, Any], split: dict[str, Any]) -> list[str]:
    out = [
        "| scenario | seed | uniform merge's validation SE, cross-fitting "
        "| with a validation split | ratio |",
        "|---|---|---|---|---|",
    ]
    for name in split["scenarios"]:
        if name not in cross["scenarios"]:
            continue
        a = dict(
            zip(
                cross["scenarios"][name]["seeds"], uniform_se(cross["scenarios"][name]), strict=True
            )
        )
        b = dict(
            zip(
                split["scenarios"][name]["seeds"], uniform_se(split["scenarios"][name]), strict=True
            )
        )
        for seed in sorted(
            set(a) & set(b)
        ):  # the same seeds: the same patients, the same test folds
            x, y = a[seed], b[seed]
            ratio = f"{y / x:.1f}x" if x and y else "-"
            out.append(
                f"| {name} | {seed} | {f(x, 4)} | "
                f"{'declined by every site' if y is None else f(y, 4)} | {ratio} |"
            )
        known = [(a[k], b[k]) for k in sorted(set(a) & set(b)) if a[k] and b[k]]
        if known:
            out.append(
                f"| {name} | mean | {statistics.mean(x for x, _ in known):.4f} | "
                f"{statistics.mean(y for _, y in known):.4f} | "
                f"{statistics.mean(y for _, y in known) / statistics.mean(x for x, _ in known):.1f}"
                "x |"
            )
    return [*out, ""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cross", type=Path)
    ap.add_argument("split", type=Path, nargs="?")
    args = ap.parse_args()
    cross = json.loads(args.cross.read_text())
    lines: list[str] = []
    for name, s in cross["scenarios"].items():
        lines += summary(name, s)
    for name, s in cross["scenarios"].items():
        lines += joining(name, s)
    lines += [chosen(name, s) for name, s in cross["scenarios"].items()] + [""]
    if args.split:
        lines += se_table(cross, json.loads(args.split.read_text()))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
