"""How a modality's blocks are best combined before the merge (hierarchical Lego), on development
seeds: kept `mmlego simulate` runs (seeds 100 and up) of a scenario with several blocks per
modality, every option made of the run's own accepted blocks afterwards and scored on every
hospital's test patients (simulate.rescore), each against the flat uniform merge and the flat
ensemble with the paired 95 % interval over the runs (common.evaluation.paired).

Options: the flat merge and ensemble of every block (what a site pays N blocks for); the merge
and ensemble of modality blocks that are parameter averages (common.lego.soup, what a site pays M
blocks for); and the flat merge and ensemble of a bounded subset of K blocks per modality (the
largest by training patients; a site pays M x K).

    python bench/hierarchy_options.py DIR... [--subset 4 16] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from common.bench.main import write_result
from common.evaluation.paired import compare_models
from common.lego.recipe import Recipe
from common.lego.soup import modality_groups
from common.serde import manifest_from_bytes
from simulate.rescore import KeptRun

REFERENCES = ("flat merge", "flat ensemble")  # every option is compared with both


def options(run: KeptRun, subsets: list[int]) -> dict[str, Any]:
    """Every option's model over the run's blocks."""
    blocks = run.blocks()
    ids = sorted(blocks)
    records = {r.block_id: r for r in run.store.blocks.latest(run.task.task_id)}
    mods = [records[i].modality for i in ids]
    groups = modality_groups(mods)
    every = [blocks[i] for i in ids]
    out: dict[str, Any] = {
        "flat merge": Recipe("merge").make(every),
        "flat ensemble": Recipe("ensemble").make(every),
        "soup merge": Recipe("merge", groups=groups).make(every),
        "soup ensemble": Recipe("ensemble", groups=groups).make(every),
    }
    size = {
        i: float(manifest_from_bytes(records[i].manifest).train_stats.get("n_train", 0))
        for i in ids
    }
    for k in subsets:
        chosen = [
            i
            for m in sorted(set(mods))
            for i in sorted((i for i in ids if records[i].modality == m), key=lambda i: -size[i])[
                :k
            ]
        ]
        part = [blocks[i] for i in chosen]
        out[f"{k} per modality, merge"] = Recipe("merge").make(part)
        out[f"{k} per modality, ensemble"] = Recipe("ensemble").make(part)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--subset", type=int, nargs="+", default=[4, 16])
    ap.add_argument("--out", type=Path, default=Path("docs/results/hierarchy-options-dev.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    tests, seeds, scenario = [], [], ""
    for folder in args.runs:
        report = json.loads((folder / "report.json").read_text())
        if int(report["seed"]) < 100:
            raise SystemExit(f"{folder}: seed {report['seed']} is a reported seed; use 100 and up")
        seeds.append(int(report["seed"]))
        scenario = report["scenario"]
        with KeptRun(folder) as run:
            made = options(run, args.subset)
            for name, model in made.items():
                run.add(name, model)
            tests.append(run.test_set({n: {s: n for s in run.views} for n in made}))
    rows: dict[str, dict[str, Any]] = {}
    for reference in REFERENCES:
        names = [n for n in tests[0].scores if n not in REFERENCES]
        names += [n for n in REFERENCES if n != reference]
        for c in compare_models(tests, reference, names):
            # compare_models gives the reference minus each option: kept as option minus it
            rows.setdefault(c.b, {})[f"minus {reference}"] = {
                "diff": -c.diff,
                "low": -c.high,
                "high": -c.low,
            }
            print(
                f"{scenario} seeds {seeds}: {c.b} minus {reference} {-c.diff:+.4f} "
                f"[{-c.high:+.4f}, {-c.low:+.4f}]"
            )
    write_result(args.out, {"scenario": scenario, "seeds": seeds, "options": rows}, t0)


if __name__ == "__main__":
    main()
