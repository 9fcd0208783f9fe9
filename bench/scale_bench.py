"""Scale of a simulated consortium: `mmlego simulate --scenario scale --sites N` for several N
(synthetic data, every site a real daemon process on loopback). Reports wall time (whole run and
per phase, choosing the merge with every site scoring the candidates among them), the
coordinator's peak memory and the sites' peak memory, and how they grow with N.

    .venv/bin/python bench/scale_bench.py --sites 10 25 50 --out docs/results/scale.json
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def one(n: int, folder: Path) -> dict[str, Any]:
    out = folder / f"scale-{n}"
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-c", "from common.cli import run; run()", "simulate", "--scenario", "scale",
                           "--sites", str(n), "--out", str(out)], capture_output=True, text=True)
    wall = time.monotonic() - t0
    if done.returncode != 0:
        raise SystemExit(f"N={n} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    report = json.loads((out / "report.json").read_text())
    sites = [v for k, v in report["peak_rss_mb"].items() if k.startswith("site ")]
    v = report["merge"]["validation"]
    return {"sites": n, "wall_s": round(wall, 1), "phases_s": report["phases_s"],
            "coordinator_peak_mb": report["peak_rss_mb"]["coordinator"], "superlink_peak_mb": report["peak_rss_mb"].get("superlink"),
            "site_peak_mb_max": max(sites), "site_peak_mb_mean": round(sum(sites) / len(sites), 1),
            "sites_peak_mb_sum": round(sum(sites), 1), "site_evaluate_peak_mb": report["peak_rss_mb"].get("site evaluate (max)"),
            "merge_candidates": len(v.get("candidates", [])), "merge_chosen": v.get("chosen"),
            "merge_scored_by": len(v.get("scored_by", [])), "merge_declined_by": len(v.get("declined_by", [])),
            "fuse": report["fuse"].get("model") or "not stored", "checks": report["checks"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sites", type=int, nargs="+", default=[10, 25, 50])
    ap.add_argument("--out", type=Path, default=Path("docs/results/scale.json"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sites:
            rows.append(one(n, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
                                    "command": " ".join(sys.argv), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
