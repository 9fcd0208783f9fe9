"""Scale of a simulated consortium: `mmlego simulate --scenario scale --sites N` for several N
(synthetic data), on either engine: ``processes`` (every site a real daemon process on loopback)
or ``ray`` (the sites' training and evaluation as Ray tasks, LegoFuse on Flower's simulation
engine, a local Ray instance started by each run). Reports wall time (whole run and per phase,
the merge chosen with every site scoring the candidates, one LegoFuse round scored by every site),
the peak resident memory of all the run's processes together (sampled every 2 s at most;
``peak_rss_mb_total`` counts a shared page in every process that maps it, ``peak_pss_mb_total``
once), the largest processes, the largest peak of one Ray worker (what a participating site's
training, scoring or LegoFuse client needs), the size of one LegoFuse round message, whether every
scoring site answered the merge's jobs and the round's, and the marginal cost of a site (wall
time added per site from the previous row; the first row: wall time / sites).

    .venv/bin/python bench/scale_bench.py --engine processes --sites 10 25 50 \\
        --out docs/results/scale.json
    .venv/bin/python bench/scale_bench.py --engine ray --sites 100 250 500 1000 \\
        --out docs/results/scale-ray.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from simulate.fleet import LARGEST_WORKER

TOTAL = "total (all the run's processes at once)"
PSS = "total, shared pages counted once (PSS)"


def one(n: int, engine: str, folder: Path) -> dict[str, Any]:
    out = folder / f"scale-{engine}-{n}"
    t0 = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from common.cli import run; run()",
            "simulate",
            "--scenario",
            "scale",
            "--sites",
            str(n),
            "--engine",
            engine,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - t0
    if done.returncode != 0:
        raise SystemExit(f"N={n} ({engine}) failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    report = json.loads((out / "report.json").read_text())
    peaks = report["peak_rss_mb"]
    v = report["merge"]["validation"]
    # who scored the round: a stored fused version's validation, else the round's curve entry
    fuse = report["fuse"]
    curve = [c for c in fuse.get("curve") or fuse.get("card", {}).get("curve") or [] if c]
    fuse_scorers = curve[-1].get("sites", []) if curve else []
    return {
        "sites": n,
        "engine": engine,
        "wall_s": round(wall, 1),
        "peak_rss_mb_total": peaks[TOTAL],
        "peak_pss_mb_total": peaks.get(PSS),
        "phases_s": report["phases_s"],
        "coordinator_peak_mb": peaks["coordinator"],
        "largest_processes_mb": dict(
            sorted(
                ((k, p) for k, p in peaks.items() if k not in (TOTAL, PSS, LARGEST_WORKER)),
                key=lambda kv: -kv[1],
            )[:5]
        ),
        "largest_worker_mb": peaks.get(LARGEST_WORKER),
        "round_message_mb": round(report.get("round_bytes", 0) / 2**20, 3),
        "scorers": report["description"].split("(")[-1],
        "merge_candidates": len(v.get("candidates", [])),
        "merge_chosen": v.get("chosen"),
        "merge_scored_by": len(v.get("scored_by", [])),
        "merge_declined_by": len(v.get("declined_by", [])),
        "fuse_scored_by": len(fuse_scorers),
        "fuse": report["fuse"].get("model") or "not stored",
        "checks": report["checks"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", choices=["processes", "ray"], default="processes")
    ap.add_argument("--sites", type=int, nargs="+", default=[10, 25, 50])
    ap.add_argument("--out", type=Path, default=Path("docs/results/scale.json"))
    args = ap.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sorted(args.sites):
            row = one(n, args.engine, Path(tmp))
            prev = rows[-1] if rows else None
            row["per_site_s"] = round(
                (row["wall_s"] - prev["wall_s"]) / (n - prev["sites"])
                if prev
                else row["wall_s"] / n,
                3,
            )
            rows.append(row)
            print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": f"{platform.processor() or platform.machine()}, {platform.system()}, "
                f"{os.cpu_count()} CPUs",
                "command": " ".join(sys.argv),
                "per_site_s": (
                    "wall time added per site since the previous row (first row: wall / sites)"
                ),
                "rows": rows,
            },
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
