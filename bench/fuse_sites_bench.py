"""LegoFuse over the paired sites or over every site (issue 26, ``FuseConfig.sites``): one site
holds a share of the training patients with every modality, the others hold one modality each;
R rounds of FedAvg (the coordinator's real round loop and aggregation, the sites' real local
rounds, messages delivered in process) over the paired site alone ("paired") against the same
rounds over every site, each on its patients having a modality of the model ("all"). Both start
from the same merge; its blocks are trained on all the training patients (the same start for
both arms; in a consortium each site trains its own). Test metric of the merge and both arms on
the held-out test split: with every modality, and with one modality at a time (what an unpaired
site's patients look like), averaged over the modalities.

Run: .venv/bin/python bench/fuse_sites_bench.py --out docs/results/fuse_sites.json
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
from common.data.dataset import MultimodalDataset
from common.experiment import ExperimentConfig, prepare_split, task_for, train_block
from common.fuse import FuseConfig, fused_model, round_patients
from common.lego import LegoMerge
from common.tasks import TaskSpec, metric
from common.train import predict_scores
from coordinator.fuse_rounds import NodeInfo, run_rounds
from simulate.inprocess import LocalSites


def scores(model: torch.nn.Module, test: MultimodalDataset, task: TaskSpec) -> dict[str, float]:
    """The metric on the test patients with every modality, and the mean over modalities of the
    metric with that modality alone."""
    model.eval()

    def on(data: MultimodalDataset) -> float:
        return metric(task, predict_scores(model, data, task, amp=False), data.targets())

    single = [on(test.select_modalities([m])) for m in sorted(test.modalities)]
    return {"test_all_modalities": on(test), "test_one_modality": float(np.mean(single))}


def one(dataset: str, seed: int, share: float, unpaired: int, cfg: FuseConfig) -> dict[str, Any]:
    data = load_builtin(dataset)
    _, train, val, test = prepare_split(data, seed)
    task = task_for(train, ExperimentConfig().n_bins)
    mods = sorted(data.modalities)
    blocks = [train_block(train, val, m, task, ExperimentConfig(), seed)[0] for m in mods]
    merged = LegoMerge(blocks).eval()
    order = np.random.default_rng(seed).permutation(len(train))
    cut = round(share * len(train))
    paired = round_patients(train.subset(np.sort(order[:cut])), mods, "paired")
    singles = [
        train.subset(np.sort(ix)).select_modalities([mods[i % len(mods)]])
        for i, ix in enumerate(np.array_split(order[cut:], unpaired))
    ]

    def factory() -> Any:
        return fused_model(merged.block_list, cfg.mode)

    row: dict[str, Any] = {
        "dataset": dataset,
        "seed": seed,
        "n_paired": len(paired),
        "n_single": [len(s) for s in singles],
        "merge": scores(merged, test, task),
    }
    for sites, parts in (("paired", [paired]), ("all", [paired, *singles])):
        parts = [round_patients(p, mods, sites) for p in parts]
        start = factory()
        nodes = [NodeInfo(i, f"site-{i}", tuple(p.modalities), i == 0) for i, p in enumerate(parts)]
        run = FuseConfig(mode=cfg.mode, rounds=cfg.rounds, epochs=cfg.epochs, sites=sites)
        outcome = run_rounds(LocalSites(factory, parts, run), nodes, start, run, "bench", 1e9, 1)
        start.load_state_dict(outcome.state)
        row[sites] = scores(start, test, task)
    return row


def summarize(rows: list[dict[str, Any]], datasets: list[str]) -> dict[str, Any]:
    """Per dataset and test set: the means of the merge and both arms, and all - paired with a
    95 % t interval over the seeds (each seed one split, both arms on its test patients)."""
    from scipy.stats import t

    summary: dict[str, Any] = {}
    for ds in datasets:
        mine = [r for r in rows if r["dataset"] == ds]
        for test in ("test_all_modalities", "test_one_modality"):
            diffs = [r["all"][test] - r["paired"][test] for r in mine]
            mean = float(np.mean(diffs))
            half = (
                float(t.ppf(0.975, len(diffs) - 1) * np.std(diffs, ddof=1) / np.sqrt(len(diffs)))
                if len(diffs) > 1
                else float("nan")
            )
            summary[f"{ds}/{test}"] = {
                "merge": float(np.mean([r["merge"][test] for r in mine])),
                "paired": float(np.mean([r["paired"][test] for r in mine])),
                "all": float(np.mean([r["all"][test] for r in mine])),
                "all_minus_paired": mean,
                "low": mean - half,
                "high": mean + half,
                "per_seed": [round(d, 4) for d in diffs],
            }
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="nki70,gse7390,ovarian,pbc")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--share", type=float, default=0.25, help="training patients paired")
    ap.add_argument("--unpaired", type=int, default=2, help="sites holding one modality")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("docs/results/fuse_sites.json"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    cfg = FuseConfig(mode="stack", rounds=args.rounds, epochs=args.epochs)
    t0, rows = time.perf_counter(), []
    for ds in args.datasets.split(","):
        for seed in range(args.seeds):
            rows.append(one(ds, seed, args.share, args.unpaired, cfg))
            print(json.dumps(rows[-1]), flush=True)
    summary = summarize(rows, args.datasets.split(","))
    result = write_result(args.out, {"fuse": cfg.to_dict(), "rows": rows, "summary": summary}, t0)
    for key, v in summary.items():
        print(
            f"{key}: merge {v['merge']:.3f}, paired {v['paired']:.3f}, all {v['all']:.3f}; "
            f"all - paired {v['all_minus_paired']:+.3f} [{v['low']:+.3f}, {v['high']:+.3f}]"
        )
    print(f"wrote {args.out} ({result['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
