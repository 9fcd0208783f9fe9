"""An operator's tools, against a real coordinator: Prometheus metrics and the health endpoint,
`coordinator status`, backup while serving and a restore that checks every file first, and the
rotation of a site's certificate."""

from __future__ import annotations

import json
import shutil
import sqlite3
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from common.admin.render import render_status
from common.client import CallError, RegistryClient, TLSFiles
from common.pki import CAError, enroll_site, renew_kit
from coordinator.flower import NODES_FILE
from coordinator.operations import BackupError, backup, check_backup, restore, status
from coordinator.registry import Registry
from coordinator.server import serve
from tests.coordinator.conftest import TASK, Consortium, signed_block


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric(text: str, line_start: str) -> float:
    (value,) = [
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start)
    ]
    return value


def test_metrics_count_uploads_refusals_and_what_the_store_holds(
    consortium: Consortium, tmp_path: Path
) -> None:
    cfg = replace(consortium.config(store=tmp_path / "store"), metrics_listen="127.0.0.1:0")
    with serve(cfg) as running:
        address, base = f"127.0.0.1:{running.port}", f"http://127.0.0.1:{running.metrics_port}"
        assert get(base + "/healthz") == (200, "ok")
        with RegistryClient(address, consortium.tls("ops")) as admin:
            admin.create_task(TASK)
            with RegistryClient(address, consortium.tls("hosp-a")) as site:
                site.push(signed_block(consortium, "hosp-a", tmp_path / "a"))
                site.push(tmp_path / "a")  # the same block again
                with pytest.raises(CallError) as refused:
                    site.merge("t1")  # a site may not merge
                assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
            admin.merge("t1")
            with pytest.raises(CallError):
                admin.model("t1-v9")
        code, text = get(base + "/metrics")
        assert code == 200
        assert metric(text, 'mmlego_uploads_total{result="accepted"}') == 1
        assert metric(text, 'mmlego_uploads_total{result="already_present"}') == 1
        assert (
            metric(text, 'mmlego_rejections_total{method="Merge",reason="permission_denied"}') == 1
        )
        assert metric(text, 'mmlego_rejections_total{method="GetModel",reason="not_found"}') == 1
        assert metric(text, "mmlego_merges_total") == 1
        assert (
            metric(text, 'mmlego_blocks{state="accepted"}') == 1
            and metric(text, "mmlego_tasks") == 1
        )
        assert (
            metric(text, 'mmlego_model_versions{recipe="merge"}') == 1
            and metric(text, "mmlego_fuse_rounds_total") == 0
        )
        assert (
            metric(text, 'mmlego_rpc_duration_seconds_count{code="OK",method="UploadBlock"}') == 2
        )
        assert metric(text, 'mmlego_store_bytes{part="blobs"}') > 0
        assert get(base + "/nowhere")[0] == 404
        running.registry.store.db.close()  # the database goes away under a running server
        code, why = get(base + "/healthz")
        assert code == 503 and why.startswith("database")
    with pytest.raises(OSError):
        urllib.request.urlopen(base + "/healthz", timeout=2)  # stopped with the server


