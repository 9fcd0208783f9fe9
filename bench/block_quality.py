"""Block quality on development seeds: what a block's training settings are worth, judged only by
each hospital's own out-of-fold metric (cross-fitting, as its daemon computes it), never by a test
patient. For every built-in scenario asked for and every development seed, each hospital's
patients are dealt as `mmlego simulate` deals them (``partition``), and each of its blocks is
trained once per setting variant (learning rate, epoch budget, width, depth, tokens, batch); the
out-of-fold metric of every block under every variant is kept, and each variant is compared with
the scenario's default on the same blocks (paired: the mean difference over blocks and seeds with
a 95 % t interval).

    .venv/bin/python bench/block_quality.py --scenarios ovarian-4 pbc-3 nki70-3 \\
        --seeds 100 101 102 --out docs/results/block-quality-dev.json

Development seeds 100+ re-split the *same* patients as the reported seeds 0-4 (other folds, other
hospitals' draws where a scenario deals patients at random): they are not independent data, and
the docs say so wherever a choice made on them is reported.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

from common.bench.main import write_result

VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "lr 3e-4": {"lr": 3e-4},
    "lr 3e-3": {"lr": 3e-3},
    "epochs x2": {"epochs": 2, "patience": 2},  # factors of the scenario's budget
    "token_dim 128": {"token_dim": 128},
    "token_dim 32": {"token_dim": 32},
    "depth 1": {"depth": 1},
    "depth 3": {"depth": 3},
    "n_tokens 8": {"n_tokens": 8},
    "batch x2": {"batch_size": 2},  # a factor of the scenario's batch size
}
FACTORS = ("epochs", "patience", "batch_size")  # variant values that multiply the scenario's


def t95(n: int) -> float:
    """The two-sided 95 % t quantile for n - 1 degrees of freedom (a table: no SciPy needed)."""
    table = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}
    return table.get(n - 1, 2.0 if n - 1 >= 30 else 2.1)


def blocks_of(name: str, seed: int, variants: list[str]) -> list[dict[str, Any]]:
    """Every block of every hospital of scenario ``name`` at ``seed``, trained under each variant:
    its out-of-fold metric (nan where the site could not cross-fit it)."""
    from common.train.siteblock import train_modality
    from simulate.run import block_training, task_record
    from simulate.scenario import load_scenario, partition

    scn = load_scenario(name).with_seed(seed)
    part = partition(scn)
    try:
        task = task_record(scn, part)
        base = block_training(scn)
        rows = []
        for site in scn.spec.sites:
            data = part.sites[site.name]
            for m in site.modalities:
                if m not in data.modalities or not bool(data.modalities[m].present.any()):
                    continue
                row: dict[str, Any] = {"site": site.name, "modality": m, "seed": seed}
                for v in variants:
                    change = {
                        k: (getattr(base, k) * x if k in FACTORS else x)
                        for k, x in VARIANTS[v].items()
                    }
                    t0 = time.perf_counter()
                    trained = train_modality(
                        data,
                        m,
                        task,
                        base.model_copy(update=change),
                        min_cell=scn.spec.min_cell_size,
                        folds=scn.spec.folds,
                    )
                    row[v] = {
                        "oof": trained.val_metric,
                        "epochs": trained.best_epoch,
                        "seconds": round(time.perf_counter() - t0, 1),
                    }
                print(name, seed, site.name, m, {v: round(row[v]["oof"], 4) for v in variants})
                rows.append(row)
        return rows
    finally:
        part.close()


def compare(rows: list[dict[str, Any]], variants: list[str]) -> dict[str, Any]:
    """Each variant against the default on the same blocks: mean out-of-fold metric, and the mean
    paired difference with its 95 % t interval over blocks x seeds."""
    out = {}
    for v in variants:
        pairs = [
            (r[v]["oof"], r["default"]["oof"])
            for r in rows
            if math.isfinite(r[v]["oof"]) and math.isfinite(r["default"]["oof"])
        ]
        if not pairs:
            continue
        d = [a - b for a, b in pairs]
        mean = statistics.fmean(d)
        half = t95(len(d)) * statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else math.nan
        out[v] = {
            "mean_oof": round(statistics.fmean(a for a, _ in pairs), 4),
            "minus_default": round(mean, 4),
            "low": round(mean - half, 4),
            "high": round(mean + half, 4),
            "blocks": len(d),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenarios", nargs="+", default=["ovarian-4", "pbc-3", "nki70-3"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[100, 101, 102])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--out", type=Path, default=Path("docs/results/block-quality-dev.json"))
    args = ap.parse_args()
    if min(args.seeds) < 100:
        ap.error("development seeds only: 100 and above (seeds 0-4 are the reported ones)")
    variants = ["default", *[v for v in args.variants if v != "default"]]
    t0 = time.perf_counter()
    doc: dict[str, Any] = {"scenarios": {}}
    for name in args.scenarios:
        rows = [r for s in args.seeds for r in blocks_of(name, s, variants)]
        doc["scenarios"][name] = {"blocks": rows, "variants": compare(rows, variants)}
        print(name, json.dumps(doc["scenarios"][name]["variants"], indent=1), flush=True)
    write_result(args.out, doc, t0)


if __name__ == "__main__":
    main()
