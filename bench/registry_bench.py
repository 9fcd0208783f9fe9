"""Registry benchmarks (docs/RESULTS.md, section "Block registry"): a real coordinator process
with mutual TLS on loopback and a real SQLite store.

1. Upload + verify throughput of 1, 100 and 500 MB blocks, as a ratio to a plain mutual-TLS
   socket (Python ssl) sending the same bytes to another process on the same machine, same run.
2. 100 sites uploading a 5 MB block each, concurrently: all accepted? p50/p99 latency, the
   coordinator's peak memory.
3. Merge latency (the Merge RPC) for 2, 10 and 50 blocks of a 1000-feature omics block.

Run: .venv/bin/python bench/registry_bench.py --out docs/results/registry.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import socket
import ssl
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import torch

from common.artifacts import load_signing_key, save_block
from common.client import RegistryClient, Retry, TLSFiles
from common.lego import EncoderConfig, LegoBlock
from common.pki import CertificateAuthority, enroll_admin, enroll_site, server_credentials
from common.records import TaskRecord
from common.tasks import TaskSpec
from coordinator.config import (
    CoordinatorFile,
    ServerSection,
    ServerTLSSection,
    StoreSection,
    render_config,
)
from coordinator.launch import CoordinatorProcess, free_port

MB = 1 << 20
TASK = TaskRecord(
    "bench", TaskSpec("survival", n_bins=4, bin_edges=(1.0, 2.0, 3.0)), modalities=("genes",)
)


def features_for(mb: float) -> int:
    """Tabular input width giving a block of about ``mb`` MiB (encoder: F x 128 weights + 2 F
    scaling)."""
    return max(8, int(mb * MB / (4 * 130)))


def write_block(
    root: Path, site_kit: Path, site: str, mb: float, seed: int, task: TaskRecord = TASK
) -> Path:
    torch.manual_seed(seed)
    enc = EncoderConfig(kind="tabular", in_features=features_for(mb), token_dim=64, n_tokens=4)
    block = LegoBlock(task.block_config("genes", enc))
    out = root / f"{site}-{task.task_id}-{seed}"
    save_block(
        block,
        out,
        site=site,
        task_id=task.task_id,
        signing_key=load_signing_key(site_kit / "signing.key"),
    )
    return out


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


# ---- the plain TLS baseline ---------------------------------------------------------------------
def tls_receiver(port: int, server_dir: str, ready: Any) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(f"{server_dir}/server.crt", f"{server_dir}/server.key")
    ctx.load_verify_locations(f"{server_dir}/ca.crt")
    ctx.verify_mode = ssl.CERT_REQUIRED
    with socket.create_server(("127.0.0.1", port)) as srv:
        ready.set()
        while True:
            conn, _ = srv.accept()
            with ctx.wrap_socket(conn, server_side=True) as tls:
                head = tls.recv(9)
                n, durable = int.from_bytes(head[:8], "little"), head[8:] == b"1"
                if n == 0:
                    return
                got, buf = 0, bytearray(MB)
                sink = open(f"{server_dir}/received.bin", "wb") if durable else None
                while got < n:
                    k = tls.recv_into(buf)
                    if not k:
                        break
                    got += k
                    if sink:
                        sink.write(memoryview(buf)[:k])
                if sink:
                    sink.flush()
                    os.fsync(sink.fileno())
                    sink.close()
                tls.sendall(b"ok")


def tls_send(port: int, kit: TLSFiles, path: Path, durable: bool = False) -> float:
    """Seconds to send ``path`` over a fresh mutual-TLS socket; ``durable``: the receiver also
    writes the bytes to a file and fsyncs it before it answers."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(kit.ca)
    ctx.load_cert_chain(kit.cert, kit.key)
    size = path.stat().st_size
    t0 = time.perf_counter()
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(size.to_bytes(8, "little") + (b"1" if durable else b"0"))
        with open(path, "rb") as f:
            while buf := f.read(MB):
                tls.sendall(buf)
        assert tls.recv(2) == b"ok"
    return time.perf_counter() - t0


def tls_stop(port: int, kit: TLSFiles) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(kit.ca)
    ctx.load_cert_chain(kit.cert, kit.key)
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall((0).to_bytes(8, "little") + b"0")


