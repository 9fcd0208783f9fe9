"""Property-based fuzz of every RPC of a running registry (real mutual TLS on loopback): random
bytes, mutated valid messages, path-like strings in every identifier, and upload chunk sequences
out of order, duplicated, truncated, oversized or replayed. No input may crash the coordinator
(an UNKNOWN/INTERNAL status), hang it (a deadline), or change what it stores (tasks, sites,
blocks, model versions, blobs). The number of inputs tried is printed (`-s`) and checked."""

from __future__ import annotations

import hashlib
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.artifacts import read_block_files
from common.client import RegistryClient
from common.evaluation.candidates import Candidate
from common.pb.mmlego.v1 import admin_pb2 as apb
from common.pb.mmlego.v1 import evaluation_pb2 as epb
from common.pb.mmlego.v1 import registry_pb2 as pb
from common.serde import score_from_bytes
from coordinator.auth import ROLES_BY_METHOD, method_path
from coordinator.config import CoordinatorConfig, EvaluationSection
from coordinator.server import Running, serve
from tests.coordinator.conftest import TASK, Consortium, signed_block
from tests.factories import mutate_bytes

BAD = {
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNAVAILABLE,
}
REQUEST = {
    "UploadBlock": pb.UploadChunk,
    "GetUploadStatus": pb.UploadStatusRequest,
    "DownloadBlock": pb.DownloadBlockRequest,
    "DownloadModel": pb.DownloadModelRequest,
    "ListTasks": pb.ListTasksRequest,
    "GetTask": pb.GetTaskRequest,
    "ListBlocks": pb.ListBlocksRequest,
    "GetBlock": pb.GetBlockRequest,
    "ListSites": pb.ListSitesRequest,
    "ListModels": pb.ListModelsRequest,
    "GetModel": pb.GetModelRequest,
    "CreateTask": pb.Task,
    "Merge": pb.MergeRequest,
    "Fuse": pb.FuseRequest,
    "WithdrawSite": pb.WithdrawSiteRequest,
    "PendingEvaluations": epb.PendingEvaluationsRequest,
    "DownloadCandidate": epb.DownloadCandidateRequest,
    "ReportEvaluation": epb.EvaluationReport,
    "ListEvaluations": epb.ListEvaluationsRequest,
    "Evaluate": epb.EvaluateRequest,
    "GetRecommended": epb.GetRecommendedRequest,
    "GetStatus": apb.GetStatusRequest,
    "ListFuseRuns": apb.ListFuseRunsRequest,
    "RunFuse": pb.FuseRequest,
}
STREAMING_RESPONSE = {"DownloadBlock", "DownloadModel", "DownloadCandidate", "RunFuse"}
PATHS = [
    "../",
    "../../etc/passwd",
    "a/../../b",
    "/etc/shadow",
    "..",
    ".",
    "x\x00y",
    "%2e%2e%2f",
    "C:\\windows",
    "t1/../t1",
    "ab" * 32 + "/..",
    "~root",
    "\u202e",
    "a" * 5000,
    "",
]
TRIED: Counter[str] = Counter()  # "inputs" and one count per status seen


class Fuzzed:
    def __init__(
        self, address: str, cfg: CoordinatorConfig, consortium: Consortium, upload: list[bytes]
    ) -> None:
        self.cfg, self.upload = cfg, upload
        self.before = ""  # what the registry held before fuzzing
        self.channels = {
            who: grpc.secure_channel(
                address,
                grpc.ssl_channel_credentials(
                    t.ca.read_bytes(), t.key.read_bytes(), t.cert.read_bytes()
                ),
            )
            for who, t in (("site", consortium.tls("hosp-a")), ("admin", consortium.tls("ops")))
        }

    def call(self, method: str, messages: list[bytes]) -> grpc.StatusCode:
        """Call ``method`` as a caller its role allows; the status it ends with."""
        TRIED["inputs"] += 1
        ch = self.channels["admin" if "admin" in ROLES_BY_METHOD[method] else "site"]
        ident: Callable[[bytes], bytes] = lambda b: b  # noqa: E731
        path = method_path(method)
        try:
            if method == "UploadBlock":
                ch.stream_unary(path, request_serializer=ident, response_deserializer=ident)(
                    iter(messages), timeout=20
                )
            elif method in STREAMING_RESPONSE:
                for _ in ch.unary_stream(
                    path, request_serializer=ident, response_deserializer=ident
                )(messages[0], timeout=20):
                    pass
            else:
                ch.unary_unary(path, request_serializer=ident, response_deserializer=ident)(
                    messages[0], timeout=20
                )
        except grpc.RpcError as exc:
            TRIED[exc.code().name] += 1  # type: ignore[attr-defined]
            return exc.code()  # type: ignore[no-any-return, attr-defined]
        TRIED["OK"] += 1
        return grpc.StatusCode.OK


