"""``mmlego bench``: the paper's Table 2 and Figure 6 on the built-in real datasets.

One job = one dataset x one seeded 70/15/15 split; jobs run in parallel processes. Every model is
selected on the validation split only and measured once on the test split.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import BUILTIN, load_builtin
from ..data.dataset import MultimodalDataset
from ..experiment import ExperimentConfig, block_config, prepare_split, task_for, train_block
from ..lego import LegoBlock, LegoFuse, LegoMerge, SingleModality
from ..tasks import TaskSpec, metric
from ..train import fit, predict_scores
from .baselines import Classical, EncoderModel, LateConcat, early_fusion

CORE_METHODS = ("blocks", "legomerge", "legofuse-stack", "legofuse-weave")
ALL_METHODS = (
    *CORE_METHODS,
    "encoders",
    "ensemble",
    "merge-chosen",
    "late-concat",
    "early-fusion",
    "classical",
)
OVERLAPS = (0.0, 0.5, 1.0)  # symmetric difference of the two blocks' training patients (Figure 6)
LARGE_TRAIN = 1000  # training patients from which batches are doubled


@dataclass(frozen=True)
class BenchConfig:
    datasets: tuple[str, ...]
    splits: int = 5
    methods: tuple[str, ...] = ALL_METHODS
    figure6: bool = True
    ablations: bool = False  # LegoMerge without shared init, and with the 1-D Fourier mode
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)

    @classmethod
    def make(
        cls,
        datasets: Sequence[str],
        splits: int = 5,
        quick: bool = False,
        device: str = "auto",
        **kw: Any,
    ) -> BenchConfig:
        exp = ExperimentConfig()
        train = replace(exp.train, device=device)
        fuse = replace(exp.fuse, device=device)
        if quick:
            train = replace(train, epochs=4, patience=2)
            splits = 1
        return cls(tuple(datasets), splits, experiment=replace(exp, train=train, fuse=fuse), **kw)


@dataclass
class JobResult:
    dataset: str
    seed: int
    metric: str
    test: dict[str, float] = field(default_factory=dict)
    accuracy: dict[str, float] = field(
        default_factory=dict
    )  # classification: a second, unsaturated view
    val: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    samples_per_second: dict[str, float] = field(default_factory=dict)
    predictions: dict[str, list[Any]] = field(
        default_factory=dict
    )  # test scores of a few models, for plots
    targets: dict[str, list[Any]] = field(default_factory=dict)
    n: dict[str, int] = field(default_factory=dict)
    chosen: str = ""  # the candidate the chosen merge picked on validation


def load_dataset(name: str) -> MultimodalDataset:
    """A built-in dataset by name, or a site data folder (a path holding data.toml), e.g. a bag
    folder of per-slide feature files."""
    if name in BUILTIN:
        return load_builtin(name)
    from ..data.sitefolder import CONFIG_NAME, load_site_folder

    if (Path(name) / CONFIG_NAME).is_file():
        return load_site_folder(name)
    raise KeyError(
        f"unknown dataset {name!r}: neither built-in ({', '.join(BUILTIN)}) nor a site data folder"
    )


def ensemble_scores(
    task: TaskSpec, blocks: Sequence[LegoBlock], data: MultimodalDataset
) -> np.ndarray:
    """Average of the blocks' predicted risks / probabilities over the blocks present per sample."""
    total: np.ndarray | None = None
    count = np.zeros(len(data))
    for b in blocks:
        s = predict_scores(SingleModality(b, b.modality), data, task)
        w = data.modalities[b.modality].present.numpy().astype(float)
        s = s * (w if s.ndim == 1 else w[:, None])
        total = s if total is None else total + s
        count += w
    assert total is not None
    return total / (np.maximum(count, 1) if total.ndim == 1 else np.maximum(count, 1)[:, None])


