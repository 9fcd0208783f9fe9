"""How the admin console and ``mmlego admin status`` hold up as a registry grows: a real
coordinator process (mutual TLS on loopback, a real SQLite store) holding S sites with two small
signed blocks each, V merged versions and R fuse-run records; the console in this process reads it
with an admin kit. Per page: median and 95th percentile of the time to a complete page over N
requests (urllib, one at a time), and its size; and the GetStatus call alone.

    .venv/bin/python bench/console_bench.py --sites 20 200 --out docs/results/console.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import torch

from admin.console import make_console
from common.admin import AdminClient, AdminKit
from common.artifacts import load_signing_key, save_block
from common.client import RegistryClient, Retry, TLSFiles
from common.fuse.history import RoundRecord, RoundValidation
from common.lego import EncoderConfig, LegoBlock
from common.pki import CertificateAuthority, enroll_admin, enroll_site, server_credentials
from common.records import TaskRecord
from common.tasks import TaskSpec
from coordinator import fuse_run
from coordinator.config import (
    CoordinatorFile,
    EvaluationSection,
    ServerSection,
    ServerTLSSection,
    StoreSection,
    render_config,
)
from coordinator.launch import CoordinatorProcess, free_port
from coordinator.store import Store

TASK = TaskRecord(
    "bench",
    TaskSpec("survival", n_bins=4, bin_edges=(1.0, 2.0, 3.0)),
    latent_rows=8,
    latent_dim=16,
    modalities=("genes", "clinical"),
)
PAGES = ("/", "/blocks", "/versions", "/fuse", "/versions/bench-v1")


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def consortium(
    root: Path, sites: int, versions: int, runs: int
) -> tuple[CoordinatorProcess, Path, str]:
    ca = CertificateAuthority.init(root / "ca")
    server_credentials(ca, "coordinator", ["127.0.0.1"], root / "server")
    port = free_port()
    config = root / "coordinator.toml"
    s = root / "server"
    config.write_text(
        render_config(
            CoordinatorFile(
                server=ServerSection(listen=f"127.0.0.1:{port}"),
                tls=ServerTLSSection(
                    cert=str(s / "server.crt"),
                    key=str(s / "server.key"),
                    ca=str(s / "ca.crt"),
                    crl=str(root / "ca" / "crl.pem"),
                ),
                store=StoreSection(path=str(root / "store")),
                evaluation=EvaluationSection(deadline_s=0),
            )
        )
    )
    coord = CoordinatorProcess(config, root / "coordinator.log")
    coord.start()
    address = f"127.0.0.1:{port}"
    enroll_admin(ca, "ops", root / "ops", coordinator=address)
    ops = AdminKit.load(root / "ops")
    with AdminClient(ops) as admin:
        admin.create_task(TASK)
    for i in range(sites):
        name = f"hosp-{i:03d}"
        kit = enroll_site(ca, name, ["genes", "clinical"], root / "kits" / name, paired=i % 4 == 0)
        with RegistryClient(
            address, TLSFiles(kit / "tls.crt", kit / "tls.key", kit / "ca.crt")
        ) as client:
            for j, modality in enumerate(("genes", "clinical")):
                torch.manual_seed(i * 2 + j)
                block = LegoBlock(
                    TASK.block_config(
                        modality,
                        EncoderConfig(
                            kind="tabular", in_features=16, token_dim=16, n_tokens=3, hidden=32
                        ),
                    )
                )
                out = root / "blocks" / f"{name}-{modality}"
                save_block(
                    block,
                    out,
                    site=name,
                    task_id=TASK.task_id,
                    signing_key=load_signing_key(kit / "signing.key"),
                    train_stats={"n_train": 100.0 + i, "n_val": 20.0, "val_metric": 0.6},
                )
                client.push(out, Retry(attempts=3))
    with AdminClient(ops) as admin:
        for _ in range(versions):
            admin.merge(TASK.task_id, measure=False)
    store = Store(root / "store", recover=False)
    try:
        for r in range(runs):  # records as the ServerApp writes them (the console reads only these)
            key = f"bench-run-{r}"
            fuse_run.begin(store, key, "bench-v1")
            history = [
                RoundRecord(
                    round=k,
                    sites=tuple(f"hosp-{i:03d}" for i in range(0, sites, 4)),
                    num_examples=1000,
                    train_loss=1.0 / k,
                    seconds=5.0,
                    validation=RoundValidation(value=0.6, parent=0.6, diff=0.0, se_diff=0.01),
                )
                for k in range(1, 7)
            ]
            fuse_run.finish(
                store, key, "not-stored", reason="no round beat the parent", history=history
            )
    finally:
        store.close()
    return coord, root / "ops", address


def measure(sites: int, versions: int, runs: int, repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        coord, ops, _ = consortium(Path(tmp), sites, versions, runs)
        build_s = time.perf_counter() - t0
        try:
            row: dict[str, Any] = {
                "sites": sites,
                "blocks": 2 * sites,
                "versions": versions,
                "fuse_runs": runs,
                "build_s": round(build_s, 1),
                "pages": {},
            }
            with (
                AdminClient(AdminKit.load(ops)) as client,
                make_console(client, listen="127.0.0.1:0") as console,
            ):
                times = []
                for _ in range(repeats):
                    t = time.perf_counter()
                    client.status()
                    times.append(time.perf_counter() - t)
                row["get_status_ms"] = {
                    "median": round(1e3 * statistics.median(times), 1),
                    "p95": round(1e3 * percentile(times, 95), 1),
                }
                for page in PAGES:
                    times, size = [], 0
                    for _ in range(repeats):
                        t = time.perf_counter()
                        with urllib.request.urlopen(
                            console.url.rstrip("/") + page, timeout=60
                        ) as r:
                            size = len(r.read())
                        times.append(time.perf_counter() - t)
                    row["pages"][page] = {
                        "median_ms": round(1e3 * statistics.median(times), 1),
                        "p95_ms": round(1e3 * percentile(times, 95), 1),
                        "kb": round(size / 1e3, 1),
                    }
            row["coordinator_peak_rss_mb"] = round(coord.peak_rss_bytes() / 1e6)
        finally:
            coord.stop()
        print(json.dumps(row), flush=True)
        return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sites", type=int, nargs="+", default=[20, 200])
    ap.add_argument("--versions", type=int, default=20)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    rows = [measure(n, args.versions, args.runs, args.repeats) for n in args.sites]
    result = {
        "command": "python " + " ".join(sys.argv),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "rows": rows,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
