"""LegoFuse over the paired sites or over every site, judged in kept `mmlego simulate` runs of
development seeds: the same scenario and seed run twice, once with `fuse_sites = "paired"` and once
with `"all"` (`--set fuse_sites=all`), everything else equal.

For each run: the LegoFuse run's own out-of-fold evidence (the best round's gain over its parent
on consortium validation, with its standard error, and whether a fused version was kept); for each
scenario: `recommended` (per hospital) and `fuse` (the fused version if kept, else the merge it
started from) of `all` minus `paired` on every hospital's test patients (simulate.rescore: runs
with `compare = false` will do), with the paired 95 % interval over the seeds
(common.evaluation.paired). The choice of the default rests on
the out-of-fold evidence; the test figures of development seeds, which re-split the patients the
reported seeds test, say what it was worth there.

    python bench/fuse_sites_runs.py --paired DIR... --all DIR... [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from common.bench.main import write_result
from common.evaluation.paired import TestSet, compare_models
from simulate.rescore import KeptRun

KINDS = ("recommended", "fuse")


def fuse_evidence(run: Path) -> dict[str, Any]:
    report = json.loads((run / "report.json").read_text())
    fuse = report.get("fuse") or {}
    curve = fuse.get("curve") or []
    best = max(curve, key=lambda r: r["diff"], default=None)
    return {
        "scenario": report["scenario"],
        "seed": report["seed"],
        "kept": bool(fuse.get("model")),
        "rounds": len(curve),
        "best_gain": best["diff"] if best else None,
        "best_se": best["se_diff"] if best else None,
    }


def pair(a: Path, b: Path) -> TestSet:
    """Both runs' recommended versions (per hospital) and the version each LegoFuse run leaves
    (the fused one if kept, else its parent), scored on every hospital's test patients; the runs
    must test the same patients (checked)."""
    sets = []
    for folder in (a, b):
        with KeptRun(folder) as run:
            fused = (run.report.get("fuse") or {}).get("model") or run.report["merge"]["model"]
            sets.append(
                run.test_set(
                    {
                        "recommended": run.recommended(),
                        "fuse": {s: fused for s in run.views},
                    }
                )
            )
    x, y = sets
    if not x.same_patients(y):
        raise SystemExit(f"{a} and {b} test other patients; no paired comparison")
    scores = {f"all {k}": x.scores[k] for k in KINDS} | {f"paired {k}": y.scores[k] for k in KINDS}
    return TestSet(x.kind, x.n_classes, x.site, x.targets, scores)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--paired", type=Path, nargs="+", required=True)
    ap.add_argument("--all", type=Path, nargs="+", required=True)
    ap.add_argument("--out", type=Path, default=Path("docs/results/fuse-sites-dev.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    runs = {"paired": {}, "all": {}}
    folders: dict[str, dict[tuple[str, int], Path]] = {"paired": {}, "all": {}}
    for arm in ("paired", "all"):
        for run in getattr(args, arm):
            e = fuse_evidence(run)
            if e["seed"] < 100:
                raise SystemExit(f"{run}: seed {e['seed']} is a reported seed; use 100 and up")
            folders[arm][(e["scenario"], e["seed"])] = run
            runs[arm][f"{e['scenario']} seed {e['seed']}"] = e
    scenarios: dict[str, Any] = {}
    for name in sorted({s for s, _ in folders["paired"]}):
        seeds = sorted(k for s, k in folders["paired"] if s == name and (s, k) in folders["all"])
        if not seeds:
            continue
        tests = [pair(folders["all"][(name, k)], folders["paired"][(name, k)]) for k in seeds]
        row: dict[str, Any] = {"seeds": seeds}
        for arm in ("paired", "all"):
            ev = [runs[arm][f"{name} seed {k}"] for k in seeds]
            gains = [e["best_gain"] for e in ev if e["best_gain"] is not None]
            row[arm] = {
                "kept": sum(e["kept"] for e in ev),
                "best round's out-of-fold gain, mean": statistics.fmean(gains) if gains else None,
            }
        for kind in KINDS:
            (c,) = compare_models(tests, f"all {kind}", [f"paired {kind}"])
            row[f"{kind}: all minus paired"] = {"diff": c.diff, "low": c.low, "high": c.high}
            print(
                f"{name} seeds {seeds}: {kind} all minus paired {c.diff:+.4f} "
                f"[{c.low:+.4f}, {c.high:+.4f}]; kept paired {row['paired']['kept']}, "
                f"all {row['all']['kept']}"
            )
        scenarios[name] = row
    write_result(args.out, {"scenarios": scenarios, "runs": runs}, t0)


if __name__ == "__main__":
    main()
