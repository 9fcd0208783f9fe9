"""Hierarchical against flat Lego, judged in kept `mmlego simulate` runs: the same scenario and seed
run once per arm (`--set hierarchy=flat`, `--set hierarchy=modality`, and optionally `auto`), every
other setting equal, so the hospitals train the same blocks and the arms differ only in the recipes
the merge may choose from.

For each run: the candidate the sites' validation chose and the merge phase's seconds; for each
scenario: `recommended` (per hospital) of every other arm minus `flat`, on every hospital's test
patients (simulate.rescore: runs with `compare = false` will do; the runs must test the same
patients, checked), with the paired 95 % interval over the seeds (common.evaluation.paired).

    python bench/hierarchy_runs.py --arm flat DIR... --arm modality DIR... [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from common.bench.main import write_result
from common.evaluation.paired import TestSet, compare_models
from simulate.rescore import KeptRun

MERGE_PHASE = "merge (sites score the candidates)"


def evidence(run: Path) -> dict[str, Any]:
    report = json.loads((run / "report.json").read_text())
    merge = report.get("merge") or {}
    return {
        "scenario": report["scenario"],
        "seed": report["seed"],
        "chosen": (report.get("validation") or {}).get("chosen") or merge.get("chosen"),
        "recipe": merge.get("recipe"),
        "merge_s": (report.get("phases_s") or {}).get(MERGE_PHASE),
    }


def arms_test_set(runs: dict[str, Path]) -> TestSet:
    """Each arm's recommended versions (per hospital) on every hospital's test patients."""
    sets = {}
    for arm, folder in runs.items():
        with KeptRun(folder) as run:
            sets[arm] = run.test_set({"recommended": run.recommended()})
    first = next(iter(sets.values()))
    for arm, other in sets.items():
        if not first.same_patients(other):
            raise SystemExit(f"{runs[arm]} tests other patients than the first arm's run")
    scores = {arm: t.scores["recommended"] for arm, t in sets.items()}
    return TestSet(first.kind, first.n_classes, first.site, first.targets, scores)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--arm",
        nargs="+",
        action="append",
        required=True,
        metavar=("NAME", "DIR"),
        help="an arm's name (flat first: the reference) and its kept runs",
    )
    ap.add_argument("--out", type=Path, default=Path("docs/results/hierarchy.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    names = [a[0] for a in args.arm]
    if len(names) < 2 or len(set(names)) != len(names) or any(len(a) < 2 for a in args.arm):
        ap.error("give two or more arms, each a distinct name and at least one run folder")
    folders: dict[str, dict[tuple[str, int], Path]] = {n: {} for n in names}
    runs: dict[str, dict[str, Any]] = {n: {} for n in names}
    for name, *dirs in args.arm:
        for d in map(Path, dirs):
            e = evidence(d)
            folders[name][(e["scenario"], e["seed"])] = d
            runs[name][f"{e['scenario']} seed {e['seed']}"] = e
    reference = names[0]
    scenarios: dict[str, Any] = {}
    for scenario in sorted({s for s, _ in folders[reference]}):
        seeds = sorted(
            k
            for s, k in folders[reference]
            if s == scenario and all((s, k) in folders[n] for n in names)
        )
        if not seeds:
            continue
        tests = [arms_test_set({n: folders[n][(scenario, k)] for n in names}) for k in seeds]
        row: dict[str, Any] = {"seeds": seeds}
        for arm in names[1:]:
            (c,) = compare_models(tests, arm, [reference])
            row[f"{arm} minus {reference}"] = {"diff": c.diff, "low": c.low, "high": c.high}
            print(
                f"{scenario} seeds {seeds}: {arm} minus {reference} {c.diff:+.4f} "
                f"[{c.low:+.4f}, {c.high:+.4f}]"
            )
        scenarios[scenario] = row
    write_result(args.out, {"scenarios": scenarios, "runs": runs}, t0)


if __name__ == "__main__":
    main()
