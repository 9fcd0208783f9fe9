"""SIGKILL of a real coordinator process while sites upload and while it merges; after a restart
no accepted block or version is lost, nothing partial is visible, and every site finishes by
resuming."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.artifacts import load_signing_key, save_block, sha256_file
from common.artifacts.blockfile import read_block_files
from common.client import CallError, RegistryClient, Retry, TLSFiles
from common.client.registry import upload_id_of
from common.lego import EncoderConfig, LegoBlock
from common.pki import enroll_site
from common.serde import model_from_bytes
from coordinator.config import EvaluationSection
from coordinator.launch import CoordinatorProcess, free_port
from tests.coordinator.conftest import TASK, Consortium, signed_block
from tests.factories import block


@pytest.fixture()
def process(
    consortium: Consortium, tmp_path: Path
) -> Iterator[tuple[CoordinatorProcess, str, Path]]:
    port = free_port()
    consortium.coordinator_toml(
        tmp_path / "coordinator.toml",
        f"127.0.0.1:{port}",
        crl=True,
        evaluation=EvaluationSection(deadline_s=0),
    )
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


def test_sigkill_during_uploads_loses_nothing_and_exposes_nothing(
    consortium: Consortium, process: tuple[CoordinatorProcess, str, Path], tmp_path: Path
) -> None:
    proc, address, store = process
    with RegistryClient(address, consortium.tls("ops")) as admin:
        admin.create_task(TASK)
    enc = EncoderConfig(
        kind="tabular", in_features=120_000, token_dim=16, n_tokens=3, hidden=32, dropout=0.0
    )
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
        assert (store / "blobs" / sha[:2] / sha).read_bytes() == (
            f / "weights.safetensors"
        ).read_bytes()


def check_versions(store: Path, acknowledged: dict[str, str]) -> list[str]:
    """Every acknowledged version is there with the same weights; every version has its intact blob
    and its card files; no model blob without a version; ids run v1..vN with no gap."""
    with sqlite3.connect(store / "registry.sqlite") as con:
        rows = [
            model_from_bytes(bytes(r[0]))
            for r in con.execute("SELECT message FROM models ORDER BY seq")
        ]
        blocks = {r[0] for r in con.execute("SELECT block_id FROM blocks")}
    by_id = {r.model_id: r for r in rows}
    assert [r.model_id for r in rows] == [f"t1-v{i + 1}" for i in range(len(rows))]
    for model_id, sha in acknowledged.items():
        assert by_id[model_id].weights_sha256 == sha, (
            f"lost or changed acknowledged version {model_id}"
        )
    blobs = {p.name: p for p in (store / "blobs").glob("*/*")}
    assert set(blobs) == blocks | {r.weights_sha256 for r in rows}, (
        "a blob without a record or a record without a blob"
    )
    for r in rows:
        assert sha256_file(blobs[r.weights_sha256]) == r.weights_sha256
        folder = store / "models" / r.model_id
        assert (
            json.loads((folder / "card.json").read_text()) == r.card
            and (folder / "card.md").is_file()
        )
    return [r.model_id for r in rows]


def test_sigkill_during_merges_leaves_only_whole_versions(
    consortium: Consortium, process: tuple[CoordinatorProcess, str, Path]
) -> None:
    proc, address, store = process
    with RegistryClient(address, consortium.tls("ops")) as admin:
        admin.create_task(TASK)
    with (
        RegistryClient(address, consortium.tls("hosp-a")) as a,
        RegistryClient(address, consortium.tls("hosp-b")) as b,
    ):
        for seed in range(3):
            a.push(
                signed_block(
                    consortium, "hosp-a", store.parent / f"a{seed}", modality="genes", seed=seed
                )
            )
        b.push(signed_block(consortium, "hosp-b", store.parent / "b", modality="clinical", seed=9))
    acknowledged: dict[str, str] = {}
    rng = random.Random(1)
    cut = 0  # merges in flight when the coordinator died
    for _cycle in range(4):
        stop = threading.Event()

        def merge_until_stopped(stop: threading.Event) -> None:
            nonlocal cut
            with RegistryClient(address, consortium.tls("ops"), timeout_s=10) as admin:
                while not stop.is_set():
                    try:
                        m = admin.merge("t1")
                        acknowledged[m.model_id] = m.weights_sha256
                    except CallError:
                        cut += 1
                        return

        threads = [threading.Thread(target=merge_until_stopped, args=(stop,)) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.3, 1.0))  # merges back to back: the kill lands inside one
        proc.kill()
        stop.set()
        for t in threads:
            t.join(30)
        assert not any(t.is_alive() for t in threads)
        proc.start()
        check_versions(store, acknowledged)
    print(f"merges acknowledged {len(acknowledged)}, cut by a kill {cut}")
    assert cut > 0 and acknowledged, "no kill landed during a merge; the test did not test anything"
    with RegistryClient(address, consortium.tls("ops")) as admin:
        last = admin.merge("t1")  # and merging goes on after the restarts
    assert check_versions(store, acknowledged)[-1] == last.model_id


def site_kit(
    consortium: Consortium, name: str, address: str, root: Path, in_features: int, seed: int = 0
) -> tuple[Path, Path]:
    """A site enrolled for genes (its kit, site.toml naming ``address``) and a signed block of about
    ``in_features`` x 128 bytes, as the site would hold it; returns (kit, block folder)."""
    kit = enroll_site(consortium.ca, name, ["genes"], root / name, coordinator=address)
    enc = EncoderConfig(
        kind="tabular", in_features=in_features, token_dim=16, n_tokens=3, hidden=32, dropout=0.0
    )
    b = LegoBlock(block(modality="genes", seed=seed).config.with_(encoder=enc))
    save_block(
        b,
        kit / "blocks" / "genes",
        site=name,
        task_id="t1",
        train_stats={"n_train": 40.0},
        signing_key=load_signing_key(kit / "signing.key"),
    )
    return kit, kit / "blocks" / "genes"


def test_a_site_process_killed_mid_upload_leaves_nothing_visible_and_resumes(
    consortium: Consortium, process: tuple[CoordinatorProcess, str, Path], tmp_path: Path
) -> None:
    _, address, store = process
    with RegistryClient(address, consortium.tls("ops")) as admin:
        admin.create_task(TASK)
    kit, folder = site_kit(consortium, "hosp-k", address, tmp_path, 400_000)  # ~51 MB
    tls = TLSFiles(kit / "tls.crt", kit / "tls.key", kit / "ca.crt")
    push = [
        sys.executable,
        "-c",
        "from common.cli import run; run()",
        "site",
        "push",
        str(folder),
        "--config",
        str(kit / "site.toml"),
    ]
    site = subprocess.Popen(
        push, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while partial_bytes(store) == 0 and site.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    os.killpg(site.pid, signal.SIGKILL)  # the site's machine dies in the middle of the stream
    site.wait(10)
    size = read_block_files(folder).manifest.weights_size
    with RegistryClient(address, tls) as c:
        files = read_block_files(folder)
        assert files.signature is not None
        held = c.upload_status(upload_id_of(files.manifest_bytes, files.signature))
        assert 0 < held < size, "the kill did not land during the upload"
        assert c.blocks("t1") == []  # nothing partial is visible
    check_invariants(store, set())
    done = subprocess.run(
        push, capture_output=True, text=True, timeout=120
    )  # the site starts again and pushes again
    assert done.returncode == 0 and "accepted: block" in done.stdout, done.stdout + done.stderr
    with RegistryClient(address, tls) as c:
        assert [b.block_id for b in c.blocks("t1")] == [
            read_block_files(folder).manifest.weights_sha256
        ]
    assert check_invariants(store, set()) == {read_block_files(folder).manifest.weights_sha256}
    assert partial_bytes(store) == 0


def test_ten_sites_uploading_through_a_coordinator_restart_all_finish_by_resuming(
    consortium: Consortium, process: tuple[CoordinatorProcess, str, Path], tmp_path: Path
) -> None:
    proc, address, store = process
    with RegistryClient(address, consortium.tls("ops")) as admin:
        admin.create_task(TASK)
    sites = {
        f"hosp-u{i}": site_kit(consortium, f"hosp-u{i}", address, tmp_path, 100_000, seed=i)
        for i in range(10)
    }  # ~13 MB each
    offsets: dict[str, list[int]] = {name: [] for name in sites}
    results: dict[str, str] = {}

    def upload(name: str) -> None:
        kit, folder = sites[name]
        # the site daemon's retry policy (back-off with full jitter, resume from what the
        # coordinator holds) with more attempts than its default 8: beside other test workers a
        # restart can outlast 8 quick refusals of an unlucky site's jitter draws
        try:
            with RegistryClient(
                address, TLSFiles(kit / "tls.crt", kit / "tls.key", kit / "ca.crt")
            ) as c:
                rec, _ = c.push(
                    folder,
                    Retry(attempts=14),
                    on_attempt=lambda _attempt, offset: offsets[name].append(offset),
                )
            results[name] = rec.block_id
        except Exception as exc:  # reported below
            results[name] = f"failed: {exc}"

    threads = [threading.Thread(target=upload, args=(name,)) for name in sites]
    for t in threads:
        t.start()
    total = 10 * read_block_files(sites["hosp-u0"][1]).manifest.weights_size
    deadline = time.monotonic() + 60
    while partial_bytes(store) < total // 5 and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.kill()
    time.sleep(1.0)
    proc.start()
    for t in threads:
        t.join(180)
    assert not any(t.is_alive() for t in threads)
    expected = {
        name: read_block_files(folder).manifest.weights_sha256
        for name, (_, folder) in sites.items()
    }
    assert results == expected, results
    resumed = [name for name, seen in offsets.items() if any(o > 0 for o in seen[1:])]
    print(
        f"ten sites through a restart: attempts {sorted(len(v) for v in offsets.values())}, "
        f"resumed mid-file {len(resumed)}"
    )
    assert resumed, f"no site resumed from a partial upload: {offsets}"
    assert check_invariants(store, set(expected.values())) == set(expected.values())
