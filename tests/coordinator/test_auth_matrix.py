"""Every RPC of the registry called by every kind of caller that must be refused, over real mutual
TLS on loopback: no client certificate, a certificate of another CA, an expired one, a revoked
one, a site certificate on admin RPCs, an admin on site RPCs, a site uploading a modality it is
not enrolled for. Each gets the right status and nothing in the store changes."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

import grpc
from google.protobuf.message import Message

from common.artifacts import read_block_files
from common.client import TLSFiles
from common.pb.mmlego.v1 import admin_pb2 as apb
from common.pb.mmlego.v1 import evaluation_pb2 as epb
from common.pb.mmlego.v1 import registry_pb2 as pb
from common.pki import enroll_site
from common.serde import task_to_pb
from coordinator.auth import ROLES_BY_METHOD, method_path
from coordinator.config import CoordinatorConfig
from tests.coordinator.conftest import TASK, Consortium, signed_block

Coord = tuple[str, CoordinatorConfig]
STREAMING_REQUEST = {"UploadBlock"}
STREAMING_RESPONSE = {"DownloadBlock", "DownloadModel", "DownloadCandidate", "RunFuse"}


def requests(upload: list[bytes]) -> dict[str, list[bytes]]:
    """A plausible request for every RPC (the upload: a real signed block's first chunks)."""
    one: dict[str, Message] = {
        "GetUploadStatus": pb.UploadStatusRequest(upload_id="u1"),
        "DownloadBlock": pb.DownloadBlockRequest(block_id="ab" * 32),
        "DownloadModel": pb.DownloadModelRequest(model_id="t1-v1"),
        "ListTasks": pb.ListTasksRequest(),
        "GetTask": pb.GetTaskRequest(task_id="t1"),
        "ListBlocks": pb.ListBlocksRequest(task_id="t1"),
        "GetBlock": pb.GetBlockRequest(block_id="ab" * 32),
        "ListSites": pb.ListSitesRequest(),
        "ListModels": pb.ListModelsRequest(task_id="t1"),
        "GetModel": pb.GetModelRequest(model_id="t1-v1"),
        "CreateTask": task_to_pb(TASK.__class__(**{**TASK.__dict__, "task_id": "t9"})),
        "Merge": pb.MergeRequest(task_id="t1"),
        "Fuse": pb.FuseRequest(model_id="t1-v1"),
        "WithdrawSite": pb.WithdrawSiteRequest(site="hosp-b", reason="test"),
        "PendingEvaluations": epb.PendingEvaluationsRequest(task_id="t1"),
        "DownloadCandidate": epb.DownloadCandidateRequest(job_id="t1-e1", candidate_id="c1"),
        "ReportEvaluation": epb.EvaluationReport(job_id="t1-e1", declined="too-few-patients"),
        "ListEvaluations": epb.ListEvaluationsRequest(task_id="t1"),
        "Evaluate": epb.EvaluateRequest(model_ids=["t1-v1"]),
        "GetRecommended": epb.GetRecommendedRequest(task_id="t1"),
        "GetStatus": apb.GetStatusRequest(),
        "ListFuseRuns": apb.ListFuseRunsRequest(task_id="t1"),
        "RunFuse": pb.FuseRequest(model_id="t1-v1"),
    }
    out = {name: [msg.SerializeToString()] for name, msg in one.items()}
    out["UploadBlock"] = upload
    assert set(out) == set(ROLES_BY_METHOD), "a new RPC needs a row here"
    return out


def call(
    address: str, creds: grpc.ChannelCredentials, method: str, messages: list[bytes]
) -> grpc.StatusCode:
    with grpc.secure_channel(address, creds) as ch:
        ident: Callable[[bytes], bytes] = lambda b: b  # noqa: E731
        path = method_path(method)
        try:
            if method in STREAMING_REQUEST:
                ch.stream_unary(path, request_serializer=ident, response_deserializer=ident)(
                    iter(messages), timeout=10
                )
            elif method in STREAMING_RESPONSE:
                for _ in ch.unary_stream(
                    path, request_serializer=ident, response_deserializer=ident
                )(messages[0], timeout=10):
                    pass
            else:
                ch.unary_unary(path, request_serializer=ident, response_deserializer=ident)(
                    messages[0], timeout=10
                )
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return, attr-defined]
    return grpc.StatusCode.OK


def creds_of(tls: TLSFiles | None, ca: Path) -> grpc.ChannelCredentials:
    if tls is None:
        return grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
    return grpc.ssl_channel_credentials(
        tls.ca.read_bytes(), tls.key.read_bytes(), tls.cert.read_bytes()
    )


