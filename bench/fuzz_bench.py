"""The RPC fuzz at volume: the four input families of tests/coordinator/test_fuzz.py (random bytes,
mutated valid requests, path-like identifiers, upload chunk sequences; the same hypothesis
strategies, from tests/coordinator/fuzzing.py) with N inputs each against one running registry
(real mutual TLS on loopback, a task, a block, a merge version and an open evaluation job).
Prints per family the inputs, the answers by status code, anything stored and the time, then its
checks: no UNKNOWN, INTERNAL, UNAVAILABLE or deadline; no mutation with a path-like identifier;
nothing stored but the tasks that valid requests among the inputs asked for; at most one
evaluation report, and one that passes the checks. Exit status 1 if a check failed.

    nice -n 10 .venv/bin/python bench/fuzz_bench.py --inputs 10000 --out docs/results/fuzz.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests package of this checkout
from tests.coordinator.conftest import new_consortium
from tests.coordinator.fuzzing import FAMILIES, fuzz, fuzzed_registry
from tests.coordinator.storerows import reports_kept


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", type=int, default=10_000, help="inputs per family")
    ap.add_argument("--seed", type=int, default=0, help="the seed the inputs are drawn from")
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    ap.add_argument("--out", type=Path, help="write the figures as JSON")
    args = ap.parse_args()
    rows, failed = [], []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mmlego-fuzz-") as tmp:
        root = Path(tmp)
        (root / "consortium").mkdir()
        consortium = new_consortium(root / "consortium")
        (root / "registry").mkdir()
        with fuzzed_registry(consortium, root / "registry") as f:
            for family in args.families:
                tally = fuzz(f, family, args.inputs, args.seed, strict=False)
                print(tally.line(), flush=True)
                for line in tally.violations[:20] + tally.changes[:20]:
                    print(f"  {line}")
                rows.append(
                    {
                        "family": family,
                        "inputs": tally.inputs,
                        "statuses": dict(sorted(tally.statuses.items())),
                        "created_tasks": sorted(tally.created),
                        "violations": tally.violations,
                        "changes": tally.changes,
                        "seconds": round(tally.seconds, 1),
                    }
                )
                if tally.inputs < args.inputs:
                    failed.append(f"{family}: {tally.inputs} of {args.inputs} inputs tried")
                failed += [f"{family}: {v}" for v in tally.violations + tally.changes]
            reports = reports_kept(f.cfg)
    failed += reports
    checks = {
        f"every family tried {args.inputs} inputs": all(r["inputs"] >= args.inputs for r in rows),
        "no UNKNOWN, INTERNAL, UNAVAILABLE, deadline or path-like mutation": not any(
            r["violations"] for r in rows
        ),
        "nothing stored but tasks that valid requests asked for": not any(
            r["changes"] for r in rows
        ),
        "at most one evaluation report, and a possible one": not reports,
    }
    for name, ok in checks.items():
        print(f"check: {name}: {'yes' if ok else 'NO'}")
    total = time.perf_counter() - start
    print(f"{sum(r['inputs'] for r in rows)} inputs in {total:.0f} s (seed {args.seed})")
    if args.out:
        doc = {
            "command": "bench/fuzz_bench.py " + " ".join(sys.argv[1:]),
            "seed": args.seed,
            "families": rows,
            "checks": checks,
            "seconds": round(total, 1),
            "machine": machine(),
        }
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
    for line in failed[:40]:
        print(f"FAILED {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
