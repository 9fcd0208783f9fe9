"""Differentially private blocks: what DP-SGD costs a block's test metric and its training time,
and what it buys against a membership-inference attack.

For each dataset, modality, epsilon (``inf`` = no DP: the site's usual training, scaling from its
data) and seeded split: the patients are split 85 / 15 into a site and held-out test patients;
the site trains its block exactly as ``mmlego site train`` does (``train_modality``: its own
validation split for early stopping, [train] defaults, and with DP the task's public ranges,
common/data/builtin/ranges.py), and the block is measured on the test patients. The attack is
the loss-threshold membership inference (Yeom et al. 2018): the lower a patient's loss under the
block, the more likely a training patient; its AUC separating the block's training patients
from the held-out test patients (0.5 = no better than chance).

    .venv/bin/python bench/privacy_bench.py --out docs/results/privacy.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

DATASETS = ("nki70", "gse7390", "ovarian", "pbc")
EPSILONS = (1.0, 3.0, 8.0, math.inf)


def one(
    dataset: str, epsilon: float, split: int, settings_json: str = "{}"
) -> list[dict[str, Any]]:
    import torch
    from sklearn.metrics import roc_auc_score

    from common.bench.runner import load_dataset
    from common.data.builtin.ranges import PUBLIC_RANGES
    from common.data.splits import random_split, site_split
    from common.lego import SingleModality
    from common.records import TaskRecord
    from common.tasks import TaskSpec, metric, scores, survival_bins, task_loss
    from common.train.dp import DPBudget, noise_multiplier
    from common.train.loop import batch_targets, predict_logits
    from common.train.siteblock import BlockTraining, train_modality

    torch.set_num_threads(1)
    data = load_dataset(dataset)
    strata = data.event if data.task == "survival" else data.label
    parts = random_split(
        len(data), split, stratify=strata
    )  # 70 / 15 / 15: the first two are the site's
    site, test = (
        data.subset(np.sort(np.concatenate([parts.train, parts.val]))),
        data.subset(parts.test),
    )
    if data.task == "survival":
        spec = TaskSpec(
            "survival", n_bins=4, bin_edges=tuple(survival_bins(site.time, site.event, 4))
        )
    else:
        spec = TaskSpec("classification", n_classes=data.n_classes)
    modalities = tuple(data.modalities)
    task = TaskRecord(dataset, spec, modalities=modalities, public_ranges=PUBLIC_RANGES[dataset])
    extra = json.loads(settings_json)
    settings = BlockTraining(
        seed=split,
        **{k: v for k, v in extra.items() if k in BlockTraining.model_fields and k != "lr"},
    )
    defaults = DPBudget(1.0)
    budget = (
        DPBudget(
            epsilon,
            max_grad_norm=extra.get("max_grad_norm", defaults.max_grad_norm),
            lr=extra.get("lr", defaults.lr),
        )
        if math.isfinite(epsilon)
        else None
    )
    out = []
    for m in modalities:
        calibration = 0.0
        if (
            budget is not None
        ):  # Opacus's noise calibration (~1.5 s, once per block) is timed apart from the epochs
            has = site.modalities[m].present.numpy()
            n_train = int(has[site_split(site, settings.val_fraction, settings.seed)[0]].sum())
            t0 = time.perf_counter()
            noise_multiplier(budget, n_train, settings.batch_size, settings.epochs)
            calibration = time.perf_counter() - t0
        t0 = time.perf_counter()
        trained = train_modality(
            site, m, task, settings, min_cell=5, private=budget
        )  # a validation split, as in section 9
        block, stats, dp = trained.block, trained.stats, trained.privacy
        seconds = time.perf_counter() - t0
        model = SingleModality(block, m).eval()
        train_rows, _ = site_split(site, settings.val_fraction, settings.seed)
        has_site = site.modalities[m].present.numpy()
        members = site.subset(train_rows[has_site[train_rows]])
        has_test = test.modalities[m].present.numpy()
        outside = test.subset(np.flatnonzero(has_test))
        test_metric = metric(
            spec, scores(spec, predict_logits(model, outside, amp=False)).numpy(), outside.targets()
        )

        def losses(d: Any, model: Any = model) -> np.ndarray:
            logits = predict_logits(model, d, amp=False)
            targets = batch_targets(d, spec, np.arange(len(d)), torch.device("cpu"))
            return task_loss(spec, logits, targets, reduction="none").detach().numpy()

        lin, lout = losses(members), losses(outside)
        truth = np.r_[np.ones(len(lin)), np.zeros(len(lout))]
        mia = float(roc_auc_score(truth, -np.r_[lin, lout]))
        mod = site.modalities[m]
        values = mod.x[mod.mask] if getattr(mod, "mask", None) is not None else mod.x[mod.present]
        lo, hi = zip(
            *[task.public_ranges[m].interval(f) or (-math.inf, math.inf) for f in mod.features],
            strict=True,
        )
        outside_range = float(
            ((values < torch.tensor(lo)) | (values > torch.tensor(hi))).float().mean()
        )
        out.append(
            {
                "settings": extra,
                "val": float(trained.val_metric),
                "dataset": dataset,
                "modality": m,
                "epsilon": epsilon if math.isfinite(epsilon) else "inf",
                "split": split,
                "test": float(test_metric),
                "mia_auc": mia,
                "members": len(lin),
                "non_members": len(lout),
                "epochs": int(stats["epochs"]),
                "seconds": round(seconds, 2),
                "calibration_s": round(calibration, 2),
                "s_per_epoch": round(seconds / stats["epochs"], 3),
                "dp_epsilon_spent": dp.epsilon if dp else None,
                "noise_multiplier": dp.noise_multiplier if dp else None,
                "delta": dp.delta if dp else None,
                "steps": dp.steps if dp else None,
                "values_outside_public_range": round(outside_range, 4),
            }
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("docs/results/privacy.json"))
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS))
    ap.add_argument("--epsilons", nargs="+", type=float, default=list(EPSILONS))
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=2, help="processes, one thread each")
    ap.add_argument(
        "--dev",
        action="store_true",
        help="development study: DP settings on splits 100+ (never the reported "
        "ones), judged on their held-out patients; writes --out",
    )
    args = ap.parse_args()
    if args.dev:
        return dev_study(args)
    from concurrent.futures import ProcessPoolExecutor

    t0 = time.monotonic()
    work = [(d, e, s) for d in args.datasets for e in args.epsilons for s in range(args.splits)]
    runs: list[dict[str, Any]] = []
    with ProcessPoolExecutor(args.jobs) as pool:
        for rows in pool.map(one, *zip(*work, strict=True)):
            runs += rows
            for r in rows:
                print(
                    f"{r['dataset']:>8} {r['modality']:>8} eps {r['epsilon']!s:>4} "
                    f"split {r['split']}: test {r['test']:.3f} mia {r['mia_auc']:.3f} "
                    f"spent {r['dp_epsilon_spent']} {r['s_per_epoch']} s/epoch",
                    file=sys.stderr,
                )
    rows = []
    for d in args.datasets:
        mods = sorted({r["modality"] for r in runs if r["dataset"] == d})
        for m in mods:
            base = [
                r
                for r in runs
                if r["dataset"] == d and r["modality"] == m and r["epsilon"] == "inf"
            ]
            for e in args.epsilons:
                key = e if math.isfinite(e) else "inf"
                sel = [
                    r
                    for r in runs
                    if r["dataset"] == d and r["modality"] == m and r["epsilon"] == key
                ]
                t = np.array([r["test"] for r in sel])
                row = {
                    "dataset": d,
                    "modality": m,
                    "epsilon": key,
                    "mean": round(float(t.mean()), 4),
                    "std": round(float(t.std(ddof=1)) if len(t) > 1 else 0.0, 4),
                    "mia_auc": round(float(np.mean([r["mia_auc"] for r in sel])), 4),
                    "mia_auc_std": round(
                        float(np.std([r["mia_auc"] for r in sel], ddof=1)) if len(sel) > 1 else 0.0,
                        4,
                    ),
                    "s_per_epoch": round(float(np.mean([r["s_per_epoch"] for r in sel])), 3),
                    "epochs": round(float(np.mean([r["epochs"] for r in sel])), 1),
                    "splits": len(sel),
                }
                if key != "inf":
                    row["epsilon_spent"] = round(
                        float(np.mean([r["dp_epsilon_spent"] for r in sel])), 3
                    )
                    row["noise_multiplier"] = round(
                        float(np.mean([r["noise_multiplier"] for r in sel])), 3
                    )
                    row["values_outside_public_range"] = sel[0]["values_outside_public_range"]
                if base and key != "inf":
                    row["vs_non_dp"] = round(
                        row["mean"] - float(np.mean([r["test"] for r in base])), 4
                    )
                    row["time_per_epoch_vs_non_dp"] = round(
                        row["s_per_epoch"] / float(np.mean([r["s_per_epoch"] for r in base])), 2
                    )
                rows.append(row)
    doc = {
        "command": "python bench/privacy_bench.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, no GPU; "
        f"Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "wall_s": round(time.monotonic() - t0, 1),
        "rows": rows,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    for r in rows:
        print(
            json.dumps(
                {
                    k: r.get(k)
                    for k in (
                        "dataset",
                        "modality",
                        "epsilon",
                        "mean",
                        "std",
                        "mia_auc",
                        "vs_non_dp",
                        "time_per_epoch_vs_non_dp",
                    )
                }
            )
        )


DEV_GRID = [
    {"epochs": e, "batch_size": b, "lr": lr, "max_grad_norm": c}
    for e in (20, 50)
    for b in (32, 64)
    for lr in (1e-3, 3e-3)
    for c in (1.0, 0.1)
]


def dev_study(args: argparse.Namespace) -> None:
    """DP settings on development splits (seeds 100 + k, never the reported 0-4) at each epsilon,
    judged by the mean metric on those splits' held-out patients over every dataset and block."""
    from concurrent.futures import ProcessPoolExecutor

    t0 = time.monotonic()
    work = [
        (d, e, 100 + s, json.dumps(g))
        for g in DEV_GRID
        for d in args.datasets
        for e in args.epsilons
        if math.isfinite(e)
        for s in range(args.splits)
    ]
    runs: list[dict[str, Any]] = []
    with ProcessPoolExecutor(args.jobs) as pool:
        for rows in pool.map(one, *zip(*work, strict=True)):
            runs += rows
    table = []
    for g in DEV_GRID:
        for e in args.epsilons:
            sel = [r for r in runs if r["settings"] == g and r["epsilon"] == e]
            if sel:
                table.append(
                    {
                        **g,
                        "epsilon": e,
                        "dev_test_mean": round(float(np.mean([r["test"] for r in sel])), 4),
                        "val_mean": round(float(np.mean([r["val"] for r in sel])), 4),
                        "s_per_epoch": round(float(np.mean([r["s_per_epoch"] for r in sel])), 3),
                        "runs": len(sel),
                    }
                )
    table.sort(key=lambda r: (r["epsilon"], -r["dev_test_mean"]))
    args.out.write_text(
        json.dumps(
            {
                "command": "python bench/privacy_bench.py " + " ".join(sys.argv[1:]),
                "date": time.strftime("%Y-%m-%d"),
                "wall_s": round(time.monotonic() - t0, 1),
                "table": table,
                "runs": runs,
            },
            indent=1,
        )
        + "\n"
    )
    for r in table:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
