"""Start-up recovery of the store: what a crash can leave behind is cleaned, resumable uploads
survive, and a blob whose bytes changed on disk is caught and kept out of listings; the store's
records of an evaluation (a report kept once, only from a site the job reached)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

import pytest

from common.evaluation import CandidateScore, PairCounts
from common.evaluation.candidates import Candidate, EvaluationJob
from common.lego.recipe import Recipe
from common.records import BlockRecord, utc_now
from common.serde import score_to_bytes
from coordinator.merging import insert_version
from coordinator.store import (
    Answer,
    CarriedWeights,
    EvaluationTraffic,
    JobRecord,
    OpenUpload,
    Store,
    evaluation_traffic,
)


def add_block(store: Store, data: bytes, site: str = "hosp-a") -> str:
    sha = store.blobs.put_bytes(data)
    store.blocks.accept(
        BlockRecord(sha, "t1", site, "genes", len(data), "now", "accepted", b"m", b"s", b""),
        upload_key="",
    )
    return sha


def add_upload(store: Store, upload_id: str, started: float, partial: bytes | None) -> Path:
    key = hashlib.sha256(upload_id.encode()).hexdigest()
    store.uploads.start(OpenUpload("hosp-a", upload_id, key, b"m", b"s", "ab" * 32, 100, started))
    part = store.blobs.partial(key)
    if partial is not None:
        part.write_bytes(partial)
    return part


def test_recovery_cleans_leftovers_and_keeps_what_is_valid(tmp_path: Path) -> None:
    store = Store(tmp_path)
    good = add_block(store, b"good block")
    bad = add_block(store, b"block that will rot")
    orphan = store.blobs.put_bytes(b"renamed in, record never committed")
    (store.blobs.path(good).parent / ".tmp-interrupted").write_bytes(b"half")
    live = add_upload(store, "live", time.time(), b"0123")
    add_upload(store, "no-partial", time.time(), None)
    old = add_upload(store, "expired", time.time() - 7200, b"01")
    stray = store.blobs.partials / ("ff" * 32 + ".part")
    stray.write_bytes(b"no record")
    store.blobs.path(bad).write_bytes(b"block that has rotted")
    store.close()

    store = Store(tmp_path, upload_ttl_s=3600)
    rec = store.recovery
    assert rec is not None
    assert (
        rec.temporaries_removed == 1
        and rec.orphan_blobs_removed == 1
        and rec.corrupt_blocks == (bad,)
    )
    assert rec.stale_uploads_removed == 3 and rec.blobs_verified == 2
    assert (
        not store.blobs.has(orphan)
        and live.read_bytes() == b"0123"
        and not old.exists()
        and not stray.exists()
    )
    assert [o.upload_id for o in store.uploads.listing()] == ["live"]
    assert [b.block_id for b in store.blocks.listing()] == [good]
    assert [b.block_id for b in store.blocks.latest("t1")] == [good]
    store.close()
    again = Store(tmp_path, upload_ttl_s=3600)  # a second start finds nothing more to do
    assert (
        again.recovery is not None
        and again.recovery.corrupt_blocks == ()
        and again.recovery.orphan_blobs_removed == 0
    )
    again.close()


def test_tools_beside_a_running_server_do_not_recover(tmp_path: Path) -> None:
    store = Store(tmp_path)
    part = add_upload(store, "in-flight", time.time() - 99999, b"01")
    side = Store(tmp_path, upload_ttl_s=1, recover=False)
    assert side.recovery is None and part.exists()
    side.close()
    store.close()


def test_adopting_a_blob_repairs_a_damaged_copy(tmp_path: Path) -> None:
    store = Store(tmp_path)
    data = b"the block's bytes"
    sha = store.blobs.put_bytes(data)
    store.blobs.path(sha).write_bytes(b"rotted")
    part = store.blobs.partials / "x.part"
    part.write_bytes(data)
    store.blobs.adopt(part, sha)
    assert store.blobs.read(sha) == data and not part.exists()
    part.write_bytes(data)
    store.blobs.adopt(part, sha)  # identical bytes again: the partial is dropped
    assert store.blobs.read(sha) == data and not part.exists()
    store.close()


def test_a_version_whose_card_files_were_not_written_gets_them_on_start(tmp_path: Path) -> None:
    store = Store(tmp_path)
    recipe = Recipe("merge", ("ab" * 32,))
    record = insert_version(store, "t1", recipe, {}, b"weights", {"blocks": []}, "ops")
    card = tmp_path / "models" / record.model_id / "card.json"
    assert json.loads(card.read_text())["model_id"] == record.model_id
    card.unlink()  # a crash between the version's commit and its card files
    (card.parent / "card.md").unlink()
    store.close()
    store = Store(tmp_path)
    assert store.recovery is not None and store.recovery.cards_restored == 1
    assert json.loads(card.read_text()) == record.card and (
        card.parent / "card.md"
    ).read_text().startswith("# Model")
    store.close()


def test_a_coordinator_starting_beside_a_fuse_run_cannot_orphan_its_new_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fuse run (another process) writes its blob, then a restarting coordinator sweeps it as
    an orphan before the run commits the version: the run writes it again under the write lock."""
    store = Store(tmp_path)
    put = store.blobs.put_bytes
    swept: list[int] = []

    def put_then_a_coordinator_starts(data: bytes) -> str:
        sha = put(data)
        if not swept:
            beside = Store(tmp_path)
            swept.append(beside.recovery.orphan_blobs_removed if beside.recovery else 0)
            beside.close()
        return sha

    monkeypatch.setattr(store.blobs, "put_bytes", put_then_a_coordinator_starts)
    recipe = Recipe("fuse", ("ab" * 32,))
    record = insert_version(store, "t1", recipe, {}, b"fused weights", {}, "flower-serverapp")
    assert swept == [1]  # the sweep did remove the blob ...
    assert store.blobs.verify(record.weights_sha256)  # ... and the version has it
    store.close()