def fingerprint(cfg: CoordinatorConfig) -> str:
    """Everything the store holds: every table's rows and every file's name and bytes."""
    h = hashlib.sha256()
    with sqlite3.connect(cfg.store / "registry.sqlite") as con:
        for (table,) in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        ):
            if table == "events":
                continue  # the audit log: refusals are recorded on purpose
            for row in con.execute(f"SELECT * FROM {table} ORDER BY 1"):
                h.update(repr(row).encode())
    for f in sorted(
        p for p in cfg.store.rglob("*") if p.is_file() and not p.name.startswith("registry.sqlite")
    ):
        h.update(str(f.relative_to(cfg.store)).encode() + f.read_bytes())
    return h.hexdigest()


def test_every_rpc_refuses_every_caller_it_must(
    consortium: Consortium, coordinator: Coord, tmp_path: Path
) -> None:
    address, cfg = coordinator
    folder = signed_block(consortium, "hosp-a", tmp_path / "b")
    files = read_block_files(folder)
    upload = [
        pb.UploadChunk(
            header=pb.UploadHeader(
                upload_id="u-auth",
                manifest=pb.SignedManifest(
                    manifest=files.manifest_bytes, signature=files.signature
                ),
            ),
            offset=0,
        ).SerializeToString(),
        pb.UploadChunk(data=files.weights.read_bytes(), offset=0).SerializeToString(),
    ]
    rpcs = requests(upload)
    ca = consortium.kit("ops") / "ca.crt"
    revoked = enroll_site(consortium.ca, "hosp-rv", ["genes"], tmp_path / "kit-rv")
    consortium.ca.revoke("hosp-rv")
    callers: dict[str, TLSFiles | None] = {
        "no certificate": None,
        "another CA": consortium.tls("rogue"),
        "expired": consortium.tls("hosp-old"),
        "revoked": TLSFiles(revoked / "tls.crt", revoked / "tls.key", revoked / "ca.crt"),
    }
    site, admin = consortium.tls("hosp-b"), consortium.tls("ops")
    for known in (
        site,
        consortium.tls("hosp-a"),
    ):  # the registry records a site at its first accepted call
        assert (
            call(address, creds_of(known, ca), "ListTasks", rpcs["ListTasks"]) == grpc.StatusCode.OK
        )
    before = fingerprint(cfg)
    seen: dict[tuple[str, str], grpc.StatusCode] = {}
    for who, tls in callers.items():
        for method, messages in rpcs.items():
            seen[who, method] = call(address, creds_of(tls, ca), method, messages)
    handshake = (
        grpc.StatusCode.UNAVAILABLE
    )  # refused in the TLS handshake: no call reaches the servicer
    for (who, method), code in seen.items():
        want = grpc.StatusCode.UNAUTHENTICATED if who == "revoked" else handshake
        assert code == want, (who, method, code)
    for method, roles in ROLES_BY_METHOD.items():
        if "site" not in roles:
            assert (
                call(address, creds_of(site, ca), method, rpcs[method])
                == grpc.StatusCode.PERMISSION_DENIED
            ), method
        if "admin" not in roles:
            assert (
                call(address, creds_of(admin, ca), method, rpcs[method])
                == grpc.StatusCode.PERMISSION_DENIED
            ), method
    # hosp-b is enrolled for clinical; the block is genes (and hosp-a's): refused before a byte is
    # stored
    assert call(address, creds_of(site, ca), "UploadBlock", upload) in (
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
    )
    wrong_modality = signed_block(consortium, "hosp-a", tmp_path / "m", modality="clinical")
    wm = read_block_files(wrong_modality)
    chunks = [
        pb.UploadChunk(
            header=pb.UploadHeader(
                upload_id="u-wm",
                manifest=pb.SignedManifest(manifest=wm.manifest_bytes, signature=wm.signature),
            ),
            offset=0,
        ).SerializeToString(),
        pb.UploadChunk(data=wm.weights.read_bytes(), offset=0).SerializeToString(),
    ]
    assert (
        call(address, creds_of(consortium.tls("hosp-a"), ca), "UploadBlock", chunks)
        == grpc.StatusCode.PERMISSION_DENIED
    )
    assert fingerprint(cfg) == before, "a refused call changed the store"
    # the same calls from the right callers do reach the servicer (so the refusals above are not an
    # accident)
    assert call(address, creds_of(admin, ca), "ListTasks", rpcs["ListTasks"]) == grpc.StatusCode.OK
    assert (
        call(address, creds_of(consortium.tls("hosp-a"), ca), "UploadBlock", upload)
        == grpc.StatusCode.OK
    )
    assert fingerprint(cfg) != before
