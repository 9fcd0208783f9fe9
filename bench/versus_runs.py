"""One kind of two kept runs of the same scenarios and seeds, paired on the same test patients:
e.g. issue 26's `recommended` against issue 24's, from two `bench/simulate_seeds.py --keep`
folders. Each seed's test-scores.npz of both runs must hold the same patients in the same order
(the same hospitals and targets, checked); the difference of the within-site metric and its 95 %
interval combine the seeds as `mmlego simulate --seeds` does (common.evaluation.paired).

    python bench/versus_runs.py NEW OLD --scenarios ovarian-4 pbc-3 [--kind recommended]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common.bench.main import write_result
from common.evaluation.paired import TestSet, compare_models
from simulate.render import SCORES, load_measured


def paired(new: Path, old: Path, kind: str) -> TestSet:
    a, b = load_measured(new / SCORES).summary, load_measured(old / SCORES).summary
    if a is None or b is None:
        raise SystemExit(f"{new} or {old}: no summary test set")
    if not a.same_patients(b):
        raise SystemExit(f"{new} and {old} test other patients; no paired comparison")
    return TestSet(
        a.kind, a.n_classes, a.site, a.targets, {"new": a.scores[kind], "old": b.scores[kind]}
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("new", type=Path, help="the --keep folder of the newer runs")
    ap.add_argument("old", type=Path, help="the --keep folder of the older runs")
    ap.add_argument("--scenarios", nargs="+", required=True)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument(
        "--first-seed", type=int, default=0, help="the seeds' first (development seeds: 100)"
    )
    ap.add_argument("--kind", default="recommended")
    ap.add_argument("--out", type=Path, default=Path("docs/results/versus-runs.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows = {}
    for s in args.scenarios:
        tests = [
            paired(args.new / s / f"seed-{k}", args.old / s / f"seed-{k}", args.kind)
            for k in range(args.first_seed, args.first_seed + args.seeds)
        ]
        (c,) = compare_models(tests, "new", ["old"])
        rows[s] = {
            "new minus old": c.diff,
            "low": c.low,
            "high": c.high,
            "seeds": list(range(args.first_seed, args.first_seed + args.seeds)),
        }
        print(f"{s}: {args.kind} new minus old {c.diff:+.4f} [{c.low:+.4f}, {c.high:+.4f}]")
    write_result(args.out, {"kind": args.kind, "scenarios": rows}, t0)


if __name__ == "__main__":
    main()
