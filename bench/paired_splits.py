"""Paired differences between two methods of a benchmark file whose rows hold one test metric per
split (``mmlego bench``'s docs/results/bench.json: ``rows[].folds``; the privacy benchmark's
docs/results/privacy.json: ``rows[].splits``): the mean of the per-split differences and its 95 %
interval (Student's t over the splits). The splits re-split the same patients, so the interval
shows how much the difference moves from one split (and training run) to the next; it is not a
resampling of new patients.

    .venv/bin/python bench/paired_splits.py docs/results/bench.json legomerge ensemble
    # every comparison docs/RESULTS.md cites
    .venv/bin/python bench/paired_splits.py docs/results/bench.json --all
    # each DP block minus its non-DP block
    .venv/bin/python bench/paired_splits.py docs/results/privacy.json --privacy
    # R x E fine-tuning minus the merge it starts from
    .venv/bin/python bench/paired_splits.py docs/results/fuse.json --fuse
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any

# The comparisons docs/RESULTS.md section 1 states a winner or loser for: (a, b) as method names.
CITED = (
    ("legomerge", "block"),
    ("legomerge", "ensemble"),
    ("merge-chosen", "legomerge"),
    ("merge-chosen", "ensemble"),
    ("legofuse-stack", "late-concat"),
    ("legofuse-stack", "early-fusion"),
    ("legomerge", "classical"),
    ("legofuse-stack", "classical"),
)


def values(rows: list[dict[str, Any]], dataset: str, method: str) -> list[float] | None:
    """The per-split values of ``method`` (``block``: the better block on the mean, as the table's
    best block)."""
    mine = [
        r
        for r in rows
        if r["dataset"] == dataset
        and (r["method"] == method or (method == "block" and r["method"].startswith("block:")))
    ]
    if not mine:
        return None
    best = max(mine, key=lambda r: r["mean"])
    return [float(x) for x in best.get("folds") or best.get("splits")]


def paired(a: list[float], b: list[float]) -> dict[str, float]:
    d = [x - y for x, y in zip(a, b, strict=True)]
    mean = statistics.mean(d)
    if len(d) < 2:
        return {"diff": mean, "low": math.nan, "high": math.nan, "splits": len(d)}
    from scipy.stats import t

    half = float(t.ppf(0.975, len(d) - 1)) * statistics.stdev(d) / math.sqrt(len(d))
    return {
        "diff": round(mean, 4),
        "low": round(mean - half, 4),
        "high": round(mean + half, 4),
        "splits": len(d),
    }


def privacy(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Each block at each epsilon minus the same block without DP, paired by split (``runs``)."""
    by: dict[tuple[str, str, float], dict[int, float]] = {}
    for r in doc["runs"]:
        if r.get("settings"):
            continue
        by.setdefault((r["dataset"], r["modality"], float(r["epsilon"])), {})[int(r["split"])] = (
            float(r["test"])
        )
    out = []
    for (dataset, modality, eps), got in sorted(by.items()):
        if math.isinf(eps):
            continue
        plain = by.get((dataset, modality, math.inf), {})
        common = sorted(set(got) & set(plain))
        out.append(
            {
                "dataset": dataset,
                "modality": modality,
                "epsilon": eps,
                **paired([got[k] for k in common], [plain[k] for k in common]),
            }
        )
        print(
            f"{dataset:<8} {modality:<9} eps {eps:g} - no DP: {out[-1]['diff']:+.4f} "
            f"[{out[-1]['low']:+.4f}, {out[-1]['high']:+.4f}] ({out[-1]['splits']} splits)"
        )
    return out


def fuse(doc: dict[str, Any]) -> None:
    """Centralized fine-tuning (R x E epochs) minus the LegoMerge it starts from, per dataset,
    paired by split."""
    rows = [r for r in doc["rows"] if r["method"] == "centralized"]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == dataset]
        d = paired([r["test"] for r in mine], [r["merge_test"] for r in mine])
        print(
            f"{dataset:<8} fine-tuned - merge: {d['diff']:+.4f} "
            f"[{d['low']:+.4f}, {d['high']:+.4f}] ({d['splits']} splits)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", type=Path)
    ap.add_argument("a", nargs="?")
    ap.add_argument("b", nargs="?")
    ap.add_argument(
        "--all", action="store_true", help="every comparison docs/RESULTS.md section 1 cites"
    )
    ap.add_argument(
        "--privacy",
        action="store_true",
        help="a privacy benchmark file: every DP block minus its non-DP block",
    )
    ap.add_argument(
        "--fuse",
        action="store_true",
        help="the fuse benchmark file: fine-tuning minus the merge it starts from",
    )
    args = ap.parse_args()
    doc = json.loads(args.file.read_text())
    if args.fuse:
        fuse(doc)
        return
    if args.privacy:
        privacy(doc)
        return
    rows = doc["rows"]
    pairs = CITED if args.all else [(args.a, args.b)]
    out = []
    for a, b in pairs:
        for dataset in dict.fromkeys(r["dataset"] for r in rows):
            va, vb = values(rows, dataset, a), values(rows, dataset, b)
            if va is None or vb is None:
                continue
            out.append({"a": a, "b": b, "dataset": dataset, **paired(va, vb)})
            print(
                f"{dataset:<8} {a} - {b}: {out[-1]['diff']:+.4f} "
                f"[{out[-1]['low']:+.4f}, {out[-1]['high']:+.4f}] "
                f"({out[-1]['splits']} splits)"
            )


if __name__ == "__main__":
    main()
