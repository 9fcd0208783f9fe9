"""The RPC fuzz's machinery, shared by tests/coordinator/test_fuzz.py and bench/fuzz_bench.py: a
running registry holding something of everything, the four input families (random bytes, mutated
valid requests, path-like identifiers, upload chunk sequences) as hypothesis strategies, a seeded
run of one family, and what changed in the registry's rows (tests/coordinator/storerows.py)."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from common.artifacts import read_block_files
from common.client import RegistryClient
from common.evaluation.candidates import Candidate
from common.pb.mmlego.v1 import admin_pb2 as apb
from common.pb.mmlego.v1 import evaluation_pb2 as epb
from common.pb.mmlego.v1 import registry_pb2 as pb
from coordinator.auth import ROLES_BY_METHOD, method_path
from coordinator.config import CoordinatorConfig, EvaluationSection
from coordinator.server import Running, serve
from tests.coordinator.conftest import TASK, Consortium, signed_block
from tests.coordinator.storerows import stored_rows, unasked_changes
from tests.factories import mutate_bytes

OK = grpc.StatusCode.OK
BAD = {
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNAVAILABLE,
}
REQUEST: dict[str, type[Message]] = {
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
METHODS = sorted(set(REQUEST) - {"UploadBlock"})
MUTATING = {"Merge", "WithdrawSite", "CreateTask"}  # never with a path-like identifier
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
FAMILIES = ("random-bytes", "mutated", "path-like", "chunks")


@dataclass(frozen=True)
class Input:
    """One fuzz input: the messages of one call of ``method`` (several for an upload stream)."""

    family: str
    method: str
    messages: tuple[bytes, ...]


@dataclass
class Tally:
    """What one family's run tried and what came of it."""

    family: str
    seed: int
    inputs: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    created: set[str] = field(default_factory=set)  # tasks a valid (mutated) CreateTask asked for
    violations: list[str] = field(default_factory=list)  # a bad status, a path-like success
    changes: list[str] = field(default_factory=list)  # rows no valid request asked for
    seconds: float = 0.0

    def line(self) -> str:
        codes = ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items()))
        made = f"; created tasks {sorted(self.created)} (valid requests)" if self.created else ""
        return (
            f"{self.family}: {self.inputs} inputs in {self.seconds:.1f} s (seed {self.seed}); "
            f"{codes}{made}; {len(self.changes)} rows changed otherwise"
        )


class Fuzzed:
    """A running registry and a channel for each role: site hosp-a, admin ops."""

    def __init__(
        self, address: str, cfg: CoordinatorConfig, consortium: Consortium, upload: list[bytes]
    ) -> None:
        self.cfg, self.upload = cfg, upload
        self.channels = {
            who: grpc.secure_channel(
                address,
                grpc.ssl_channel_credentials(
                    t.ca.read_bytes(), t.key.read_bytes(), t.cert.read_bytes()
                ),
            )
            for who, t in (("site", consortium.tls("hosp-a")), ("admin", consortium.tls("ops")))
        }

    def call(self, inp: Input, tally: Tally) -> grpc.StatusCode:
        """Call ``inp.method`` as a caller its role allows; the status it ends with."""
        tally.inputs += 1
        code = self._call(inp.method, list(inp.messages))
        tally.statuses[code.name] += 1
        if code in BAD:
            tally.violations.append(f"{inp.method}: {code.name}")
        elif code == OK and inp.method in MUTATING:
            if inp.family == "path-like":
                tally.violations.append(f"{inp.method} succeeded with a path-like identifier")
            elif inp.method == "CreateTask":  # a mutation that is itself a valid new task
                tally.created.add(pb.Task.FromString(inp.messages[0]).task_id)
        return code

    def _call(self, method: str, messages: list[bytes]) -> grpc.StatusCode:
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
            return exc.code()  # type: ignore[no-any-return, attr-defined]
        return OK

    def close(self) -> None:
        for ch in self.channels.values():
            ch.close()


@contextmanager
def fuzzed_registry(consortium: Consortium, tmp: Path) -> Iterator[Fuzzed]:
    """A registry with federated evaluation on (a 2 s deadline), holding a task, a block, a merge
    version and an evaluation job open for the whole fuzz, delivered to the fuzzing site and
    carrying a LegoFuse round's weights (so that reports and downloads reach every check)."""
    cfg = consortium.config(store=tmp / "store", evaluation=EvaluationSection(deadline_s=2.0))
    with serve(cfg) as running:
        address = f"127.0.0.1:{running.port}"
        with RegistryClient(address, consortium.tls("ops")) as admin:
            admin.create_task(TASK)
            folder = signed_block(consortium, "hosp-a", tmp / "b")
            with RegistryClient(address, consortium.tls("hosp-a")) as site:
                site.push(folder)
                admin.merge("t1")  # the sites have 2 s to score it: nobody does
                open_job(running, site)
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
        try:
            yield f
        finally:
            f.close()


