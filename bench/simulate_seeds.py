"""The honest comparison of docs/RESULTS.md section 6: `mmlego simulate --scenario S --seeds N` for
every built-in scenario (each seed: its own split, sites, training; every model measured on the
same test patients; every choice made on the sites' validation patients), their summaries
collected into one file, and the targets of issue 14 checked on the means.

    .venv/bin/python bench/simulate_seeds.py --seeds 5 --out docs/results/simulate.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SCENARIOS = ("ovarian-4", "nki70-3", "pbc-3", "ovarian-folders")


def run(scenario: str, seeds: int, folder: Path) -> dict[str, Any]:
    out = folder / scenario
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-c", "from common.cli import run; run()", "simulate", "--scenario", scenario,
                           "--seeds", str(seeds), "--out", str(out)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{scenario} failed:\n{done.stdout[-4000:]}\n{done.stderr[-3000:]}")
    summary = json.loads((out / "report.json").read_text())
    picks = []
    for seed in range(seeds):
        r = json.loads((out / f"seed-{seed}" / "report.json").read_text())
        v = r["merge"]["validation"]
        picks.append({"seed": seed, "merge": v.get("chosen"), "scored_by": v.get("scored_by", []),
                      "declined_by": v.get("declined_by", []),
                      "fuse": r["fuse"].get("model") or "not stored: " + r["fuse"].get("not_stored", "")[:160],
                      "recommended": r["recommended"].get("model"), "wall_s": round(sum(r["phases_s"].values()), 1)})
    return {"summary": summary["summary"], "per_site": summary["per_site"], "seeds": summary["seeds"], "runs": picks,
            "wall_s": round(time.monotonic() - t0, 1)}


RESOLUTION = 0.0005  # a mean "above" another by less than this is a tie (floating-point order, not a better model)


def targets(scenarios: dict[str, Any]) -> dict[str, Any]:
    """Issue 14's targets, on the means over seeds."""
    mean = {s: {r["kind"]: r["mean"] for r in v["summary"]} for s, v in scenarios.items()}
    out: dict[str, Any] = {"recommended >= best-block": {s: m["recommended"] - m["best-block"] for s, m in mean.items()},
                           "recommended >= merge-uniform - 0.005": {s: m["recommended"] - m["merge-uniform"] for s, m in mean.items()},
                           "merge >= ensemble - 0.01": {s: m["merge"] - m["ensemble"] for s, m in mean.items()},
                           "fuse >= merge-uniform": {s: m["fuse"] - m["merge-uniform"] for s, m in mean.items()},
                           "recommended - pooled": {s: m["recommended"] - m["pooled"] for s, m in mean.items() if "pooled" in m}}
    out["met"] = {"recommended >= best-block (all)": all(v >= 0 for v in out["recommended >= best-block"].values()),
                  "recommended >= merge-uniform - 0.005 (all)": all(v >= -0.005 for v in
                                                                   out["recommended >= merge-uniform - 0.005"].values()),
                  "recommended > merge-uniform (at least 2)": sum(v > RESOLUTION for v in
                                                                  out["recommended >= merge-uniform - 0.005"].values()) >= 2,
                  "merge >= ensemble - 0.01 (at least 3)": sum(v >= -0.01 for v in out["merge >= ensemble - 0.01"].values()) >= 3,
                  "fuse >= merge-uniform (at least 3)": sum(v >= 0 for v in out["fuse >= merge-uniform"].values()) >= 3}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--scenarios", nargs="+", default=list(SCENARIOS))
    ap.add_argument("--out", type=Path, default=Path("docs/results/simulate.json"))
    ap.add_argument("--keep", type=Path, default=None, help="keep the runs in this folder (default: a temporary one)")
    ap.add_argument("--targets-only", action="store_true", help="recompute the targets of an existing --out file")
    args = ap.parse_args()
    if args.targets_only:
        doc = json.loads(args.out.read_text())
        doc["targets"] = targets(doc["scenarios"])
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
        print(json.dumps(doc["targets"]["met"], indent=1))
        return
    scenarios: dict[str, Any] = {}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        for s in args.scenarios:
            scenarios[s] = run(s, args.seeds, folder)
            print(s, json.dumps({r["kind"]: round(r["mean"], 4) for r in scenarios[s]["summary"]}), flush=True)
    doc = {"command": "python bench/simulate_seeds.py " + " ".join(sys.argv[1:]),
           "machine": f"{platform.system()} {platform.processor() or platform.machine()}, {os.cpu_count()} cores, no GPU",
           "date": dt.date.today().isoformat(), "wall_s": round(time.monotonic() - t0, 1), "scenarios": scenarios,
           "targets": targets(scenarios)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc["targets"], indent=1))


if __name__ == "__main__":
    main()
