"""Training a slide block at whole-slide-image scale: peak memory, throughput and time to the first
batch for cohorts of 200, 500 and 1,000 slides of the synthetic slide cohort (lognormal patches
per slide, median ~6,000, up to ~25,000; 1,024 float16 features; common/data/slidecohort.py).

- ``ragged``: the path of this repository: bags read lazily from the per-slide HDF5 files by
  DataLoader workers, ``max_instances`` drawn per bag each epoch, packed end to end with offsets.
- ``padded``: the path before it: the whole cohort read into one dense (slides, longest bag,
  features) float32 tensor with a mask, every instance (what a ``sequence`` table gives); it is
  run where it fits this machine's memory and otherwise reported with the memory it needs.
- ``extra`` rows: the ragged path against per-batch padding of the same sampled instances
  (``padded-batch``), and both with every instance, to separate packing from sampling.
- ``in_memory``: small bags held in memory (a ``sequence`` table, e.g. mfeat's 12 patches), padded
  with a mask against packed with offsets: whether the padded path should stay there.

Each measurement is a fresh process (its peak RSS, with its reader processes', is its own).

    .venv/bin/python bench/bag_bench.py --out docs/results/bags.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

MB = 1024 * 1024


def view(cohort: Path, slides: int, root: Path) -> Path:
    """A site data folder of the cohort's first ``slides`` slides (and their patients), reading the
    cohort's feature files where they are."""
    import pandas as pd

    folder = root / f"view-{slides}"
    folder.mkdir(parents=True, exist_ok=True)
    table = pd.read_csv(cohort / "slides.csv").iloc[:slides]
    labels = pd.read_csv(cohort / "labels.csv")
    labels[labels.patient_id.isin(table.patient_id)].to_csv(folder / "labels.csv", index=False)
    table.to_csv(folder / "slides.csv", index=False)
    pattern = str((cohort / "features").resolve()) + "/{slide_id}.h5"
    (folder / "data.toml").write_text(
        'name = "synthetic-slides"\ntask = "survival"\n'
        '[labels]\nfile = "labels.csv"\nid = "patient_id"\ntime = "time"\nevent = "event"\n'
        f'[modalities.slides]\nkind = "bag"\nfiles = "{pattern}"\nslides = "slides.csv"\n'
    )
    return folder


# ---- measurements, each in its own process -------------------------------------------------------


