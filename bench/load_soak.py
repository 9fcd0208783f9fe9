"""Load and soak of the registry (a real coordinator process, mutual TLS on loopback): N sites
upload at once, then a soak of mixed uploads, lists and downloads from many sites for a fixed
time. Reports errors, p50/p99 latency per operation and the coordinator's resident memory over
time (flat = no growth between the soak's first and last minutes).

    .venv/bin/python bench/load_soak.py --sites 200 --soak-s 600 --out docs/results/soak.json
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from registry_bench import MB, Bench, concurrent, machine, percentile, write_block

from common.client import Retry


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def soak(b: Bench, seconds: float, clients: int, soak_mb: float, scratch: Path) -> dict[str, Any]:
    b.restart()
    lat: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    stop = time.monotonic() + seconds
    memory: list[tuple[float, float]] = []
    t_start = time.monotonic()
    with b.client("ops") as admin:
        model = admin.merge("bench").model_id  # a version to download throughout
    blocks = [x.block_id for x in b.client("ops").blocks("bench")][:50]

    def worker(i: int) -> None:
        rng = random.Random(i)
        site = b.sites[i % len(b.sites)]
        n = 0
        with b.client(site) as c:
            while time.monotonic() < stop:
                op = rng.choices(["upload", "list", "download", "model"], weights=[1, 4, 3, 2])[0]
                t0 = time.perf_counter()
                try:
                    if op == "upload":
                        folder = write_block(
                            scratch / f"w{i}",
                            b.root / "kits" / site,
                            site,
                            soak_mb,
                            seed=10_000 + 1000 * i + n,
                        )
                        n += 1
                        c.push(folder, Retry(attempts=1))
                        shutil.rmtree(folder)
                    elif op == "list":
                        c.blocks("bench")
                        c.tasks()
                    elif op == "download":
                        c.pull_block(rng.choice(blocks), scratch / f"d{i}")
                        shutil.rmtree(scratch / f"d{i}")
                    else:
                        c.model(model)
                except Exception as exc:
                    errors.append(f"{op}: {exc}")
                    continue
                lat[op].append(time.perf_counter() - t0)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        memory.append((round(time.monotonic() - t_start, 1), round(rss_mb(b.proc.pid), 1)))
        time.sleep(5)
    first = [m for t, m in memory if t <= 60]
    last = [m for t, m in memory if t >= seconds - 60]
    out = {
        "seconds": seconds,
        "clients": clients,
        "upload_block_mb": soak_mb,
        "errors": len(errors),
        "error_samples": errors[:5],
        "ops": {
            op: {
                "n": len(v),
                "p50_s": round(percentile(v, 50), 4),
                "p99_s": round(percentile(v, 99), 4),
            }
            for op, v in sorted(lat.items())
        },
        "rss_mb_first_minute_max": max(first) if first else None,
        "rss_mb_last_minute_max": max(last) if last else None,
        "rss_mb_max": max(m for _, m in memory),
        "memory": memory,
    }
    print(json.dumps({k: v for k, v in out.items() if k != "memory"}), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sites", type=int, default=200)
    ap.add_argument(
        "--mb",
        type=float,
        default=1.0,
        help="block size of the concurrent uploads and the soak's uploads",
    )
    ap.add_argument("--soak-s", type=float, default=600)
    ap.add_argument("--soak-mb", type=float, default=0.25, help="block size of the soak's uploads")
    ap.add_argument("--clients", type=int, default=32, help="concurrent clients during the soak")
    ap.add_argument("--out", type=Path, default=Path("docs/results/soak.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mmlego-soak-") as tmp:
        root = Path(tmp)
        b = Bench(root, args.sites, 64)
        try:
            print(f"{args.sites} concurrent uploads", flush=True)
            conc = concurrent(b, args.sites, args.mb, root)
            print(f"soak: {args.soak_s:.0f} s, {args.clients} clients", flush=True)
            sk = soak(b, args.soak_s, args.clients, args.soak_mb, root)
        finally:
            b.close()
    result = {
        "command": " ".join(["python", *sys.argv]),
        "machine": machine(),
        "wall_s": round(time.perf_counter() - t0, 1),
        "concurrent": conc,
        "soak": sk,
        "mb": MB,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out} ({result['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