# ---- the benchmark ------------------------------------------------------------------------------
class Bench:
    def __init__(self, root: Path, n_sites: int, workers: int) -> None:
        self.root = root
        self.ca = CertificateAuthority.init(root / "ca")
        server_credentials(self.ca, "coordinator", ["127.0.0.1"], root / "server")
        enroll_admin(self.ca, "ops", root / "kits" / "ops")
        self.sites = [f"site-{i:03d}" for i in range(n_sites)]
        for s in self.sites:
            enroll_site(self.ca, s, ["genes"], root / "kits" / s)
        self.port = free_port()
        s = root / "server"
        (root / "coordinator.toml").write_text(
            render_config(
                CoordinatorFile(
                    server=ServerSection(listen=f"127.0.0.1:{self.port}", workers=workers),
                    tls=ServerTLSSection(
                        cert=str(s / "server.crt"), key=str(s / "server.key"), ca=str(s / "ca.crt")
                    ),
                    store=StoreSection(path=str(root / "store")),
                )
            )
        )
        self.proc = CoordinatorProcess(root / "coordinator.toml", root / "coordinator.log")
        self.proc.start()
        self.address = f"127.0.0.1:{self.port}"
        with self.client("ops") as admin:
            admin.create_task(TASK)

    def tls(self, who: str) -> TLSFiles:
        k = self.root / "kits" / who
        return TLSFiles(k / "tls.crt", k / "tls.key", k / "ca.crt")

    def client(self, who: str) -> RegistryClient:
        return RegistryClient(self.address, self.tls(who), timeout_s=120)

    def restart(self) -> float:
        """A fresh coordinator process on the same store (so peak memory is per test); returns its
        idle RSS in MiB."""
        self.proc.stop()
        self.proc.start()
        time.sleep(0.5)
        return self.proc.peak_rss_bytes() / MB

    def close(self) -> None:
        self.proc.stop()


def throughput(b: Bench, sizes: list[int], reps: int, scratch: Path) -> list[dict[str, Any]]:
    port = free_port()
    ready = mp.get_context("fork").Event()
    receiver = mp.get_context("fork").Process(
        target=tls_receiver, args=(port, str(b.root / "server"), ready), daemon=True
    )
    receiver.start()
    ready.wait(30)
    rows = []
    site = b.sites[0]
    try:
        for mb in sizes:
            for r in range(reps if mb < 500 else max(1, reps - 1)):
                folder = write_block(scratch, b.root / "kits" / site, site, mb, seed=1000 * mb + r)
                size = (folder / "weights.safetensors").stat().st_size
                plain = tls_send(port, b.tls(site), folder / "weights.safetensors")
                durable = tls_send(port, b.tls(site), folder / "weights.safetensors", durable=True)
                with b.client(site) as c:
                    t0 = time.perf_counter()
                    _, present = c.push(folder, Retry(attempts=1))
                    grpc_s = time.perf_counter() - t0
                assert not present
                rows.append(
                    {
                        "size_mb": round(size / MB, 1),
                        "rep": r,
                        "mmlego_s": grpc_s,
                        "plain_tls_s": plain,
                        "plain_tls_fsync_s": durable,
                        "mmlego_mb_s": size / MB / grpc_s,
                        "plain_tls_mb_s": size / MB / plain,
                        "plain_tls_fsync_mb_s": size / MB / durable,
                        "ratio": plain / grpc_s,
                        "ratio_to_durable": durable / grpc_s,
                    }
                )
                print(
                    f"  {size / MB:7.1f} MB  mmlego {size / MB / grpc_s:7.1f} MB/s"
                    f"  plain TLS {size / MB / plain:7.1f} MB/s"
                    f"  (+fsync'd file {size / MB / durable:7.1f} MB/s)"
                    f"  ratio {plain / grpc_s:.2f} ({durable / grpc_s:.2f})",
                    flush=True,
                )
                shutil.rmtree(folder)
    finally:
        tls_stop(port, b.tls(site))
        receiver.join(10)
    return rows