def open_job(running: Running, site: RegistryClient) -> None:
    """An evaluation job (t1-e2) with a LegoFuse round's weights, open for the whole fuzz and
    delivered to the fuzzing site."""
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


def valid(method: str) -> bytes:
    """A valid request of ``method`` whose success would not change what is stored (mutations
    of it may: a flipped byte of CreateTask's ``t1`` can name a valid new task)."""
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
    return (samples.get(method) or REQUEST[method]()).SerializeToString()


def path_like(method: str, value: str, number: int) -> bytes:
    """A request of ``method`` with ``value`` in every string field and ``number`` (clipped to
    int32 where it must be) in every int32/int64 field."""
    msg = REQUEST[method]()
    for f in msg.DESCRIPTOR.fields:
        repeated = (  # protobuf 6 deprecates label(); 5.29 has no is_repeated
            f.is_repeated
            if hasattr(f, "is_repeated")
            else f.label == FieldDescriptor.LABEL_REPEATED
        )
        if f.type == FieldDescriptor.TYPE_STRING:
            if repeated:
                getattr(msg, f.name).append(value)
            else:
                setattr(msg, f.name, value)
        elif f.type == FieldDescriptor.TYPE_INT64 and not repeated:
            setattr(msg, f.name, number)
        elif f.type == FieldDescriptor.TYPE_INT32 and not repeated:
            setattr(msg, f.name, max(-(2**31), min(2**31 - 1, number)))
    return msg.SerializeToString()


def chunk_sequence(
    upload: list[bytes],
    order: list[int],
    keep: int,
    dup: int,
    offset_shift: int,
    oversize: int,
    upload_id: str,
) -> tuple[bytes, ...]:
    """The valid upload's chunks out of order, cut, with a duplicate, an oversized chunk, a chunk
    at a wild offset or a second header, under an upload id that may be path-like."""
    header, *chunks = upload
    h = pb.UploadChunk.FromString(header)
    h.header.upload_id = upload_id
    seq = [h.SerializeToString(), *[chunks[i % len(chunks)] for i in order][:keep]]
    if dup and len(seq) > 1:
        seq.insert(1 + dup % (len(seq) - 1), seq[1 + dup % (len(seq) - 1)])
    if oversize == 1:  # more than the block and than a chunk
        seq.append(pb.UploadChunk(data=b"\0" * (2 << 20), offset=0).SerializeToString())
    elif oversize == 2:
        seq.append(pb.UploadChunk(data=b"z", offset=offset_shift).SerializeToString())
    elif oversize == 3:
        seq.append(header)  # a second header in the stream
    return tuple(seq)


EDITS = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 10_000), st.integers(0, 255)), max_size=6
)


def strategy(family: str, f: Fuzzed) -> st.SearchStrategy[Input]:
    """The inputs of one family, over every RPC (chunk sequences: UploadBlock)."""
    methods = st.sampled_from(METHODS)
    if family == "random-bytes":
        return st.builds(
            lambda m, data: Input(family, m, (data,)), methods, st.binary(max_size=3000)
        )
    if family == "mutated":
        return st.builds(
            lambda m, edits: Input(family, m, (mutate_bytes(valid(m), edits),)), methods, EDITS
        )
    if family == "path-like":
        return st.builds(
            lambda m, v, n: Input(family, m, (path_like(m, v, n),)),
            methods,
            st.sampled_from(PATHS) | st.text(max_size=40),
            st.integers(-(2**63), 2**63 - 1),
        )
    if family == "chunks":
        return st.builds(
            lambda *a: Input(family, "UploadBlock", chunk_sequence(f.upload, *a)),
            st.permutations(range(5)),
            st.integers(1, 5),
            st.integers(0, 4),
            st.integers(-10, 10**7),
            st.integers(0, 3),
            st.sampled_from(["u-fuzz", "u-other", "../up", "x" * 300]),
        )
    raise ValueError(f"unknown fuzz family {family!r}; known: {', '.join(FAMILIES)}")


def fuzz(f: Fuzzed, family: str, examples: int, fuzz_seed: int, strict: bool = True) -> Tally:
    """Send ``examples`` inputs of ``family`` drawn from ``fuzz_seed`` (the same seed, the same
    inputs); ``strict`` stops at the first bad status or path-like success (hypothesis then
    shrinks it and prints the input), otherwise they are counted. Then compare what the registry
    stores with what it stored before: ``Tally.changes`` lists rows no valid request asked for."""
    tally = Tally(family, fuzz_seed)
    before = stored_rows(f.cfg)
    start = time.perf_counter()

    @seed(fuzz_seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,  # the inputs follow from the seed alone
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(strategy(family, f))
    def one(inp: Input) -> None:
        seen = len(tally.violations)
        f.call(inp, tally)
        if strict:
            assert len(tally.violations) == seen, (
                f"{tally.violations[-1]} (rerun with --fuzz-seed {fuzz_seed})"
            )

    one()
    tally.seconds = time.perf_counter() - start
    tally.changes = unasked_changes(before, stored_rows(f.cfg), tally.created)
    return tally
