"""The per-hospital rule's z on development seeds: which version each hospital would be recommended
at each z, and what that does on its test patients, from kept `mmlego simulate` runs.

A hospital is recommended another stored version than the consortium's where its own out-of-fold
scores favour it by more than z standard errors (coordinator.recommend). Each run's store is read
(a copy), the rule applied again at every z of ``--z``, and every version it gives a hospital
scored on that hospital's test patients (simulate.rescore: runs with `compare = false` will do).
Only z at or above the run's own (1) can be replayed: a lower z would have published other
versions at the merge. Each z is compared with the consortium's version for every hospital (the
rule switched off): the within-site metric over every hospital's test patients, with its paired
95 % interval, the seeds combined as `simulate --seeds` combines them (common.evaluation.paired).

    python bench/site_z.py RUN_DIR... [--z 1 1.5 2 3] [--out docs/results/site-z-dev.json]

Use development seeds only (`--set seed=100` and up; checked): a z chosen on the seeds a table
reports would have seen their test patients. The development seeds re-split the same patients."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from common.bench.main import write_result
from common.evaluation.paired import TestSet, compare_models
from coordinator.recommend import recommend
from simulate.rescore import KeptRun


def replay(folder: Path, zs: list[float]) -> tuple[str, TestSet, dict[str, Any]]:
    """The run's scenario, every hospital's test patients scored by the rule at every z
    (``z=...``) and by the consortium's version (``consortium``), and who was given what."""
    with KeptRun(folder) as run:
        if int(run.report["seed"]) < 100:
            raise SystemExit(f"{folder}: seed {run.report['seed']} is a reported seed")
        task = run.task.task_id
        consortium = recommend(run.store, task).model.model_id
        chosen = {"consortium": {s: consortium for s in run.views}}
        given: dict[str, dict[str, str]] = {}
        for z in zs:
            by_site = {s: recommend(run.store, task, s, z).model.model_id for s in run.views}
            chosen[f"z={z:g}"] = by_site
            given[f"{z:g}"] = {s: m for s, m in by_site.items() if m != consortium}
        # where the rule fired: the version minus the consortium's on that hospital's patients,
        # with its paired interval
        fired = {}
        for z, by_site in given.items():
            for site, model in by_site.items():
                view = run.views[site]
                one = TestSet(
                    run.task.spec.kind,
                    run.task.spec.n_classes if run.task.spec.kind == "classification" else 0,
                    np.full(len(view), site),
                    {k: np.asarray(v) for k, v in view.targets().items()},
                    {"own": run.scores(model, site), "consortium": run.scores(consortium, site)},
                )
                (c,) = compare_models([one], "own", ["consortium"])
                fired[f"z={z} {site}"] = {
                    "version": model,
                    "test gain": c.diff,
                    "low": c.low,
                    "high": c.high,
                    "patients": len(view),
                }
        detail = {
            "seed": run.report["seed"],
            "consortium": consortium,
            "given": given,
            "fired": fired,
        }
        return run.report["scenario"], run.test_set(chosen), detail


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", type=Path, nargs="+", help="kept run folders (development seeds)")
    ap.add_argument("--z", type=float, nargs="+", default=[1.0, 1.5, 2.0, 3.0])
    ap.add_argument("--out", type=Path, default=Path("docs/results/site-z-dev.json"))
    args = ap.parse_args()
    if min(args.z) < 1.0:
        raise SystemExit("--z below 1 cannot be replayed: the runs published versions at z = 1")
    t0 = time.perf_counter()
    by_scenario: dict[str, list[TestSet]] = {}
    runs: dict[str, Any] = {}
    for folder in args.runs:
        name, test, detail = replay(folder, args.z)
        runs[f"{name} seed {detail['seed']}"] = detail
        by_scenario.setdefault(name, []).append(test)
    rows: dict[str, Any] = {}
    for name, tests in sorted(by_scenario.items()):
        rows[name] = {"seeds": len(tests), "patients": sum(t.patients for t in tests)}
        for c in compare_models(tests, "consortium", [f"z={z:g}" for z in args.z]):
            # consortium minus z: turned so that a gain of the rule is positive
            gain, low, high = 0.0 - c.diff, 0.0 - c.high, 0.0 - c.low
            rows[name][c.b] = {"gain": gain, "low": low, "high": high}
            print(
                f"{name} ({len(tests)} seeds): {c.b} minus the consortium's version "
                f"{gain:+.4f} [{low:+.4f}, {high:+.4f}]"
            )
    write_result(args.out, {"z": args.z, "scenarios": rows, "runs": runs}, t0)


if __name__ == "__main__":
    main()