def chosen_merge(
    blocks: Sequence[LegoBlock], val: MultimodalDataset, task: TaskSpec
) -> tuple[torch.nn.Module, str]:
    """What ``coordinator merge --recipe auto`` would publish if the validation split were one
    site: the same candidates and the same rule (common.evaluation.selection)."""
    import hashlib

    from ..evaluation import consortium
    from ..evaluation.scoring import score_models, whole
    from ..evaluation.selection import BlockInfo, choose, first_candidates, publishable

    infos = [
        BlockInfo(
            hashlib.sha256(f"{i}:{b.modality}".encode()).hexdigest(), "validation", b.modality
        )
        for i, b in enumerate(blocks)
    ]
    by_id = {info.block_id: b for info, b in zip(infos, blocks, strict=True)}
    first = first_candidates(infos)
    candidates = [c for c in first if publishable(c, infos)]
    models = [c.recipe.make([by_id[i] for i in c.block_ids]) for c in candidates]
    scores = score_models([whole(val, (m, m.modalities)) for m in models], val, task, min_cell=1)
    reference = {"validation": scores[0]} if scores[0] is not None else None
    results = {
        c.candidate_id: consortium({"validation": s}, reference)
        for c, s in zip(candidates, scores, strict=True)
        if s is not None
    }
    pick = choose(candidates, results)
    return models[candidates.index(pick.candidate)], pick.candidate.candidate_id


