"""Validation-only study behind docs/RESULTS.md section 3: LegoMerge variants against the
ensemble of the same blocks (shared init, Fourier mode, merge operators, tokens, latent size,
learning rate, early stopping). Test data is never touched.

Run: .venv/bin/python bench/merge_variants.py --datasets nki70,gse7390,ovarian,pbc [--splits 5]
"""

from __future__ import annotations

import argparse
import json
import warnings
from dataclasses import replace

import numpy as np
import torch

from common.bench.runner import ensemble_scores
from common.data import load_builtin
from common.experiment import ExperimentConfig, prepare_split, task_for, train_block
from common.lego import LegoMerge
from common.recipe_defaults import DEFAULT_HEAD_MERGE, DEFAULT_LATENT_MERGE
from common.tasks import metric
from common.train import TrainConfig, predict_scores

BASE = ExperimentConfig()
BLOCK_VARIANTS = {
    "default": BASE,
    "no-shared-init": replace(BASE, shared_init=False),
    "fourier-1d": replace(BASE, fourier="1d"),
    "tokens-1": replace(BASE, n_tokens=1),
    "latent-32x64": replace(BASE, latent_rows=32),
    "lr-3e-4": replace(BASE, train=TrainConfig(lr=3e-4)),
    "patience-20": replace(BASE, train=TrainConfig(patience=20, epochs=80)),
}
MERGES = [  # (latent merge, head merge): the defaults first, then one ablation of each
    (DEFAULT_LATENT_MERGE, DEFAULT_HEAD_MERGE),
    ("arithmetic", DEFAULT_HEAD_MERGE),
    (DEFAULT_LATENT_MERGE, "linear"),
]


def study(dataset: str, splits: int, variants: list[str]) -> dict[str, float]:
    data = load_builtin(dataset)
    acc: dict[str, list[float]] = {}
    for seed in range(splits):
        _, train, val, _test = prepare_split(data, seed)
        task = task_for(train, BASE.n_bins)
        for name in variants:
            blocks = [
                train_block(train, val, m, task, BLOCK_VARIANTS[name], seed)[0]
                for m in data.modalities
            ]
            acc.setdefault(f"{name}/ensemble", []).append(
                metric(task, ensemble_scores(task, blocks, val), val.targets())
            )
            for lm, hm in MERGES if name == "default" else MERGES[:1]:
                merged = LegoMerge(blocks, latent_merge=lm, head_merge=hm).eval()
                acc.setdefault(f"{name}/legomerge-{lm}-{hm}", []).append(
                    metric(task, predict_scores(merged, val, task), val.targets())
                )
    return {k: round(float(np.mean(v)), 4) for k, v in acc.items()}


def main() -> None:
    warnings.simplefilter("ignore")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="nki70,gse7390,ovarian,pbc")
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--variants", default=",".join(BLOCK_VARIANTS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    for ds in args.datasets.split(","):
        print(ds, json.dumps(study(ds, args.splits, args.variants.split(","))), flush=True)


if __name__ == "__main__":
    main()