def _peaks() -> tuple[float, float]:
    """(this process's peak RSS, the sum of its descendants' peaks) in MB."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    me, kids, todo = os.getpid(), [], [os.getpid()]
    while todo:
        p = todo.pop()
        for c, pp in parent.items():
            if pp == p:
                kids.append(c)
                todo.append(c)

    def hwm(pid: int) -> float:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    return hwm(me), sum(hwm(k) for k in kids)


def _block(features: int, spec: Any) -> Any:
    import torch

    from common.lego import BlockConfig, EncoderConfig, LegoBlock

    torch.manual_seed(0)
    return LegoBlock(
        BlockConfig(
            "slides",
            EncoderConfig("bag", in_features=features),
            spec,
            latent_rows=16,
            latent_dim=64,
        )
    )


class _Padded:
    """Packed bags -> padded (b, longest, F) + mask before the block (per-batch padding)."""

    def __init__(self, block: Any) -> None:
        self.block = block

    def __call__(self, inputs: Any) -> Any:
        import torch

        item = inputs["slides"]
        lengths = item.offsets[1:] - item.offsets[:-1]
        longest = int(lengths.max()) if len(lengths) else 0
        mask = torch.arange(longest)[None, :] < lengths[:, None]
        x = torch.zeros(len(lengths), longest, item.x.shape[1], dtype=item.x.dtype)
        x[mask] = item.x
        return self.block(x, mask)


def child(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from common.data.dataset import ModalityData
    from common.data.sitefolder import load_site_folder
    from common.data.splits import Standardizer, bag_scaling
    from common.lego import SingleModality
    from common.tasks import TaskSpec, survival_bins
    from common.train.batches import shuffled
    from common.train.loop import TrainConfig, batch_targets, prepare

    t0 = time.perf_counter()
    data = load_site_folder(args.folder).select_modalities(["slides"])
    mod = data.modalities["slides"]
    load_s = time.perf_counter() - t0
    if args.child == "stats-full":
        t = time.perf_counter()
        full_mean, full_std = bag_scaling(mod, bags=0, per_bag=0)  # type: ignore[arg-type]
        full_s = time.perf_counter() - t
        mean, std = bag_scaling(mod, seed=0)  # type: ignore[arg-type]  # the sample training uses
        return {
            "stats_full_s": round(full_s, 2),
            "load_s": round(load_s, 2),
            # how far the sample is from the full pass, in units of the full pass's std
            "sample_mean_error_max": round(float(((mean - full_mean).abs() / full_std).max()), 4),
            "sample_mean_error_median": round(
                float(((mean - full_mean).abs() / full_std).median()), 4
            ),
            "sample_std_ratio_range": [
                round(float((std / full_std).min()), 4),
                round(float((std / full_std).max()), 4),
            ],
        }
    sizes = mod.sizes()  # type: ignore[union-attr]
    out: dict[str, Any] = {
        "slides": args.slides,
        "patients": len(data),
        "instances": int(sizes.sum()),
        "longest_bag": int(sizes.max()),
        "max_instances": args.max_instances,
        "workers": args.workers,
        "batch": args.batch,
        "threads": torch.get_num_threads(),
    }
    spec = TaskSpec("survival", n_bins=4, bin_edges=survival_bins(data.time, data.event, 4))
    t = time.perf_counter()
    mean, std = Standardizer.fit(data, seed=0).stats["slides"]
    out["stats_s"] = round(time.perf_counter() - t, 2)  # the seeded sample (part of first_batch_s)
    block = _block(mod.n_features, spec)
    block.set_input_scaling(mean, std)
    mod = replace(mod, max_instances=args.max_instances)  # type: ignore[type-var]
    data = replace(data, modalities={"slides": mod})
    if args.child == "padded":
        n, longest, f = len(data), int(sizes.max()), mod.n_features
        need = n * longest * f * 4 + 3 * args.batch * longest * f * 4
        out["needs_gb"] = round(need / 1024**3, 1)
        total = (
            int(
                next(
                    line
                    for line in Path("/proc/meminfo").read_text().splitlines()
                    if line.startswith("MemTotal")
                ).split()[1]
            )
            * 1024
        )
        if need > 0.85 * total:
            out["out_of_memory"] = (
                f"the dense cohort tensor alone needs {n} x {longest} x {f} x 4 B = "
                f"{n * longest * f * 4 / 1024**3:.1f} GB; with a batch, "
                f"{need / 1024**3:.1f} GB > 85 % of "
                f"this machine's {total / 1024**3:.1f} GB"
            )
            return out
        x = torch.zeros(n, longest, f)
        mask = torch.zeros(n, longest, dtype=torch.bool)
        for i in range(n):
            bag = torch.from_numpy(mod.read(i))  # type: ignore[union-attr]
            x[i, : len(bag)] = bag
            mask[i, : len(bag)] = True
        data = replace(
            data,
            modalities={
                "slides": ModalityData("sequence", x, mask.any(dim=1), list(mod.features), mask)
            },
        )
    model: Any = SingleModality(block, "slides")
    if args.child == "padded-batch":
        padded = _Padded(block)

        class Wrapped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.block = block

            def forward(self, inputs: Any) -> Any:
                return padded(inputs)

        model = Wrapped()
    run = prepare(
        model, data, spec, TrainConfig(batch_size=args.batch, workers=args.workers, device="cpu")
    )
    steps, seen, first, t_steady = 0, 0, None, 0.0
    from common.data.bags import Sampling

    while steps < args.steps:
        run.epochs_done += 1
        batches = shuffled(len(data), args.batch, run.gen)
        for rows, inputs in run.reader(
            batches, Sampling(train=True, seed=0, epoch=run.epochs_done)
        ):
            run.model.train()
            run.step(inputs, batch_targets(data, spec, rows, run.device))
            steps += 1
            if first is None:
                first = time.perf_counter() - t0
                t_steady = time.perf_counter()
            else:
                seen += len(rows)
            if steps >= args.steps:
                break
    steady = time.perf_counter() - t_steady
    main, kids = _peaks()
    run.close()
    out.update(
        {
            "first_batch_s": round(first or 0.0, 2),
            "load_s": round(load_s, 2),
            "steps": steps,
            "slides_per_s": round(seen / steady, 2) if steady > 0 else None,
            "peak_rss_mb": round(main + kids),
            "main_peak_mb": round(main),
            "readers_peak_mb": round(kids),
        }
    )
    return out


def in_memory(steps: int = 40, batch: int = 64) -> list[dict[str, Any]]:
    """Small bags already in memory (a ``sequence`` table): the block trained on padded bags with a
    mask against the same bags packed with offsets; samples/s of forward + backward + Adam step
    (loss: mean square of the head's output), 2 threads, in this process."""
    import torch

    from common.bench.runner import load_dataset
    from common.tasks import TaskSpec

    image = load_dataset("mfeat").modalities["image"]
    cases: list[tuple[str, torch.Tensor, torch.Tensor]] = [
        ("mfeat image: 12 patches of 20 features (real)", image.x, image.mask)
    ]
    rng = np.random.default_rng(0)
    for median in (64, 512):
        lengths = np.clip(
            np.round(np.exp(rng.normal(np.log(median), 0.45, size=512))), 4, 4 * median
        ).astype(int)
        x = torch.from_numpy(rng.normal(size=(512, int(lengths.max()), 64)).astype(np.float32))
        mask = torch.arange(x.shape[1])[None, :] < torch.from_numpy(lengths)[:, None]
        cases.append(
            (
                f"synthetic: lognormal instances, median {median}, 64 features",
                x * mask[..., None],
                mask,
            )
        )
    rows = []
    for name, x, mask in cases:
        spec = TaskSpec("classification", n_classes=2)
        out: dict[str, Any] = {
            "case": name,
            "bags": int(x.shape[0]),
            "longest": int(x.shape[1]),
            "mean_instances": round(float(mask.sum(1).float().mean()), 1),
            "batch": batch,
        }
        for path in ("padded", "ragged"):
            block = _block(int(x.shape[2]), spec)
            block.encoder.pack_below = 0.0  # the padded path as it is, never packed by the encoder
            opt = torch.optim.Adam(block.parameters(), lr=1e-4)
            gen = torch.Generator().manual_seed(0)
            t, seen = 0.0, 0
            for step in range(steps + 3):
                rows_ = torch.randint(0, x.shape[0], (batch,), generator=gen)
                xb, mb = x[rows_], mask[rows_]
                start = time.perf_counter()
                if path == "padded":
                    longest = int(mb.sum(1).max())
                    logits = block(xb[:, :longest], mb[:, :longest])
                else:
                    offsets = torch.zeros(batch + 1, dtype=torch.long)
                    torch.cumsum(mb.sum(1), 0, out=offsets[1:])
                    logits = block(xb[mb], None, offsets)
                loss = logits.float().pow(2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if step >= 3:  # warm-up steps are not timed
                    t += time.perf_counter() - start
                    seen += batch
            out[f"{path}_samples_per_s"] = round(seen / t, 1)
        out["ragged_over_padded"] = round(
            out["ragged_samples_per_s"] / out["padded_samples_per_s"], 2
        )
        print(f"   in-memory {name}: {out}", file=sys.stderr)
        rows.append(out)
    return rows


def measure(
    path: str, folder: Path, slides: int, args: argparse.Namespace, max_instances: int | None = None
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        path,
        "--folder",
        str(folder),
        "--slides",
        str(slides),
        "--steps",
        str(args.steps),
        "--batch",
        str(args.batch),
        "--workers",
        str(args.workers),
        "--max-instances",
        str(args.max_instances if max_instances is None else max_instances),
    ]
    done = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    if done.returncode != 0:
        return {"slides": slides, "path": path, "error": (done.stderr or done.stdout)[-1500:]}
    row = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{path:>12} {slides:>5} slides: {row}", file=sys.stderr)
    return {"slides": slides, "path": path, **row}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("docs/results/bags.json"))
    ap.add_argument(
        "--work",
        type=Path,
        default=Path("/tmp/mmlego-bag-bench"),
        help="where the cohort is written (13 GB)",
    )
    ap.add_argument("--sizes", type=int, nargs="+", default=[200, 500, 1000])
    ap.add_argument("--padded-sizes", type=int, nargs="+", default=[25, 50, 100])
    ap.add_argument(
        "--steps",
        type=int,
        default=12,
        help="training batches per measurement (the first is timed apart)",
    )
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-instances", type=int, default=2048)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--folder", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--slides", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "in-memory":
        print(json.dumps(in_memory()))
        return
    if args.child:
        print(json.dumps(child(args)))
        return
    from common.data.slidecohort import SlideCohort, write_slide_cohort

    t0 = time.monotonic()
    cohort = args.work / "cohort"
    big = max(args.sizes)
    if (
        not (cohort / "data.toml").is_file()
        or len((cohort / "slides.csv").read_text().splitlines()) - 1 < big
    ):
        write_slide_cohort(cohort, SlideCohort(slides=big, genes=0))
    generate_s = round(time.monotonic() - t0, 1)
    rows, extra = [], []
    for n in args.sizes:
        folder = view(cohort, n, args.work)
        rows.append(measure("ragged", folder, n, args))
        full = measure("stats-full", folder, n, args)
        rows[-1].update({k: v for k, v in full.items() if k.startswith(("stats_full", "sample_"))})
        rows.append(measure("padded", folder, n, args, max_instances=0))
    for n in (
        args.padded_sizes
    ):  # where the dense path fits: the same instances (all), ragged against padded
        folder = view(cohort, n, args.work)
        rows.append(measure("padded", folder, n, args, max_instances=0))
        extra.append(measure("ragged", folder, n, args, max_instances=0))
    small = view(cohort, min(args.sizes), args.work)
    for cap in (args.max_instances, 0):  # packing against per-batch padding of the same instances
        extra.append(measure("ragged", small, min(args.sizes), args, max_instances=cap))
        extra.append(measure("padded-batch", small, min(args.sizes), args, max_instances=cap))
    done = subprocess.run(
        [sys.executable, __file__, "--child", "in-memory"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    small_bags = (
        json.loads(done.stdout.strip().splitlines()[-1])
        if done.returncode == 0
        else [{"error": done.stderr[-1500:]}]
    )
    doc = {
        "command": "python bench/bag_bench.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, no GPU; "
        f"Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "cohort": {"generate_s": generate_s, **SlideCohort(slides=big, genes=0).__dict__},
        "rows": rows,
        "extra": extra,
        "in_memory": small_bags,
        "wall_s": round(time.monotonic() - t0, 1),
    }
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(
        json.dumps(
            [
                {
                    k: r.get(k)
                    for k in (
                        "slides",
                        "path",
                        "peak_rss_mb",
                        "slides_per_s",
                        "first_batch_s",
                        "out_of_memory",
                    )
                }
                for r in rows
            ],
            indent=1,
        )
    )


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
