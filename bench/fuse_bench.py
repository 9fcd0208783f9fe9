"""Federated vs centralized LegoFuse (issue 5): K sites each hold a random partition of the paired
training patients; R rounds of FedAvg (the coordinator's real round loop and aggregation, sites'
real local rounds, messages delivered in process) against the same R x E epochs of centralized
fine-tuning on all of them. Test metric of both on the held-out test split.

Run: .venv/bin/python bench/fuse_bench.py --out docs/results/fuse.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.bench.main import write_result
from common.data import load_builtin
from common.experiment import ExperimentConfig, prepare_split, task_for, train_block
from common.fuse import FuseConfig, centralized_fuse, fused_model, paired_only
from common.lego import LegoMerge
from common.tasks import metric
from common.train import predict_scores
from coordinator.fuse_rounds import NodeInfo, run_rounds
from simulate.inprocess import LocalSites


def one(dataset: str, seed: int, ks: list[int], cfg: FuseConfig) -> list[dict[str, Any]]:
    data = load_builtin(dataset)
    _, train, val, test = prepare_split(data, seed)
    task = task_for(train, ExperimentConfig().n_bins)
    mods = sorted(data.modalities)
    blocks = [train_block(train, val, m, task, ExperimentConfig(), seed)[0] for m in mods]
    merged = LegoMerge(blocks).eval()
    paired = paired_only(train, mods)
    test_paired = paired_only(test, mods)

    def factory() -> Any:
        return fused_model(merged.block_list, cfg.mode)

    def score(model: torch.nn.Module) -> float:
        return metric(
            task, predict_scores(model, test_paired, task, amp=False), test_paired.targets()
        )

    central = factory()
    centralized_fuse(central, paired, task, cfg)
    rows = [
        {
            "dataset": dataset,
            "seed": seed,
            "sites": 1,
            "method": "centralized",
            "test": score(central),
            "n_paired_train": len(paired),
            "n_test": len(test_paired),
            "merge_test": score(merged),
        }
    ]
    rng = np.random.default_rng(seed)
    for k in ks:
        order = rng.permutation(len(paired))
        parts = [paired.subset(np.sort(ix)) for ix in np.array_split(order, k)]
        start = factory()
        nodes = [NodeInfo(i, f"site-{i}", tuple(mods), True) for i in range(k)]
        outcome = run_rounds(LocalSites(factory, parts, cfg), nodes, start, cfg, "bench", 1e9, k)
        start.load_state_dict(outcome.state)
        rows.append(
            {
                "dataset": dataset,
                "seed": seed,
                "sites": k,
                "method": "fedavg",
                "test": score(start.eval()),
                "n_paired_train": len(paired),
                "n_test": len(test_paired),
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="nki70,gse7390,ovarian,pbc")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--sites", default="2,4")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("docs/results/fuse.json"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    cfg = FuseConfig(mode="stack", rounds=args.rounds, epochs=args.epochs)
    ks = [int(k) for k in args.sites.split(",")]
    t0, rows = time.perf_counter(), []
    for ds in args.datasets.split(","):
        for seed in range(args.seeds):
            for row in one(ds, seed, ks, cfg):
                rows.append(row)
                print(json.dumps(row), flush=True)
    summary = {}
    for ds in args.datasets.split(","):
        central = {
            r["seed"]: r["test"]
            for r in rows
            if r["dataset"] == ds and r["method"] == "centralized"
        }
        for k in ks:
            diffs = [
                r["test"] - central[r["seed"]]
                for r in rows
                if r["dataset"] == ds and r["sites"] == k
            ]
            summary[f"{ds}/K={k}"] = {
                "mean_diff": float(np.mean(diffs)),
                "max_abs_diff": float(np.max(np.abs(diffs))),
                "centralized_mean": float(np.mean(list(central.values()))),
            }
    result = write_result(args.out, {"fuse": cfg.to_dict(), "rows": rows, "summary": summary}, t0)
    for key, v in summary.items():
        print(
            f"{key}: fedavg - centralized = {v['mean_diff']:+.3f} "
            f"(max |diff| {v['max_abs_diff']:.3f}); "
            f"centralized {v['centralized_mean']:.3f}"
        )
    print(f"wrote {args.out} ({result['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