def visible(cfg: CoordinatorConfig) -> str:
    """What the registry holds for others to see: tasks, sites, blocks, model versions and blobs
    (unfinished uploads are kept on purpose, for resuming; the audit log grows on purpose; the
    fuzzing site may answer the open evaluation job once, checked by the last test)."""
    h = hashlib.sha256()
    with sqlite3.connect(cfg.store / "registry.sqlite") as con:
        for sql in (
            "SELECT * FROM tasks",
            "SELECT name, modalities, paired, withdrawn FROM sites",  # not last_seen
            "SELECT * FROM blocks",
            "SELECT * FROM models",
        ):
            for row in con.execute(sql + " ORDER BY 1"):
                h.update(repr(row).encode())
    for f in sorted((cfg.store / "blobs").rglob("*")):
        if f.is_file():
            h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def fuzzed(consortium: Consortium, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    tmp = tmp_path_factory.mktemp("fuzz")
    cfg = consortium.config(store=tmp / "store", evaluation=EvaluationSection(deadline_s=2.0))
    with serve(cfg) as running:
        address = f"127.0.0.1:{running.port}"
        with RegistryClient(address, consortium.tls("ops")) as admin:
            admin.create_task(TASK)
            folder = signed_block(consortium, "hosp-a", tmp / "b")
            with RegistryClient(address, consortium.tls("hosp-a")) as site:
                site.push(folder)
                admin.merge("t1")  # the sites have 2 s to score it: nobody does
                open_job(running, folder, site)
        files = read_block_files(folder)
        data = files.weights.read_bytes()
        header = pb.UploadChunk(
            header=pb.UploadHeader(
                upload_id="u-fuzz",
                manifest=pb.SignedManifest(
                    manifest=files.manifest_bytes, signature=files.signature
                ),
            ),
            offset=0,
        ).SerializeToString()
        step = max(1, len(data) // 4)
        chunks = [
            pb.UploadChunk(data=data[i : i + step], offset=i).SerializeToString()
            for i in range(0, len(data), step)
        ]
        f = Fuzzed(address, cfg, consortium, [header, *chunks])
        f.before = visible(cfg)
        yield f
        for ch in f.channels.values():
            ch.close()
        print(
            f"\nfuzz: {TRIED['inputs']} inputs tried; statuses {dict(sorted((k, v) for k, v in TRIED.items() if k != 'inputs'))}"
        )


def open_job(running: Running, folder: Path, site: RegistryClient) -> None:
    """An evaluation job with a LegoFuse round's weights, open for the whole fuzz and delivered to
    the fuzzing site, so that reports and downloads reach every check behind them."""
    reg = running.registry
    parent = reg.models("t1")[0]
    weights = b"\0" * 64
    job = reg.evaluations.open(
        reg.task("t1"),
        "fuse",
        [
            Candidate("parent", "version", "parent", model_id=parent.model_id),
            Candidate(
                "round-1",
                "fuse-round",
                "round 1",
                model_id=parent.model_id,
                weights_sha256=hashlib.sha256(weights).hexdigest(),
                weights_size=64,
                fuse_mode="stack",
                layout="x",
            ),
        ],
        3600,
        blobs={"round-1": weights},
    )
    assert [j.job_id for j in site.pending_evaluations("t1")] == [job.job_id]


def valid(method: str, f: Fuzzed) -> bytes:
    """A valid request of ``method`` whose success would not change what is stored."""
    samples: dict[str, Message] = {
        "Merge": pb.MergeRequest(task_id="no-such-task"),
        "WithdrawSite": pb.WithdrawSiteRequest(site="nobody", reason="x"),
        "CreateTask": pb.Task(
            task_id="t1",
            kind="survival",
            n_bins=2,
            bin_edges=[1.0],
            latent_rows=6,
            latent_dim=8,
            fourier="2d",
            modalities=["genes"],
        ),
        "GetTask": pb.GetTaskRequest(task_id="t1"),
        "ListBlocks": pb.ListBlocksRequest(task_id="t1", site="hosp-a"),
        "GetModel": pb.GetModelRequest(model_id="t1-v1"),
        "DownloadModel": pb.DownloadModelRequest(model_id="t1-v1"),
        "Fuse": pb.FuseRequest(model_id="t1-v1", rounds=1),
        "GetUploadStatus": pb.UploadStatusRequest(upload_id="u-fuzz"),
        "PendingEvaluations": epb.PendingEvaluationsRequest(task_id="t1"),
        "DownloadCandidate": epb.DownloadCandidateRequest(job_id="t1-e2", candidate_id="round-1"),
        "ReportEvaluation": epb.EvaluationReport(
            job_id="t1-e2",
            scores=[
                epb.CandidateScore(
                    candidate_id="parent",
                    strata=[epb.PairCounts(concordant=30, discordant=10, tied=2)],
                    patients=12,
                    events=6,
                    var_metric=0.01,
                    var_diff=0.0,
                )
            ],
        ),
        "GetRecommended": epb.GetRecommendedRequest(task_id="t1"),
        "ListEvaluations": epb.ListEvaluationsRequest(task_id="t1"),
    }
    return (
        samples[method].SerializeToString()
        if method in samples
        else REQUEST[method]().SerializeToString()
    )


def check(f: Fuzzed, method: str, code: grpc.StatusCode) -> None:
    assert code not in BAD, f"{method}: {code}"


METHODS = sorted(set(REQUEST) - {"UploadBlock"})
EDITS = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 10_000), st.integers(0, 255)), max_size=6
)
SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(method=st.sampled_from(METHODS), data=st.binary(max_size=3000))
def test_random_bytes_to_every_rpc(fuzzed: Fuzzed, method: str, data: bytes) -> None:
    check(fuzzed, method, fuzzed.call(method, [data]))