def test_status_backup_while_serving_and_a_checked_restore(
    consortium: Consortium, tmp_path: Path
) -> None:
    cfg = replace(consortium.config(store=tmp_path / "store"), flower_home=tmp_path / "flower")
    link_db = (
        cfg.flower_home / "superlink" / "superlink.db"
    )  # the SuperLink's node key registrations
    link_db.parent.mkdir(parents=True)
    with sqlite3.connect(link_db) as con:
        con.execute("CREATE TABLE node(node_id INTEGER, public_key BLOB)")
        con.execute("INSERT INTO node VALUES(7, x'00ff')")
    with serve(cfg) as running:
        address = f"127.0.0.1:{running.port}"
        with RegistryClient(address, consortium.tls("ops")) as admin:
            admin.create_task(TASK)
            with (
                RegistryClient(address, consortium.tls("hosp-a")) as a,
                RegistryClient(address, consortium.tls("hosp-b")) as b,
            ):
                a.push(signed_block(consortium, "hosp-a", tmp_path / "a"))
                b.push(
                    signed_block(consortium, "hosp-b", tmp_path / "b", modality="clinical", seed=3)
                )
            admin.merge("t1")
            admin.withdraw("hosp-b", "left")
        (cfg.store / NODES_FILE).write_text('{"7": "hosp-b"}')  # which Flower node is which site
        before = status(running.registry)
        m = backup(cfg, tmp_path / "backup")  # while it serves
    assert m["blobs"] == 3 and {"registry.sqlite", NODES_FILE, "superlink.db"} <= set(m["files"])
    assert [t["task"] for t in before["tasks"]] == ["t1"] and before["models"][0][
        "model"
    ] == "t1-v1"
    assert {s["site"]: s["state"] for s in before["sites"]} == {
        "hosp-a": "active",
        "hosp-b": "withdrawn",
    }
    text = render_status(before)
    assert "t1-v1" in text and "withdrawn: left" in text

    with pytest.raises(BackupError, match="not empty"):
        restore(cfg, tmp_path / "backup")  # the store is still there
    with pytest.raises(BackupError, match="not empty"):
        backup(cfg, tmp_path / "backup")
    shutil.move(cfg.store, tmp_path / "lost")
    shutil.move(cfg.flower_home, tmp_path / "lost-flower")
    altered = tmp_path / "altered"
    shutil.copytree(tmp_path / "backup", altered)
    blob = next((altered / "blobs").rglob("*"))
    while blob.is_dir():
        blob = next(blob.iterdir())
    blob.write_bytes(b"rot")
    with pytest.raises(BackupError, match="differs from the backup's manifest"):
        restore(cfg, altered)
    assert not cfg.store.exists()  # nothing was stored from the bad backup
    (altered / "stray").write_text("x")
    with pytest.raises(BackupError, match="unexpected"):
        check_backup(altered)

    done = restore(cfg, tmp_path / "backup")
    assert done["versions"] == 1 and done["blobs_verified"] == 2
    registry = Registry.open(cfg, recover=False)
    try:
        after = status(registry)
    finally:
        registry.close()
    assert (
        after["models"] == before["models"]
        and after["sites"] == before["sites"]
        and after["tasks"] == before["tasks"]
    )
    assert (cfg.store / NODES_FILE).read_text() == '{"7": "hosp-b"}'
    with sqlite3.connect(link_db) as con:
        assert con.execute("SELECT node_id FROM node").fetchall() == [(7,)]
    assert (
        json.loads((cfg.store / "models" / "t1-v1" / "card.json").read_text())["model_id"]
        == "t1-v1"
    )  # cards rewritten


def test_a_rotated_certificate_works_and_the_old_one_is_refused(
    consortium: Consortium, tmp_path: Path
) -> None:
    cfg = consortium.config(store=tmp_path / "store")
    kit = enroll_site(consortium.ca, "hosp-rot", ["genes"], tmp_path / "kit")
    shutil.copytree(kit, tmp_path / "old")
    with serve(cfg) as running:
        address = f"127.0.0.1:{running.port}"

        def tls(folder: Path) -> TLSFiles:
            return TLSFiles(folder / "tls.crt", folder / "tls.key", folder / "ca.crt")

        with RegistryClient(address, tls(kit)) as c:
            c.tasks()
        old, new = renew_kit(consortium.ca, kit)
        assert old != new
        with RegistryClient(address, tls(kit)) as c:
            c.tasks()  # the new certificate, same identity
        with (
            RegistryClient(address, tls(tmp_path / "old"), timeout_s=10) as c,
            pytest.raises(CallError) as refused,
        ):
            c.tasks()
        assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(CAError, match=r"not .*valid certificate"):
        renew_kit(consortium.ca, tmp_path / "old")  # already rotated
    with pytest.raises(CAError, match="not issued by this CA"):
        renew_kit(consortium.ca, consortium.kit("rogue"))
