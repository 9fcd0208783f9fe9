"""What cross-fitting costs a site: one block trained with a validation split (``folds = 0``) and
with K folds (K fold copies in lockstep, then the block on every patient), the same data, the same
[train] settings, one thread, each in a fresh process so that nothing is warm. The blocks are
the hospitals' own of built-in scenarios (seed 0): the largest site of ovarian-4 (genes), nki70-3's
omics hospital, support2-5's sepsis ICU (physiology) and, in memory, slides-3's slide hospital
(per-slide files read lazily: the bag path).

    .venv/bin/python bench/crossfit_bench.py --out docs/results/crossfit.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CASES = (
    ("ovarian-4", "hosp-16", "genes"),
    ("nki70-3", "hosp-omics", "genes"),
    ("support2-5", "hosp-sepsis", "physiology"),
    ("slides-3", "hosp-slides", "slides"),
)
CHILD = """
import json, sys, time, torch
torch.set_num_threads(1)
from simulate.run import block_training, task_record
from simulate.scenario import load_scenario, partition
scenario, site, modality, folds, quick = (
    sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "1"
)
scn = load_scenario(scenario)
scn = scn.quick() if quick else scn
part = partition(scn)
try:
    task = task_record(scn, part)
    from common.train.siteblock import train_modality
    t0 = time.perf_counter()
    out = train_modality(
        part.sites[site], modality, task, block_training(scn),
        min_cell=scn.spec.min_cell_size, folds=folds,
    )
    seconds = time.perf_counter() - t0
    print(json.dumps({
        "seconds": seconds, "epochs": out.best_epoch, "stats": out.stats,
        "patients": len(part.sites[site]),
    }))
finally:
    part.close()
"""


def one(scenario: str, site: str, modality: str, folds: int, quick: bool) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, scenario, site, modality, str(folds), "1" if quick else "0"],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    if done.returncode != 0:
        raise SystemExit(
            f"{scenario} {site} {modality} folds={folds} failed:\n{done.stderr[-3000:]}"
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("docs/results/crossfit.json"))
    ap.add_argument(
        "--quick", action="store_true", help="the scenarios' --quick settings (a smoke run)"
    )
    args = ap.parse_args()
    rows = []
    t0 = time.monotonic()
    for scenario, site, modality in CASES:
        split = one(scenario, site, modality, 0, args.quick)
        crossed = one(scenario, site, modality, args.folds, args.quick)
        rows.append(
            {
                "scenario": scenario,
                "site": site,
                "modality": modality,
                "patients": split["patients"],
                "split_s": round(split["seconds"], 2),
                "split_epochs_run": split["stats"].get("epochs"),
                "crossfit_s": round(crossed["seconds"], 2),
                "crossfit_epochs": crossed["epochs"],
                "ratio": round(crossed["seconds"] / split["seconds"], 2),
                "split_val_metric": split["stats"].get("val_metric"),
                "oof_metric": crossed["stats"].get("val_metric"),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    doc = {
        "command": "python bench/crossfit_bench.py " + " ".join(sys.argv[1:]),
        "folds": args.folds,
        "machine": f"{platform.system()} {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, no GPU",
        "date": dt.date.today().isoformat(),
        "wall_s": round(time.monotonic() - t0, 1),
        "rows": rows,
        "target": {"at most 6x the split's time": all(r["ratio"] <= 6.0 for r in rows)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc["target"]))


if __name__ == "__main__":
    main()
