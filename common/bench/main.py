"""The whole ``mmlego bench`` run: jobs, progress, metadata, report."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..train import resolve_device
from .report import aggregate, uplift, write_report
from .runner import CORE_METHODS, BenchConfig, JobResult, run_bench, run_job


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return (
        f"{platform.system()} {cpu}, {os.cpu_count()} cores{gpu}; "
        f"Python {platform.python_version()}, torch {torch.__version__}"
    )


def write_result(out: Path, doc: dict[str, Any], t0: float) -> dict[str, Any]:
    """A benchmark's result file: the command that ran it (this process's arguments), the machine,
    the date and the seconds since ``t0`` (``time.perf_counter``) ahead of ``doc``; returned."""
    script = Path(sys.argv[0])
    command = shlex.join(["python", f"{script.parent.name}/{script.name}", *sys.argv[1:]])
    doc = {
        "command": command,
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "wall_s": round(time.perf_counter() - t0, 1),
        **doc,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    return doc


def benchmark(
    cfg: BenchConfig,
    out: Path,
    workers: int = 1,
    device: str = "auto",
    quick: bool = False,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Run every job of ``cfg`` and write the report into ``out``; returns results.json's
    content."""
    resolve_device(device)  # fail before any work if e.g. CUDA was asked for and is missing
    t0 = time.perf_counter()
    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(cfg.datasets) * cfg.splits, desc="bench", unit="split", file=sys.stderr
        )

    def progress(r: JobResult) -> None:
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(
                f"{r.dataset} seed {r.seed}: legomerge {r.test.get('legomerge', float('nan')):.3f}"
            )

    results = run_bench(cfg, workers=workers, progress=progress)
    if bar is not None:
        bar.close()
    meta = {
        "command": "mmlego " + " ".join(shlex.quote(a) for a in sys.argv[1:]),  # never a local path
        "machine": machine(),
        "device": device,
        "workers": workers,
        "quick": quick,
        "splits": cfg.splits,
        "seeds": list(range(cfg.splits)),
        "wall_seconds": time.perf_counter() - t0,
        "datasets": list(cfg.datasets),
        "config": {
            "latent": [cfg.experiment.latent_rows, cfg.experiment.latent_dim],
            "depth": cfg.experiment.depth,
            "fourier": cfg.experiment.fourier,
            "n_tokens": cfg.experiment.n_tokens,
            "shared_init": cfg.experiment.shared_init,
            "train": vars(cfg.experiment.train),
            "fuse": vars(cfg.experiment.fuse),
        },
        "samples_per_second": {
            f"{r.dataset}/{k}": v for r in results for k, v in r.samples_per_second.items()
        },
        "seconds_per_method": _mean_of(results, "seconds"),
        "validation_metric_mean": _mean_of(results, "val"),
        "split_sizes": {f"{r.dataset}/seed{r.seed}": r.n for r in results},
        "merge_chosen": {f"{r.dataset}/seed{r.seed}": r.chosen for r in results if r.chosen},
    }
    return write_report(results, meta, out)


def _mean_of(results: list[JobResult], attr: str) -> dict[str, float]:
    """dataset/method -> mean over splits of one per-method figure of the jobs."""
    acc: dict[str, list[float]] = {}
    for r in results:
        for k, v in getattr(r, attr).items():
            acc.setdefault(f"{r.dataset}/{k}", []).append(v)
    return {k: sum(v) / len(v) for k, v in acc.items()}


def demo(dataset: str, splits: int, epochs: int, fourier: str, echo: Callable[[str], Any]) -> None:
    """``mmlego demo``: blocks, LegoMerge and LegoFuse on one dataset; prints test metrics."""
    cfg = BenchConfig.make([dataset], splits, methods=CORE_METHODS, figure6=False)
    exp = replace(
        cfg.experiment, fourier=fourier, train=replace(cfg.experiment.train, epochs=epochs)
    )
    cfg = replace(cfg, experiment=exp)
    results = []
    for seed in range(splits):
        results.append(run_job(dataset, seed, cfg))
        echo(f"  split {seed}: " + "  ".join(f"{k} {v:.3f}" for k, v in results[-1].test.items()))
    rows = [r for r in aggregate(results) if r["metric"] != "accuracy"]
    width = max(len(r["method"]) for r in rows)
    echo(f"\ntest {results[0].metric}, mean +- std over {splits} splits")
    for r in rows:
        echo(f"  {r['method']:<{width}}  {r['mean']:.3f} +- {r['std']:.3f}")
    echo(f"  merge uplift vs best block: {uplift(rows, dataset):+.3f}")
