"""Protobuf <-> dataclass conversions round-trip, and malformed messages are refused by name."""

from __future__ import annotations

import pytest

from common import serde
from common.artifacts import BlockManifest
from common.lego.recipe import Recipe
from common.pb.mmlego.v1 import registry_pb2 as pb
from common.records import (
    BlockRecord,
    ModelRecord,
    SiteRecord,
    TaskRecord,
    UploadData,
    UploadHeader,
    utc_now,
)
from common.tasks import TaskSpec
from tests.factories import SURV, block


def test_manifest_round_trip_is_exact() -> None:
    b = block()
    m = BlockManifest(
        config=b.config,
        weights_sha256="ab" * 32,
        weights_size=123,
        tensors={"x": [2, 3]},
        dtypes={"x": "F32"},
        task_id="t",
        site="hosp-a",
        train_stats={"n_train": 10.0},
    )
    raw = serde.manifest_to_bytes(m)
    assert serde.manifest_from_bytes(raw) == m
    assert (
        serde.manifest_to_bytes(serde.manifest_from_bytes(raw)) == raw
    )  # deterministic bytes: what is signed stays stable


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"config_json": "{"}, "config_json"),
        ({"modality": "other"}, "differs from its config"),
        ({"weights_sha256": "XYZ"}, "64 lower-case hex"),
        ({"weights_size": 0}, "positive"),
    ],
)
def test_bad_manifests_are_named(change: dict[str, object], message: str) -> None:
    b = block()
    good = serde.manifest_to_pb(
        BlockManifest(config=b.config, weights_sha256="ab" * 32, weights_size=1, tensors={})
    )
    for k, v in change.items():
        setattr(good, k, v)
    with pytest.raises(ValueError, match=message):
        serde.manifest_from_pb(good)
    with pytest.raises(ValueError, match="not a valid BlockManifest"):
        serde.manifest_from_bytes(b"\xff\xff\xff")


def test_records_round_trip() -> None:
    now = utc_now()
    for task in (
        TaskRecord("t1", SURV, 6, 8, "1d", 3, ("a", "b"), "d", now, fuse_mode="weave"),
        TaskRecord(
            "t2", TaskSpec("classification", n_classes=3), modalities=("img",), created_at=now
        ),
    ):
        assert serde.task_from_pb(serde.task_to_pb(task)) == task
    old = serde.task_to_pb(TaskRecord("t3", SURV, modalities=("a",)))
    old.ClearField("fuse_mode")  # a task stored before fuse_mode existed
    assert serde.task_from_pb(old).fuse_mode == "stack"
    with pytest.raises(ValueError, match="fuse_mode"):
        TaskRecord("t4", SURV, modalities=("a",), fuse_mode="glue")
    blk = BlockRecord("ab" * 32, "t1", "hosp-a", "a", 10, now, "accepted", b"m", b"s", b"pem")
    assert serde.block_from_pb(serde.block_to_pb(blk)) == blk
    model = ModelRecord(
        "t1-v1",
        "t1",
        Recipe("merge", ("ab" * 32, "ef" * 32), (1.5, 0.5), "arithmetic", "linear"),
        {"candidate": "size"},
        "cd" * 32,
        5,
        {"k": [1]},
        now,
        "0.1",
    )
    assert serde.model_from_bytes(serde.model_to_bytes(model)) == model
    site = SiteRecord("hosp-a", ("a",), True, False, 2, "")
    assert serde.site_from_pb(serde.site_to_pb(site)) == site
    for chunk in (UploadHeader("u1", b"m", b"s", 4), UploadData(b"xyz", 7)):
        assert serde.chunk_from_pb(serde.chunk_to_pb(chunk)) == chunk
    assert serde.chunk_from_pb(pb.UploadChunk(offset=3)) is None
    with pytest.raises(ValueError, match="kind"):
        serde.task_from_pb(pb.Task(task_id="x", kind="regression"))