@SETTINGS
@given(method=st.sampled_from(METHODS), edits=EDITS)
def test_mutated_valid_requests_to_every_rpc(
    fuzzed: Fuzzed, method: str, edits: list[tuple[int, int, int]]
) -> None:
    check(fuzzed, method, fuzzed.call(method, [mutate_bytes(valid(method, fuzzed), edits)]))


@SETTINGS
@given(
    method=st.sampled_from(METHODS),
    value=st.sampled_from(PATHS) | st.text(max_size=40),
    number=st.integers(-(2**63), 2**63 - 1),
)
def test_path_like_strings_in_every_identifier(
    fuzzed: Fuzzed, method: str, value: str, number: int
) -> None:
    msg = REQUEST[method]()
    for field in msg.DESCRIPTOR.fields:
        if field.type == FieldDescriptor.TYPE_STRING:
            if field.label == FieldDescriptor.LABEL_REPEATED:
                getattr(msg, field.name).append(value)
            else:
                setattr(msg, field.name, value)
        elif (
            field.type == FieldDescriptor.TYPE_INT64
            and field.label != FieldDescriptor.LABEL_REPEATED
        ):
            setattr(msg, field.name, number)
        elif (
            field.type == FieldDescriptor.TYPE_INT32
            and field.label != FieldDescriptor.LABEL_REPEATED
        ):
            setattr(msg, field.name, max(-(2**31), min(2**31 - 1, number)))
    code = fuzzed.call(method, [msg.SerializeToString()])
    check(fuzzed, method, code)
    if method in ("Merge", "WithdrawSite", "CreateTask"):
        assert code != grpc.StatusCode.OK, (method, value)


@SETTINGS
@given(
    order=st.permutations(range(5)),
    keep=st.integers(1, 5),
    dup=st.integers(0, 4),
    offset_shift=st.integers(-10, 10**7),
    oversize=st.integers(0, 3),
    upload_id=st.sampled_from(["u-fuzz", "u-other", "../up", "x" * 300]),
)
def test_chunk_sequences_out_of_order_duplicated_truncated_oversized(
    fuzzed: Fuzzed,
    order: list[int],
    keep: int,
    dup: int,
    offset_shift: int,
    oversize: int,
    upload_id: str,
) -> None:
    header, *chunks = fuzzed.upload
    h = pb.UploadChunk.FromString(header)
    h.header.upload_id = upload_id
    seq = [h.SerializeToString(), *[chunks[i % len(chunks)] for i in order][:keep]]
    if dup and len(seq) > 1:
        seq.insert(1 + dup % (len(seq) - 1), seq[1 + dup % (len(seq) - 1)])
    if oversize == 1:
        seq.append(
            pb.UploadChunk(data=b"\0" * (2 << 20), offset=0).SerializeToString()
        )  # more than the block and than a chunk
    elif oversize == 2:
        seq.append(pb.UploadChunk(data=b"z", offset=offset_shift).SerializeToString())
    elif oversize == 3:
        seq.append(header)  # a second header in the stream
    check(fuzzed, "UploadBlock", fuzzed.call("UploadBlock", seq))


def test_replaying_the_valid_upload_stores_nothing_new_and_the_registry_is_unchanged(
    fuzzed: Fuzzed,
) -> None:
    """Runs after the fuzz tests above (file order): the stored state is what it was before them."""
    header, *chunks = fuzzed.upload
    assert (
        fuzzed.call("UploadBlock", [header, *chunks]) == grpc.StatusCode.OK
    )  # an idempotent replay
    assert (
        fuzzed.call("ListTasks", [pb.ListTasksRequest().SerializeToString()]) == grpc.StatusCode.OK
    )  # still serving
    assert visible(fuzzed.cfg) == fuzzed.before, "fuzzing changed what the registry stores"
    assert TRIED["inputs"] >= 4 * 300
    with sqlite3.connect(
        fuzzed.cfg.store / "registry.sqlite"
    ) as con:  # at most one report of the fuzzing site, and it can be
        reports = con.execute("SELECT job_id, site FROM eval_reports").fetchall()
        scores = [
            score_from_bytes(bytes(m)) for (m,) in con.execute("SELECT message FROM eval_scores")
        ]
    assert len(reports) <= 1 and all(r == ("t1-e2", "hosp-a") for r in reports)
    assert all(s.problem(1) is None for s in scores)
