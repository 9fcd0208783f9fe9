"""SIGKILL of a real coordinator process while sites upload; after a restart no accepted block is
lost, no partial block is visible, and every site finishes by resuming."""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.artifacts import sha256_file
from common.artifacts.blockfile import read_block_files
from common.client import CallError, RegistryClient, Retry
from common.lego import EncoderConfig, LegoBlock
from coordinator.config import render_config
from coordinator.launch import CoordinatorProcess, free_port
from tests.coordinator.conftest import TASK, Consortium, signed_block
from tests.factories import block


@pytest.fixture()
def process(consortium: Consortium, tmp_path: Path) -> Iterator[tuple[CoordinatorProcess, str, Path]]:
    port = free_port()
    server = consortium.root / "server"
    (tmp_path / "coordinator.toml").write_text(render_config(
        f"127.0.0.1:{port}", str(server / "server.crt"), str(server / "server.key"), str(server / "ca.crt"),
        str(consortium.root / "ca" / "crl.pem"), store=str(tmp_path / "store")))
    p = CoordinatorProcess(tmp_path / "coordinator.toml", tmp_path / "coordinator.log")
    try:
        p.start()
        yield p, f"127.0.0.1:{port}", tmp_path / "store"
    finally:
        p.stop()


def partial_bytes(store: Path) -> int:
    total = 0
    for p in (store / "uploads").iterdir():
        try:
            total += p.stat().st_size
        except FileNotFoundError:
            pass  # it just became a blob
    return total


def check_invariants(store: Path, acknowledged: set[str]) -> set[str]:
    """Every acknowledged block is recorded and intact; every record has its intact blob; no blob
    without a record. Returns the recorded block ids."""
    with sqlite3.connect(store / "registry.sqlite") as con:
        rows = dict(con.execute("SELECT block_id, state FROM blocks").fetchall())
    assert acknowledged <= set(rows), f"lost accepted blocks: {acknowledged - set(rows)}"
    assert set(rows.values()) <= {"accepted"}
    blobs = {p.name: p for p in (store / "blobs").glob("*/*")}
    assert set(rows) == set(blobs), "a blob without a record or a record without a blob"
    for sha, path in blobs.items():
        assert sha256_file(path) == sha
    return set(rows)


def test_sigkill_during_uploads_loses_nothing_and_exposes_nothing(consortium: Consortium, process: tuple[CoordinatorProcess, str, Path],
                                                                  tmp_path: Path) -> None:
    proc, address, store = process
    with RegistryClient(address, consortium.tls("ops")) as admin:
        admin.create_task(TASK)
    enc = EncoderConfig(kind="tabular", in_features=120_000, token_dim=16, n_tokens=3, hidden=32, dropout=0.0)
    folders = []
    for i in range(8):
        b = LegoBlock(block(modality="genes").config.with_(encoder=enc))
        folders.append(signed_block(consortium, "hosp-a", tmp_path / f"b{i}", b=b))
    ids = {read_block_files(f).manifest.weights_sha256 for f in folders}
    acknowledged: set[str] = set()
    rng = random.Random(0)
    interrupted = 0  # uploads cut mid-stream by a kill (their partial files were on disk)
    for _cycle in range(3):
        def upload(folder: Path) -> None:
            try:
                with RegistryClient(address, consortium.tls("hosp-a"), timeout_s=10) as c:
                    rec, _ = c.push(folder, Retry(attempts=1))
                acknowledged.add(rec.block_id)
            except CallError:
                pass  # the coordinator died under it

        before = partial_bytes(store)
        threads = [threading.Thread(target=upload, args=(f,)) for f in folders]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while partial_bytes(store) <= before and time.monotonic() < deadline:
            time.sleep(0.005)  # wait until bytes are flowing, then kill at a random moment
        time.sleep(rng.uniform(0.0, 0.2))
        proc.kill()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads)
        interrupted += sum(1 for p in (store / "uploads").iterdir() if p.stat().st_size > 0)
        proc.start()
        check_invariants(store, acknowledged)
    assert interrupted > 0, "no kill landed during an upload; the test did not test anything"
    with RegistryClient(address, consortium.tls("hosp-a"), timeout_s=30) as c:
        for f in folders:
            c.push(f, Retry(attempts=5, base_s=0.05))
    assert check_invariants(store, acknowledged) == ids
    for f in folders:
        sha = read_block_files(f).manifest.weights_sha256
        assert (store / "blobs" / sha[:2] / sha).read_bytes() == (f / "weights.safetensors").read_bytes()