def test_a_store_of_a_schema_this_version_does_not_know_is_refused_naming_both(
    tmp_path: Path,
) -> None:
    Store(tmp_path).close()
    with sqlite3.connect(tmp_path / "registry.sqlite") as con:
        con.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    with pytest.raises(
        RuntimeError, match=r"store schema 99 is not one this mmlego reads \(1 to 2\)"
    ):
        Store(tmp_path)


def test_a_schema_1_store_is_migrated_to_schema_2_and_keeps_its_data(tmp_path: Path) -> None:
    from coordinator.store.db import SCHEMA

    with sqlite3.connect(
        tmp_path / "registry.sqlite"
    ) as con:  # what schema 1 wrote (the tables of the first release)
        con.executescript(SCHEMA)
        con.execute("INSERT INTO meta VALUES('schema', '1')")
        con.execute("INSERT INTO tasks VALUES('t1', x'00', '2026-01-01')")
    store = Store(tmp_path)
    try:
        assert store.db.migrated_from == 1
        assert store.db.query("SELECT value FROM meta WHERE key = 'schema'") == [("2",)]
        assert store.db.query("SELECT task_id FROM tasks") == [("t1",)]
        assert store.db.query("SELECT COUNT(*) FROM evaluations") == [(0,)] and store.db.query(
            "SELECT COUNT(*) FROM fuse_runs"
        ) == [(0,)]
    finally:
        store.close()
    again = Store(tmp_path)
    assert again.db.migrated_from is None
    again.close()


def test_a_report_is_kept_once_and_only_from_a_site_the_job_was_delivered_to(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path)
    data = b"\0" * 8  # a fuse round's packed weights
    sha = store.blobs.put_bytes(data)
    round_1 = Candidate(
        "round-1",
        "fuse-round",
        model_id="t1-v1",
        weights_sha256=sha,
        weights_size=len(data),
        fuse_mode="stack",
        layout="x",
    )
    job = store.evaluations.open(
        "t1",
        time.time() + 60,
        lambda job_id: EvaluationJob(job_id, "t1", "fuse", (round_1,), utc_now(), ""),
        [CarriedWeights("round-1", sha, data)],
        "ops",
    )
    assert job.job_id == "t1-e1" and store.evaluations.job("t1-e1") == JobRecord(
        job, "open", pytest.approx(time.time() + 60, abs=5)
    )
    score = CandidateScore((PairCounts(30, 12, 1),), 12, 6, 0.004, 0.001)
    assert store.evaluations.keep_report(job.job_id, "hosp-a", "", {"round-1": score}) == (
        "not-delivered"
    )
    store.evaluations.mark_delivered([job.job_id], "hosp-a")
    store.evaluations.mark_delivered([job.job_id], "hosp-b")
    assert store.evaluations.keep_report(job.job_id, "hosp-a", "", {"round-1": score}) is None
    assert store.evaluations.keep_report(job.job_id, "hosp-a", "", {}) == "answered"
    assert store.evaluations.keep_report(job.job_id, "hosp-b", "too-few-patients", {}) is None
    assert store.evaluations.answers(job.job_id) == [
        Answer("hosp-a"),
        Answer("hosp-b", "too-few-patients"),
    ]
    store.evaluations.close(job.job_id)
    assert store.evaluations.keep_report(job.job_id, "hosp-c", "", {}) == "closed"
    store.close()

    # what the simulator's report reads of it, the database opened read-only
    a, b = evaluation_traffic(tmp_path, "hosp-a"), evaluation_traffic(tmp_path, "hosp-b")
    assert a == EvaluationTraffic(len(score_to_bytes("round-1", score)), (job,))
    assert b == EvaluationTraffic(0, ())  # it declined: it downloaded no round's weights