def concurrent(b: Bench, n: int, mb: float, scratch: Path) -> dict[str, Any]:
    idle = b.restart()
    folders = {
        s: write_block(scratch, b.root / "kits" / s, s, mb, seed=i)
        for i, s in enumerate(b.sites[:n])
    }
    latencies: dict[str, float] = {}
    errors: list[str] = []
    start = threading.Barrier(n)

    def one(site: str) -> None:
        with b.client(site) as c:
            start.wait()
            t0 = time.perf_counter()
            try:
                _, present = c.push(folders[site], Retry(attempts=1))
                if present:
                    errors.append(f"{site}: unexpectedly already present")
            except Exception as exc:
                errors.append(f"{site}: {exc}")
                return
            latencies[site] = time.perf_counter() - t0

    t0 = time.perf_counter()
    threads = [threading.Thread(target=one, args=(s,)) for s in folders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    wall = time.perf_counter() - t0
    with b.client("ops") as admin:
        stored = len(admin.blocks("bench"))
    lat = list(latencies.values())
    out = {
        "uploads": n,
        "block_mb": round(
            (next(iter(folders.values())) / "weights.safetensors").stat().st_size / MB, 2
        ),
        "accepted": len(lat),
        "errors": errors[:5],
        "wall_s": wall,
        "p50_s": percentile(lat, 50) if lat else None,
        "p99_s": percentile(lat, 99) if lat else None,
        "max_s": max(lat) if lat else None,
        "blocks_listed": stored,
        "coordinator_idle_rss_mb": idle,
        "coordinator_peak_rss_mb": b.proc.peak_rss_bytes() / MB,
    }
    print(f"  {n} concurrent uploads: {out}", flush=True)
    for f in folders.values():
        shutil.rmtree(f)
    return out


def merges(b: Bench, counts: list[int], reps: int, scratch: Path) -> list[dict[str, Any]]:
    b.restart()
    rows = []
    for n in counts:
        task = TaskRecord(f"merge{n}", TASK.spec, modalities=("genes",), init_seed=n)
        with b.client("ops") as admin:
            admin.create_task(task)
        for i, site in enumerate(b.sites[:n]):
            folder = write_block(
                scratch, b.root / "kits" / site, site, 0.5, seed=10_000 + i, task=task
            )
            with b.client(site) as c:
                c.push(folder, Retry(attempts=1))
            shutil.rmtree(folder)
        with b.client("ops") as admin:
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                m = admin.merge(task.task_id)
                times.append(time.perf_counter() - t0)
                assert len(m.block_ids) == n
        size = m.card["blocks"][0]["size"]
        rows.append(
            {
                "blocks": n,
                "block_mb": round(size / MB, 2),
                "median_s": statistics.median(times),
                "max_s": max(times),
                "reps": reps,
            }
        )
        print(
            f"  merge of {n} blocks ({size / MB:.2f} MB each): "
            f"median {statistics.median(times):.3f} s",
            flush=True,
        )
    return rows


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "grpcio": grpc.__version__,
        "platform": platform.platform(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs/results/registry.json"))
    ap.add_argument(
        "--sizes", default="1,100,500", help="block sizes in MB for the throughput test"
    )
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--concurrent", type=int, default=100)
    ap.add_argument("--concurrent-mb", type=float, default=5.0)
    ap.add_argument("--merge-blocks", default="2,10,50")
    ap.add_argument(
        "--workers",
        type=int,
        default=64,
        help="the coordinator's RPC workers (coordinator.toml default)",
    )
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    counts = [int(x) for x in args.merge_blocks.split(",")]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mmlego-bench-") as tmp:
        root = Path(tmp)
        b = Bench(root, max(args.concurrent, max(counts)), args.workers)
        try:
            print("throughput", flush=True)
            tp = throughput(b, sizes, args.reps, root)
            print("concurrent uploads", flush=True)
            conc = concurrent(b, args.concurrent, args.concurrent_mb, root)
            print("merge latency", flush=True)
            mg = merges(b, counts, args.reps, root)
        finally:
            b.close()
    result = {
        "command": "python bench/registry_bench.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
        "machine": machine(),
        "wall_s": time.perf_counter() - t0,
        "throughput": tp,
        "concurrent": conc,
        "merge": mg,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out} ({result['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
