"""Faults around the coordinator's store, with a real server: the SQLite file locked by another
process, and the disk filling up during a blob write (a coordinator process whose files may not
grow past 1 MiB, as on a full disk). Each gets a clear status, nothing is stored, and the
coordinator serves normally once the fault is gone."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc

from common.client import RegistryClient
from coordinator.config import FlowerSection
from coordinator.launch import free_port
from coordinator.server import serve
from tests.coordinator.conftest import NO_RETRY, TASK, Consortium, serving, signed_block, stored
from tests.coordinator.test_security import refused
from tests.factories import block

LOCKER = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(600)
"""


def test_a_database_locked_by_another_process_gets_unavailable_and_stores_nothing(
    consortium: Consortium, tmp_path: Path
) -> None:
    cfg = consortium.config(store=tmp_path / "store", busy_timeout_s=1.0)
    with serving(consortium, cfg) as address:
        folder = signed_block(consortium, "hosp-a", tmp_path / "b")
        locker = subprocess.Popen(
            [sys.executable, "-c", LOCKER, str(cfg.store / "registry.sqlite")],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
            with RegistryClient(address, consortium.tls("hosp-a"), timeout_s=30) as site:
                refused(
                    lambda: site.push(folder, NO_RETRY),
                    grpc.StatusCode.UNAVAILABLE,
                    "database is locked",
                )
                assert [t.task_id for t in site.tasks()] == ["t1"]  # reads go on (WAL)
        finally:
            locker.kill()
            locker.wait(10)
        assert stored(cfg) == (0, 0)
        with RegistryClient(address, consortium.tls("hosp-a")) as site:
            _, present = site.push(folder, NO_RETRY)
        assert not present and stored(cfg) == (1, 1)


def _small_disk() -> (
    None
):  # in the coordinator process: files may not grow past 1 MiB; a write past it fails (EFBIG)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))


def test_a_full_disk_during_a_blob_write_is_refused_and_the_coordinator_goes_on(
    consortium: Consortium, tmp_path: Path
) -> None:
    port = free_port()
    config = consortium.coordinator_toml(tmp_path / "coordinator.toml", f"127.0.0.1:{port}")
    log = open(tmp_path / "coordinator.log", "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from common.cli import run; run()",
            "coordinator",
            "serve",
            "--config",
            str(config),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=_small_disk,
    )
    try:
        deadline = time.monotonic() + 60
        while b"listening on" not in (tmp_path / "coordinator.log").read_bytes():
            assert proc.poll() is None and time.monotonic() < deadline, (
                tmp_path / "coordinator.log"
            ).read_text()
            time.sleep(0.1)
        address = f"127.0.0.1:{port}"
        with RegistryClient(address, consortium.tls("ops")) as admin:
            admin.create_task(TASK)
        big = signed_block(
            consortium, "hosp-a", tmp_path / "big", b=block(modality="genes", in_features=20_000)
        )  # ~2.6 MB
        assert (big / "weights.safetensors").stat().st_size > 2 << 20
        with RegistryClient(address, consortium.tls("hosp-a"), timeout_s=30) as site:
            refused(
                lambda: site.push(big, NO_RETRY), grpc.StatusCode.RESOURCE_EXHAUSTED, "disk is full"
            )
            assert site.blocks("t1") == []
            record, _ = site.push(
                signed_block(consortium, "hosp-a", tmp_path / "small"), NO_RETRY
            )  # room for this one
            assert [b.block_id for b in site.blocks("t1")] == [record.block_id]
        assert proc.poll() is None, "the coordinator died"
        assert len(list((tmp_path / "store" / "blobs").glob("*/*"))) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_clocks_off_by_hours_fail_the_handshake_with_a_hint_to_check_them(
    consortium: Consortium, tmp_path: Path
) -> None:
    """A site whose clock is hours behind sees the coordinator's fresh certificate as not yet valid;
    a kit issued by a CA whose clock was hours ahead is not yet valid for the coordinator. Both end
    in the handshake; the site is told to check the clocks, and nothing is stored."""
    import datetime as dt

    from common.pki import Identity, enroll_site, server_credentials
    from common.pki.ca import key_pem, new_key

    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)
    key = new_key()
    cert = consortium.ca.issue(
        Identity("coordinator", "server"), key.public_key(), hosts=("127.0.0.1",), not_before=later
    )
    from cryptography.hazmat.primitives import serialization

    skewed = tmp_path / "server-skewed"
    server_credentials(
        consortium.ca, "coordinator", ["127.0.0.1"], skewed
    )  # the folder layout; the cert is replaced
    (skewed / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (skewed / "server.key").write_bytes(key_pem(key))
    folder = signed_block(consortium, "hosp-a", tmp_path / "b")
    cfg = consortium.config(
        store=tmp_path / "store", cert=skewed / "server.crt", key=skewed / "server.key"
    )
    with serve(cfg) as running:
        with RegistryClient(
            f"127.0.0.1:{running.port}", consortium.tls("hosp-a"), timeout_s=10
        ) as site:
            refused(lambda: site.push(folder, NO_RETRY), grpc.StatusCode.UNAVAILABLE, "clocks")
        assert stored(cfg) == (0, 0)

    kit = tmp_path / "kit-ahead"
    enroll_site(consortium.ca, "hosp-ahead", ["genes"], kit)
    cfg = consortium.config(store=tmp_path / "store2")
    from common.client import TLSFiles

    tls = TLSFiles(kit / "tls.crt", kit / "tls.key", kit / "ca.crt")
    with (
        serve(cfg) as running,
        RegistryClient(f"127.0.0.1:{running.port}", tls, timeout_s=10) as site,
    ):
        assert site.tasks() == []  # the kit as issued works
    ahead_key = new_key()  # the same site, certified again by a CA whose clock is 3 hours ahead
    consortium.ca.revoke("hosp-ahead")
    ahead = consortium.ca.issue(
        Identity("hosp-ahead", "site", ("genes",), False, b"\0" * 32),
        ahead_key.public_key(),
        not_before=later,
    )
    (kit / "tls.crt").write_bytes(ahead.public_bytes(serialization.Encoding.PEM))
    (kit / "tls.key").write_bytes(key_pem(ahead_key))
    with (
        serve(cfg) as running,
        RegistryClient(f"127.0.0.1:{running.port}", tls, timeout_s=10) as site,
    ):
        refused(site.tasks, grpc.StatusCode.UNAVAILABLE, "clocks")


def test_fuse_with_the_superlink_down_says_so(consortium: Consortium, tmp_path: Path) -> None:
    config = consortium.coordinator_toml(
        tmp_path / "coordinator.toml",
        "127.0.0.1:0",
        flower=FlowerSection(superlink=f"127.0.0.1:{free_port()}"),  # nothing listens there
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from common.cli import run; run()",
            "coordinator",
            "fuse",
            "--model",
            "t1-v1",
            "--mode",
            "stack",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "is not reachable; is `mmlego coordinator superlink` running?" in done.stderr, (
        done.stderr
    )