def overlap_subsets(n: int, s: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two equal-size subsets of range(n) whose symmetric difference is a fraction ``s`` of their
    union: |A| = |B| = h = n // 2 and |A n B| = 2h(1 - s) / (2 - s)."""
    h = n // 2
    k = round(2 * h * (1 - s) / (2 - s))
    perm = rng.permutation(n)
    shared, rest = perm[:k], perm[k:]
    a = np.concatenate([shared, rest[: h - k]])
    b = np.concatenate([shared, rest[h - k : 2 * (h - k)]])
    return np.sort(a), np.sort(b)


def _timed(out: JobResult, name: str, fn: Callable[[], float]) -> None:
    t0 = time.perf_counter()
    out.test[name] = fn()
    out.seconds[name] = time.perf_counter() - t0


def run_job(dataset: str, seed: int, cfg: BenchConfig, threads: int | None = None) -> JobResult:
    """All methods of the benchmark on one split of one dataset."""
    if threads:
        torch.set_num_threads(threads)
    data = load_dataset(dataset)
    exp = cfg.experiment
    _, train, val, test = prepare_split(data, seed)
    if len(train) >= LARGE_TRAIN:  # fewer, larger steps on the big sets keep the bench in budget
        exp = replace(
            exp,
            train=replace(exp.train, batch_size=2 * exp.train.batch_size),
            fuse=replace(exp.fuse, batch_size=2 * exp.fuse.batch_size),
        )
    task = task_for(train, exp.n_bins)
    mods = list(data.modalities)
    out = JobResult(
        dataset, seed, task.metric_name, n={"train": len(train), "val": len(val), "test": len(test)}
    )
    targets = test.targets()
    out.targets = {k: np.asarray(v).tolist() for k, v in targets.items()}

    def measured(s: np.ndarray, name: str | None) -> float:
        if name:
            out.predictions[name] = np.asarray(s).tolist()
            if task.kind == "classification":
                out.accuracy[name] = float((np.argmax(s, axis=1) == targets["label"]).mean())
        return metric(task, s, targets)

    def score(model: torch.nn.Module, name: str | None = None) -> float:
        return measured(predict_scores(model, test, task), name)

    blocks: list[LegoBlock] = []
    for m in mods:
        t0 = time.perf_counter()
        block, vmetric, sps = train_block(train, val, m, task, exp, seed)
        blocks.append(block)
        out.val[f"block:{m}"], out.samples_per_second[f"block:{m}"] = vmetric, sps
        out.test[f"block:{m}"] = score(SingleModality(block, m), f"block:{m}")
        out.seconds[f"block:{m}"] = time.perf_counter() - t0
    if "legomerge" in cfg.methods:
        merged = LegoMerge(blocks).eval()
        out.val["legomerge"] = metric(task, predict_scores(merged, val, task), val.targets())
        _timed(out, "legomerge", lambda: score(merged, "legomerge"))
    if "ensemble" in cfg.methods:
        out.val["ensemble"] = metric(task, ensemble_scores(task, blocks, val), val.targets())
        _timed(out, "ensemble", lambda: measured(ensemble_scores(task, blocks, test), "ensemble"))
    if "merge-chosen" in cfg.methods:

        def chosen() -> float:
            model, name = chosen_merge(blocks, val, task)
            out.val["merge-chosen"] = metric(task, predict_scores(model, val, task), val.targets())
            out.chosen = name
            return score(model, "merge-chosen")

        _timed(out, "merge-chosen", chosen)
    for mode in ("stack", "weave"):
        if f"legofuse-{mode}" in cfg.methods:

            def fuse(mode: str = mode) -> float:
                model = LegoFuse(blocks, mode=mode)  # type: ignore[arg-type]
                res = fit(model, train, val, task, exp.fuse, label=f"legofuse-{mode}")
                out.val[f"legofuse-{mode}"] = res.best_metric
                return score(model, f"legofuse-{mode}")

            _timed(out, f"legofuse-{mode}", fuse)
    configs = [block_config(train, m, task, exp, seed) for m in mods]
    if "encoders" in cfg.methods:
        for m, c in zip(mods, configs, strict=True):

            def enc(m: str = m, c: Any = c) -> float:
                torch.manual_seed(seed)
                model = EncoderModel(c.encoder, m, task.n_outputs)
                tr = train.select_modalities([m])
                out.val[f"encoder:{m}"] = fit(
                    model, tr, val.select_modalities([m]), task, exp.train
                ).best_metric
                return score(model, f"encoder:{m}")

            _timed(out, f"encoder:{m}", enc)
    if "late-concat" in cfg.methods:

        def late() -> float:
            torch.manual_seed(seed)
            model = LateConcat({c.modality: c.encoder for c in configs}, task.n_outputs)
            out.val["late-concat"] = fit(model, train, val, task, exp.train).best_metric
            return score(model, "late-concat")

        _timed(out, "late-concat", late)
    if "early-fusion" in cfg.methods:

        def early() -> float:
            torch.manual_seed(seed)
            model = early_fusion(configs)
            out.val["early-fusion"] = fit(model, train, val, task, exp.train).best_metric
            return score(model, "early-fusion")

        _timed(out, "early-fusion", early)
    if "classical" in cfg.methods:

        def classical() -> float:
            model = Classical(task, mods).fit(train, val)
            out.val["classical"] = model.val_metric
            return measured(model.scores(test), "classical")

        _timed(out, "classical", classical)
    if cfg.figure6 and len(mods) >= 2:
        rng = np.random.default_rng(10_000 + seed)
        for s in OVERLAPS:
            ia, ib = overlap_subsets(len(train), s, rng)
            pair = [
                train_block(train.subset(ix), val, m, task, exp, seed)[0]
                for ix, m in ((ia, mods[0]), (ib, mods[1]))
            ]
            out.test[f"fig6:legomerge@{s:g}"] = score(LegoMerge(pair).eval())
            out.test[f"fig6:ensemble@{s:g}"] = metric(
                task, ensemble_scores(task, pair, test), targets
            )
            for b in pair:
                out.test[f"fig6:block:{b.modality}@{s:g}"] = score(SingleModality(b, b.modality))
    if cfg.ablations:
        for tag, variant in (
            ("no-shared-init", replace(exp, shared_init=False)),
            ("fourier-1d", replace(exp, fourier="1d")),
        ):
            variant_blocks = [train_block(train, val, m, task, variant, seed)[0] for m in mods]
            out.test[f"legomerge:{tag}"] = score(LegoMerge(variant_blocks).eval())
            for b in variant_blocks:
                out.test[f"block:{b.modality}:{tag}"] = score(SingleModality(b, b.modality))
    return out


def run_bench(
    cfg: BenchConfig, workers: int = 1, progress: Callable[[JobResult], None] | None = None
) -> list[JobResult]:
    """Every (dataset, split) job; in ``workers`` processes when > 1 (each with its share of
    threads)."""
    sizes = {d: len(load_dataset(d)) for d in cfg.datasets}
    jobs = [(d, s) for d in cfg.datasets for s in range(cfg.splits)]
    jobs.sort(
        key=lambda j: -sizes[j[0]]
    )  # the big datasets first, so that the workers end together
    results: list[JobResult] = []
    if workers <= 1:
        for d, s in jobs:
            results.append(run_job(d, s, cfg))
            if progress:
                progress(results[-1])
        return results
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(run_job, d, s, cfg, threads) for d, s in jobs]
        for fut in as_completed(futures):
            results.append(fut.result())
            if progress:
                progress(results[-1])
    results.sort(key=lambda r: (cfg.datasets.index(r.dataset), r.seed))
    return results
