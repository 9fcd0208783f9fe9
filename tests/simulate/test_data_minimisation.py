"""Data minimisation: a quick nki70-3 run (an omics-only, a clinical-only and a paired hospital)
with a recording TLS relay between the sites and the coordinator (gRPC) and the SuperLink
(Flower). Everything a site sent is decoded and classified by its structure: block uploads whose
bytes are the site's own signed blocks, manifests with counts of at least the site's minimum cell
size, requests that carry identifiers only, federated evaluation reports with pair counts and
patient and event counts of at least that size, Flower replies with the packed trainable
weights, the site's description and two aggregates. Then no patient's id, feature values or
outcome may appear anywhere in those bytes; a planted row shows the scan would have found one.

The sites cross-fit (5 folds, the default): each hospital scores candidates on all of its ~38
patients (13 events), so its evaluation reports carry scores, not only declines; the fold copies
of its blocks stay in its state folder, and none of their bytes may appear in what it sent.

NKI-70's patient ids are small integers ("7"), which occur everywhere by chance; the test gives
every patient a tagged id ("pt7-1f0c...") before the sites' data folders are written, so that a
search for them means something. The values themselves are untouched."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import struct
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.proto import message_pb2, recorddict_pb2
from flwr.proto.fleet_pb2 import PushMessagesRequest
from google.protobuf.message import Message as ProtoMessage
from safetensors.numpy import load as st_load

from common.artifacts.blockfile import expected_tensors, header
from common.artifacts.modelfile import load_model_folder
from common.data.dataset import MultimodalDataset
from common.data.sitefolder import load_site_folder
from common.data.splits import site_split
from common.fuse import fused_model, paired_only
from common.fuse.wire import run_key, trainable_names
from common.lego import BlockConfig, LegoEnsemble, LegoMerge
from common.pb.mmlego.v1 import evaluation_pb2 as epb
from common.pb.mmlego.v1 import registry_pb2 as pb
from simulate.run import RunResult, simulate
from simulate.scenario import Partition, Scenario, load_scenario, partition
from site_client.config import SiteConfig, load_site_config
from tests.capture import (
    Capture,
    FleetCall,
    GrpcCall,
    HttpRequest,
    RecordingRelay,
    find_needles,
    fleet_calls,
    grpc_calls,
    http1_requests,
    object_body,
    object_type,
    pushed_messages,
    pushed_objects,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200), pytest.mark.xdist_group("capture")]

SERVICES = {
    s.full_name: (s, module)
    for module in (pb, epb)
    for s in module.DESCRIPTOR.services_by_name.values()
}
IDENT = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9._:=+/-]{0,199}"
)  # task/model/block/upload ids, page tokens
HEX64 = re.compile(r"[0-9a-f]{64}")
# what a site may ask the registry, and the fields each request may carry: identifiers, offsets,
# page settings
SITE_REQUESTS: dict[str, set[str]] = {
    "GetTaskRequest": {"task_id"},
    "ListTasksRequest": set(),
    "UploadStatusRequest": {"upload_id"},
    "DownloadModelRequest": {"model_id"},
    "DownloadBlockRequest": {"block_id", "offset"},
    "GetModelRequest": {"model_id"},
    "ListModelsRequest": {"task_id", "page_size", "page_token"},
    "GetBlockRequest": {"block_id"},
    "ListBlocksRequest": {
        "task_id",
        "site",
        "modality",
        "include_withdrawn",
        "page_size",
        "page_token",
    },
    "PendingEvaluationsRequest": {"task_id"},
    "DownloadCandidateRequest": {"job_id", "candidate_id", "offset"},
    "GetRecommendedRequest": {"task_id"},
}
DECLINES = {
    "too-few-patients",
    "query-budget",
    "disabled",
    "wrong-task-kind",
    "error",
    "folds",
    "fold-without-event",
    "folds-changed",
}  # the kinds a site may give, never text
SCORE_FIELDS = {"candidate_id", "strata", "patients", "events", "var_metric", "var_diff"}
STACK_FIELDS = {"point", "fold", "patients", "events", "loss", "gradient", "hessian"}
MANIFEST_FIELDS = {
    "task_id",
    "site",
    "modality",
    "config_json",
    "tensors",
    "train_stats",
    "code_version",
    "created_at",
    "weights_sha256",
    "weights_size",
}
NOT_COUNTS = {
    "val_metric",
    "epochs",
    "folds",
}  # train_stats that are not patient counts: validation metric, epochs, folds
# every Fleet API request of a SuperNode and the fields it may carry
FLEET_REQUESTS: dict[str, set[str]] = {
    "RegisterNodeFleetRequest": {"public_key"},
    "ActivateNodeRequest": {"public_key", "heartbeat_interval"},
    "DeactivateNodeRequest": {"node_id"},
    "UnregisterNodeFleetRequest": {"node_id"},
    "SendNodeHeartbeatRequest": {"node", "heartbeat_interval"},
    "PullMessagesRequest": {"node", "message_ids"},
    "PushMessagesRequest": {
        "node",
        "messages_list",
        "message_object_trees",
        "clientapp_runtime_list",
    },
    "GetRunRequest": {"node", "run_id"},
    "GetFabRequest": {"node", "hash_str", "run_id"},
    "PushObjectRequest": {"node", "run_id", "object_id", "object_content", "session_id"},
    "PullObjectRequest": {"node", "run_id", "object_id"},
    "ConfirmMessageReceivedRequest": {"node", "run_id", "message_object_id"},
}
METADATA_FIELDS = {
    "run_id",
    "message_id",
    "src_node_id",
    "dst_node_id",
    "reply_to_message_id",
    "group_id",
    "ttl",
    "message_type",
    "created_at",
    "src_task_id",
    "dst_task_id",
}
OBJECT_TYPES = {
    "Message",
    "RecordDict",
    "ArrayRecord",
    "Array",
    "ArrayChunk",
    "ConfigRecord",
    "MetricRecord",
}
ARRAY_KEYS = {
    "dtype",
    "shape",
    "stype",
    "arraychunk_ids",
}  # an Array object's JSON body; its bytes are in ArrayChunks


# ---- the run ------------------------------------------------------------------------------------


@dataclass
class Upload:
    """One block upload (all streams with its upload id) put back together."""

    site: str
    manifest: bytes
    signature: bytes
    weights: bytearray = field(default_factory=bytearray)
    streams: int = 0


@dataclass
class Seen:
    """A run and everything its sites sent, decoded."""

    out: Path
    scn: Scenario
    part: Partition
    result: RunResult
    seconds: float
    captures: list[Capture]
    configs: dict[str, SiteConfig]
    min_cell: dict[str, int]
    grpc: list[tuple[str, GrpcCall]] = field(default_factory=list)
    frames: Counter[str] = field(default_factory=Counter)
    http: list[tuple[str, HttpRequest]] = field(default_factory=list)
    fleet: list[tuple[str, FleetCall]] = field(default_factory=list)
    objects: dict[str, dict[str, bytes]] = field(
        default_factory=dict
    )  # site -> object id -> content
    messages: list[tuple[str, Message]] = field(default_factory=list)
    named: dict[str, set[str]] = field(
        default_factory=dict
    )  # site -> ids of objects its message trees name
    capture_site: dict[int, str] = field(default_factory=dict)  # index in captures -> site


def training(cfg: SiteConfig) -> MultimodalDataset:
    """The patients a site's ClientApp trains LegoFuse's full run on: all of them when it
    cross-fits, else its training patients."""
    data = load_site_folder(cfg.data)
    if cfg.evaluation.folds:
        return data
    return data.subset(site_split(data, cfg.train.val_fraction, cfg.train.seed)[0])


def tag_patients(part: Partition) -> Partition:
    """Every site's patients with ids that cannot match by chance (same patients, same values),
    and in every site's clinical data a planted rare category: the first one-hot column held by
    3 patients only (a site holds ~38 patients, too many to have one by chance), so that the
    input-scaling check below has a count to hide."""
    sites = {}
    for name, data in part.sites.items():
        ids = [f"pt{p}-{hashlib.sha256(f'{name}/{p}'.encode()).hexdigest()[:10]}" for p in data.ids]
        mods = dict(data.modalities)
        if "clinical" in mods:
            clinical = mods["clinical"]
            j = next(i for i, f in enumerate(clinical.features) if "=" in f)  # a one-hot column
            x = clinical.x.clone()
            x[:, j] = 0.0
            x[:3, j] = 1.0
            mods["clinical"] = dataclasses.replace(clinical, x=x)
        sites[name] = dataclasses.replace(data, ids=ids, modalities=mods)
    return dataclasses.replace(part, sites=sites)


def node_keys(out: Path, sites: list[str]) -> dict[bytes, str]:
    """DER public key -> site, from the Flower node keys in the site kits."""
    found = {}
    for s in sites:
        key = serialization.load_ssh_public_key(
            (out / "sites" / s / "flower-node.pub").read_bytes()
        )
        found[
            key.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ] = s
    return found


def der(pem: bytes) -> bytes:
    return serialization.load_pem_public_key(pem).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def decode(seen: Seen) -> None:
    """Every capture decoded: gRPC calls with their site, Fleet calls attributed by node key."""
    keys = node_keys(seen.out, list(seen.configs))
    by_site: dict[str, list[FleetCall]] = {}
    for i, cap in enumerate(seen.captures):
        if cap.kind == "registry":
            assert cap.site in seen.configs and cap.alpn == "h2", (cap.site, cap.alpn)
            rpcs, counts, rest = grpc_calls(bytes(cap.sent), bytes(cap.received))
            assert rest == b"", f"{cap.site}: the connection ends inside an HTTP/2 frame"
            seen.frames.update(counts)
            seen.grpc += [(cap.site, c) for c in rpcs]
            seen.capture_site[i] = cap.site
        else:
            assert cap.alpn in (None, "http/1.1"), cap.alpn
            requests, rest = http1_requests(bytes(cap.sent))
            assert rest == b"", f"a SuperNode connection ends inside a request: {rest[:80]!r}"
            calls = fleet_calls(requests)
            if not calls:  # opened, then its SuperNode stopped
                assert not cap.sent
                seen.capture_site[i] = "-"
                continue
            sites = {keys.get(der(c.node_key)) if c.node_key else None for c in calls}
            assert len(sites) == 1 and None not in sites, (
                f"Fleet requests not signed by exactly one enrolled node: {sites}"
            )
            site = str(sites.pop())
            seen.capture_site[i] = site
            seen.http += [(site, r) for r in requests]
            seen.fleet += [(site, c) for c in calls]
            by_site.setdefault(site, []).extend(calls)
    for site, fleet in by_site.items():
        seen.objects[site] = pushed_objects(fleet)
        messages, named = pushed_messages(fleet, seen.objects[site])
        seen.messages += [(site, m) for m in messages]
        seen.named[site] = named


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> Seen:
    scn = load_scenario("nki70-3").quick()
    part = tag_patients(partition(scn))
    out = tmp_path_factory.mktemp("minimisation") / "run"
    lines: list[str] = []
    t0 = time.monotonic()
    with RecordingRelay(out) as relay:
        result = simulate(scn, part, out, lines.append, relay=relay)
    seconds = time.monotonic() - t0
    assert not relay.overflow, "the relay kept less than the sites sent"
    configs = {s: load_site_config(d / "site.toml") for s, d in result.site_dirs.items()}
    min_cell = {s: c.min_cell_size for s, c in configs.items()}
    s = Seen(out, scn, part, result, seconds, relay.snapshot(), configs, min_cell)
    decode(s)
    return s


# ---- helpers ------------------------------------------------------------------------------------


def only_fields(msg: ProtoMessage, allowed: set[str], what: str) -> None:
    """``msg`` sets no field outside ``allowed`` and carries no field its schema does not know."""
    names = {fd.name for fd, _ in msg.ListFields()}
    assert names <= allowed, f"{what} carries {sorted(names - allowed)}"
    clean = type(msg)()
    clean.CopyFrom(msg)
    clean.DiscardUnknownFields()
    assert clean.ByteSize() == msg.ByteSize(), f"{what} carries fields unknown to its schema"


def identifiers_only(msg: ProtoMessage, what: str) -> None:
    for fd, value in msg.ListFields():
        if isinstance(value, str):
            assert IDENT.fullmatch(value), f"{what}.{fd.name} = {value[:80]!r} is not an identifier"
        else:
            assert isinstance(value, (int, bool)), f"{what}.{fd.name} is a {type(value).__name__}"


def request_type(path: str) -> type[ProtoMessage]:
    service, _, name = path.strip("/").partition("/")
    assert service in SERVICES, f"a site called {path!r}, not one of our services"
    desc, module = SERVICES[service]
    method = desc.methods_by_name.get(name)
    assert method is not None, f"a site called an unknown RPC {path!r}"
    cls: type[ProtoMessage] = getattr(module, method.input_type.name)
    return cls


def check_report(report: epb.EvaluationReport, site: str, min_cell: int, strata: int) -> None:
    """An evaluation report is pair counts and counts of at least ``min_cell``, a stack job's
    sums over at least ``min_cell`` patients, events and censored patients (one sum per fold or
    site, never per patient), or a decline's kind."""
    only_fields(report, {"job_id", "scores", "declined", "stack"}, f"{site}'s EvaluationReport")
    assert IDENT.fullmatch(report.job_id)
    if report.declined:
        assert report.declined in DECLINES and not report.scores and not report.stack, (
            f"{site} declined with {report.declined[:80]!r}"
        )
        return
    for st in report.stack:
        assert not report.scores
        only_fields(st, STACK_FIELDS, f"{site}'s StackStats")
        g = len(st.gradient)
        assert 1 <= g <= 16 and len(st.hessian) == g * g and -1 <= st.fold < 50
        assert (
            st.patients >= min_cell
            and st.events >= min_cell
            and st.patients - st.events >= min_cell
        ), f"{site}: stack sums over {st.patients} patients and {st.events} events"
        assert all(math.isfinite(v) for v in (st.loss, *st.gradient, *st.hessian))
    for sc in report.scores:
        only_fields(sc, SCORE_FIELDS, f"{site}'s CandidateScore")
        assert IDENT.fullmatch(sc.candidate_id) and len(sc.strata) == strata
        for p in sc.strata:
            only_fields(p, {"concordant", "discordant", "tied"}, "PairCounts")
        assert (
            sc.patients >= min_cell
            and sc.events >= min_cell
            and sc.patients - sc.events >= min_cell
        ), (
            f"{site}: a score of {sc.patients} patients and {sc.events} events "
            f"(minimum cell size {min_cell})"
        )
        assert math.isfinite(sc.var_metric) and math.isfinite(sc.var_diff)


def uploads(seen: Seen) -> dict[str, Upload]:
    """Upload id -> the upload, from every UploadBlock stream of every site."""
    found: dict[str, Upload] = {}
    for site, call in seen.grpc:
        if not call.path.endswith("/UploadBlock"):
            continue
        chunks = [pb.UploadChunk.FromString(m) for m in call.messages]
        head = chunks[0]
        assert head.WhichOneof("part") == "header", (
            f"{site}: an upload stream starts with {head.WhichOneof('part')}"
        )
        only_fields(head, {"header", "offset"}, "UploadChunk(header)")
        only_fields(head.header, {"upload_id", "manifest"}, "UploadHeader")
        only_fields(head.header.manifest, {"manifest", "signature"}, "SignedManifest")
        up = found.setdefault(
            head.header.upload_id,
            Upload(site, head.header.manifest.manifest, head.header.manifest.signature),
        )
        assert (up.site, up.manifest, up.signature) == (
            site,
            head.header.manifest.manifest,
            head.header.manifest.signature,
        )
        up.streams += 1
        at = head.offset
        assert at <= len(up.weights), (
            f"{site}: an upload resumes at {at} with only {len(up.weights)} bytes sent before"
        )
        for c in chunks[1:]:
            assert c.WhichOneof("part") == "data" and c.offset == at, (
                f"{site}: upload chunk at {c.offset}, expected {at}"
            )
            only_fields(c, {"data", "offset"}, "UploadChunk(data)")
            up.weights[at : at + len(c.data)] = c.data
            at += len(c.data)
    return found


def block_folder(seen: Seen, site: str, manifest: bytes) -> Path:
    folders = [
        f
        for f in (seen.out / "sites" / site / "blocks").iterdir()
        if (f / "manifest.pb").read_bytes() == manifest
    ]
    assert len(folders) == 1, f"{site} uploaded a manifest that is not one of its block folders"
    return folders[0]


def check_manifest(
    m: pb.BlockManifest, site: str, cfg: SiteConfig, task_id: str, weights: bytes, min_cell: int
) -> None:
    """A manifest is metadata and aggregates: names, shapes, hashes, the architecture's config,
    and patient counts of at least ``min_cell`` (and so is any difference of two of them)."""
    only_fields(m, MANIFEST_FIELDS, f"{site}'s BlockManifest")
    assert (m.site, m.task_id) == (site, task_id) and m.modality in cfg.modalities
    config = BlockConfig.from_dict(
        json.loads(m.config_json)
    )  # nothing but the architecture's fields
    assert config.modality == m.modality
    for t in m.tensors:
        only_fields(t, {"name", "shape", "dtype"}, "TensorSpec")
    declared = {t.name: (list(t.shape), t.dtype) for t in m.tensors}
    assert header(weights) == declared == expected_tensors(config), (
        f"{site}: weights are not exactly the block's tensors"
    )
    (n,) = struct.unpack("<Q", weights[:8])
    assert "__metadata__" not in json.loads(weights[8 : 8 + n]), (
        f"{site}: the weights file carries metadata"
    )
    assert (
        m.weights_size == len(weights) and m.weights_sha256 == hashlib.sha256(weights).hexdigest()
    )
    counts = {k: v for k, v in m.train_stats.items() if k.startswith("n_")}
    assert set(m.train_stats) - set(counts) <= NOT_COUNTS, (
        f"{site}: unknown train_stats {sorted(m.train_stats)}"
    )
    for k, v in counts.items():
        assert v == int(v) and v >= min_cell, (
            f"{site} {m.modality}: {k} = {v} is below its minimum cell size {min_cell}"
        )
    if {"n_train", "n_events_train"} <= set(counts):
        censored = counts["n_train"] - counts["n_events_train"]
        assert censored >= min_cell, (
            f"{site} {m.modality}: n_train - n_events_train = {censored} < {min_cell}"
        )
    assert all(math.isfinite(v) for v in m.train_stats.values())


def check_object_body(site: str, kind: str, body: bytes) -> None:
    """A pushed object holds what its type says and nothing else (Flower's inflation would
    ignore fields it does not know). ArrayChunks are raw array bytes: checked as arrays."""
    what = f"{site}'s {kind} object"
    assert kind in OBJECT_TYPES, what
    if kind == "Message":
        msg = message_pb2.Message.FromString(body)
        only_fields(msg, {"metadata"}, what)  # no content (that is a child object), no error
        only_fields(msg.metadata, METADATA_FIELDS, what)
    elif kind in ("ConfigRecord", "MetricRecord"):
        only_fields(getattr(recorddict_pb2, kind).FromString(body), {"items"}, what)
    elif kind in ("RecordDict", "ArrayRecord"):
        refs = json.loads(body)
        assert all(isinstance(k, str) and HEX64.fullmatch(v) for k, v in refs.items()), what
    elif kind == "Array":
        assert set(json.loads(body)) == ARRAY_KEYS, what


def fleet_name(call: FleetCall) -> str:
    return str(call.request.DESCRIPTOR.name)


# ---- gRPC: what sites ask the registry ----------------------------------------------------------


def test_registry_requests_are_signed_block_uploads_identifiers_and_evaluation_counts(
    seen: Seen,
) -> None:
    task_id = seen.result.task.task_id
    reports: Counter[str] = Counter()
    for site, call in seen.grpc:
        assert call.ended and not call.reset and call.rest == b"", (
            f"{site} {call.path}: unfinished stream"
        )
        cls = request_type(call.path)
        if cls is pb.UploadChunk:
            continue  # below, as whole uploads
        assert len(call.messages) == 1, f"{site} {call.path}: {len(call.messages)} request messages"
        if cls is epb.EvaluationReport:
            check_report(
                epb.EvaluationReport.FromString(call.messages[0]), site, seen.min_cell[site], 1
            )
            reports[site] += 1
            continue
        assert cls.DESCRIPTOR.name in SITE_REQUESTS, (
            f"{site} called {call.path}, which is not a site's call"
        )
        req = cls.FromString(call.messages[0])
        only_fields(req, SITE_REQUESTS[cls.DESCRIPTOR.name], f"{site} {call.path}")
        identifiers_only(req, f"{site} {call.path}")

    ups = uploads(seen)
    for upload_id, up in ups.items():
        weights = bytes(up.weights)
        folder = block_folder(seen, up.site, up.manifest)
        assert weights == (folder / "weights.safetensors").read_bytes(), (
            f"{up.site} {upload_id}: not the block's weights"
        )
        assert up.signature == (folder / "manifest.sig").read_bytes()
        manifest = pb.BlockManifest.FromString(up.manifest)
        check_manifest(
            manifest, up.site, seen.configs[up.site], task_id, weights, seen.min_cell[up.site]
        )
    uploaded = {(up.site, pb.BlockManifest.FromString(up.manifest).modality) for up in ups.values()}
    assert uploaded == {
        (s, m) for s, c in seen.configs.items() for m in c.modalities
    }  # every block of every site
    assert set(reports) == set(seen.configs)  # every site answered the evaluation jobs
    scored = [
        s
        for s, call in seen.grpc
        if call.path.endswith("/ReportEvaluation")
        and epb.EvaluationReport.FromString(call.messages[0]).scores
    ]
    assert scored, "no site sent scores: the report check above checked only declines"


# ---- Flower: what a SuperNode sends the SuperLink ------------------------------------------------


def test_flower_traffic_is_packed_weights_the_site_description_and_aggregates(seen: Seen) -> None:
    keys = {s: k for k, s in node_keys(seen.out, list(seen.configs)).items()}
    nodes: dict[str, set[int]] = {}
    for site, call in seen.fleet:
        name = fleet_name(call)
        assert name in FLEET_REQUESTS, f"{site} sent {name} ({call.path})"
        req = call.request
        only_fields(req, FLEET_REQUESTS[name], f"{site} {call.path}")
        for fd, value in req.ListFields():
            if fd.name == "node":
                only_fields(value, {"node_id"}, "Node")
                nodes.setdefault(site, set()).add(value.node_id)
            elif fd.name == "public_key":
                assert der(value) == keys[site]
            elif fd.name in ("object_id", "message_object_id", "hash_str"):
                assert HEX64.fullmatch(value), f"{site} {name}.{fd.name} = {value[:80]!r}"
            elif fd.name == "message_ids":
                assert all(HEX64.fullmatch(v) for v in value)
            elif fd.name == "session_id":
                assert IDENT.fullmatch(value), value[:80]
        if isinstance(req, PushMessagesRequest):
            for m in req.messages_list:
                only_fields(m, {"metadata", "content"}, f"{site} pushed message")
                assert m.content.ByteSize() == 0, (
                    "a pushed message carries content outside its objects"
                )
                only_fields(m.metadata, METADATA_FIELDS, f"{site} message metadata")
    assert all(len(ids) == 1 for ids in nodes.values()), (
        nodes
    )  # one node per site, nothing else in `node`

    paired = [s for s, c in seen.configs.items() if c.paired]
    merged, record = load_model_folder(seen.result.model_dirs[seen.result.merged.model_id])
    assert isinstance(merged, LegoMerge | LegoEnsemble)  # the merge --recipe auto published
    model = fused_model(merged.block_list, seen.scn.spec.fuse_mode, record.recipe)
    state = model.state_dict()
    trainable = sum(state[n].numel() for n in trainable_names(model))
    patients = {s: len(paired_only(training(seen.configs[s]), model.modalities)) for s in paired}
    for site, objects in seen.objects.items():
        assert set(objects) <= seen.named[site], f"{site} pushed objects that belong to no message"
        for raw in objects.values():
            check_object_body(site, object_type(raw), object_body(raw))
    replies: Counter[tuple[str, str]] = Counter()
    for site, msg in seen.messages:
        cfg, kind = seen.configs[site], msg.metadata.message_type
        assert not msg.has_error(), f"{site} replied with an error: {msg.error.reason}"
        replies[(site, kind)] += 1
        content = dict(msg.content.items())
        if kind == "query.describe":
            assert set(content) == {"site"} and isinstance(content["site"], ConfigRecord)
            assert dict(content["site"]) == {
                "site": site,
                "modalities": list(cfg.modalities),
                "paired": cfg.paired,
            }
        else:
            assert kind == "train" and set(content) == {"arrays", "metrics"}, (
                kind,
                sorted(content),
            )
            arrays, metrics = content["arrays"], content["metrics"]
            assert isinstance(arrays, ArrayRecord) and isinstance(metrics, MetricRecord)
            assert list(arrays) == [
                run_key(i) for i in range(1 + cfg.evaluation.folds)
            ]  # the full run, then a run per fold
            for key in arrays:
                flat = arrays[key].numpy()
                assert (
                    flat.dtype == np.float32
                    and flat.shape == (trainable,)
                    and np.isfinite(flat).all()
                )
            assert set(metrics) == {"num-examples", "train_loss"}
            n, loss = metrics["num-examples"], metrics["train_loss"]
            assert isinstance(n, int) and n == patients[site] and n >= seen.min_cell[site], (
                site,
                n,
            )
            assert isinstance(loss, float) and math.isfinite(loss)
    rounds = len(seen.result.fuse_detail["history"])  # early stopping: every round run, kept or not
    for site in paired:
        assert (
            rounds >= 1
            and replies[(site, "train")] == rounds
            and replies[(site, "query.describe")] >= 1
        ), replies
    assert {s for s, _ in replies} == set(paired)  # unpaired sites run no SuperNode


# ---- canaries: no patient's value anywhere in what sites sent ------------------------------------


@dataclass(frozen=True)
class Canary:
    site: str
    patient: str
    what: str


def simple(v: float) -> bool:
    """Values with a short binary form (0, 1, 50, 2.5, ...): weights hold them by chance."""
    return abs(v) < 65536 and float(v) * 4 == round(float(v) * 4)


def f64(values: np.ndarray) -> list[bytes]:
    """The float64 forms a site may hold of float32 values: widened, or parsed from the CSV text."""
    widened = values.astype("<f8").tobytes()
    parsed = np.array([float(f"{v:.9g}") for v in values], dtype="<f8").tobytes()
    return [widened] if widened == parsed else [widened, parsed]


def canaries(
    site: str, data: MultimodalDataset, needles: dict[bytes, Canary], skipped: Counter[str]
) -> None:
    """Byte strings of every patient of ``data``: id, outcome as text and float64, and feature
    values as adjacent pairs and whole rows in float32 and float64. Strings that weights or text
    hold by chance (shorter than 8 bytes, pairs of simple values) are counted in ``skipped``."""

    def add(b: bytes, patient: str, what: str) -> None:
        if len(b) < 8:
            skipped[what + " (< 8 bytes)"] += 1
        else:
            needles.setdefault(b, Canary(site, patient, what))

    for i, pid in enumerate(data.ids):
        add(pid.encode(), pid, "id")
        if data.time is not None and data.event is not None:
            t = float(data.time[i])
            for text in {repr(t), f"{t:.9g}", str(t)}:
                add(text.encode(), pid, "time as text")
            add(struct.pack("<d", t), pid, "time as float64")
            skipped["event (0/1)"] += 1
        if data.label is not None:
            skipped["label (a class index)"] += 1
        for mod in data.modalities.values():
            if not bool(mod.present[i]):
                continue
            x = mod.x[i].numpy().astype("<f4")
            if mod.kind == "tabular":
                rows = [x]
            else:  # a sequence: each real step is a row
                assert mod.mask is not None
                rows = [x[t] for t in np.flatnonzero(mod.mask[i].numpy())]
            for row in rows:
                add(row.tobytes(), pid, "row as float32")
                for b in f64(row):
                    add(b, pid, "row as float64")
                for j in range(len(row) - 1):
                    pair = row[j : j + 2]
                    if simple(pair[0]) and simple(pair[1]):
                        skipped["feature pair of simple values"] += 1
                        continue
                    add(pair.tobytes(), pid, "feature pair as float32")
                    for b in f64(pair):
                        add(b, pid, "feature pair as float64")


def all_needles(seen: Seen) -> tuple[dict[bytes, Canary], Counter[str]]:
    needles: dict[bytes, Canary] = {}
    skipped: Counter[str] = Counter()
    for site, cfg in seen.configs.items():
        canaries(
            site, seen.part.sites[site], needles, skipped
        )  # what the simulator handed the site
        canaries(
            site, load_site_folder(cfg.data), needles, Counter()
        )  # what the site read from its folder
    return needles, skipped


def haystacks(seen: Seen) -> list[tuple[str, bytes]]:
    """Everything sites sent, raw and decoded: the TLS plaintext of each connection, decoded
    headers (HPACK hides text), gRPC messages, reassembled uploads, HTTP bodies, pushed objects and
    the arrays Flower rebuilt from them."""
    out = [
        (f"{c.kind} connection of {seen.capture_site[i]}", bytes(c.sent))
        for i, c in enumerate(seen.captures)
    ]
    for site, call in seen.grpc:
        out.append(
            (
                f"{site} {call.path} headers",
                "\n".join(f"{k}: {v}" for k, v in call.headers).encode(),
            )
        )
        out += [(f"{site} {call.path} message", m) for m in call.messages]
    out += [(f"{up.site} upload {uid}", bytes(up.weights)) for uid, up in uploads(seen).items()]
    out += [(f"{site} {r.method} {r.path}", r.body) for site, r in seen.http]
    out += [
        (f"{site} object {oid[:12]}", c)
        for site, objs in seen.objects.items()
        for oid, c in objs.items()
    ]
    for site, msg in seen.messages:
        for rec in msg.content.array_records.values():
            out += [(f"{site} array {name}", arr.numpy().tobytes()) for name, arr in rec.items()]
    return out


def test_no_patient_value_appears_in_anything_a_site_sent(seen: Seen) -> None:
    needles, skipped = all_needles(seen)
    hay = haystacks(seen)
    hits = [(name, at, c) for name, data in hay for at, c in find_needles(data, needles)]
    assert hits == [], f"patient values in what sites sent: {hits[:10]}"

    # the same scan finds a patient's row planted in the middle of the largest thing a site sent,
    # and a patient id planted in a Flower request body
    victim = next(s for s, c in seen.configs.items() if c.paired)
    data = seen.part.sites[victim]
    mod = next(iter(data.modalities))
    row = data.modalities[mod].x[0].numpy().astype("<f4").tobytes()
    name, biggest = max(hay, key=lambda h: len(h[1]))
    planted = biggest[: len(biggest) // 2] + row + biggest[len(biggest) // 2 :]
    found = {c for _, c in find_needles(planted, needles)}
    assert Canary(victim, data.ids[0], "row as float32") in found, (
        f"a planted row in {name} was not found"
    )
    assert any(c.what == "feature pair as float32" and c.patient == data.ids[0] for c in found)
    body = next(r.body for s, r in seen.http if r.path.endswith("/push-object"))
    assert Canary(victim, data.ids[1], "id") in {
        c for _, c in find_needles(body + data.ids[1].encode(), needles)
    }

    kinds = Counter(c.what for c in needles.values())
    patients = sum(len(d) for d in seen.part.sites.values())
    print(
        f"\ncanary scan: {len(needles)} byte strings of {patients} patients "
        f"({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}) over {len(hay)} haystacks, "
        f"{sum(len(d) for _, d in hay) / 1e6:.2f} MB: 0 hits; the planted row and id were found"
    )
    not_scanned = ", ".join(f"{k} {v}" for k, v in sorted(skipped.items()))
    print(f"not scanned (would match by chance): {not_scanned}")


# ---- the capture saw the run -------------------------------------------------------------------


def test_the_capture_saw_every_site_upload_and_the_rounds_and_the_run_passed_as_without_it(
    seen: Seen,
) -> None:
    assert seen.result.fuse_detail.get(
        "history"
    )  # the relayed run reached its rounds (whether a round was kept or not)
    ups = uploads(seen)
    assert {up.site for up in ups.values()} == set(seen.configs)
    trains = [s for s, m in seen.messages if m.metadata.message_type == "train"]
    assert trains and set(trains) == {s for s, c in seen.configs.items() if c.paired}

    rpcs = Counter(call.path.rsplit("/", 1)[1] for _, call in seen.grpc)
    fleet = Counter(fleet_name(c) for _, c in seen.fleet)
    objects = Counter(object_type(c) for objs in seen.objects.values() for c in objs.values())
    print(
        f"\nrelayed run: {seen.seconds:.0f} s, {len(seen.captures)} TLS connections "
        f"(registry {sum(c.kind == 'registry' for c in seen.captures)}, "
        f"superlink {sum(c.kind == 'superlink' for c in seen.captures)})"
    )
    for site in seen.configs:
        line = []
        for kind in ("registry", "superlink"):
            mine = [
                c
                for i, c in enumerate(seen.captures)
                if c.kind == kind and seen.capture_site[i] == site
            ]
            if mine:
                line.append(
                    f"{kind}: {len(mine)} connections, sent {sum(len(c.sent) for c in mine):,} B, "
                    f"received {sum(len(c.received) for c in mine):,} B"
                )
        print(f"  {site:<12} (min cell {seen.min_cell[site]}) " + "; ".join(line))
    print(
        f"  gRPC requests: {', '.join(f'{k} {v}' for k, v in rpcs.most_common())}; "
        f"{len(ups)} uploads, {sum(len(u.weights) for u in ups.values()):,} B of weights"
    )
    print(
        f"  HTTP/2 frames from sites: {', '.join(f'{k} {v}' for k, v in seen.frames.most_common())}"
    )
    print(f"  Fleet requests: {', '.join(f'{k} {v}' for k, v in fleet.most_common())}")
    messages = Counter(m.metadata.message_type for _, m in seen.messages)
    print(
        f"  pushed objects: {', '.join(f'{k} {v}' for k, v in objects.most_common())}; messages: "
        f"{', '.join(f'{k} {v}' for k, v in messages.most_common())}"
    )


# ---- counts inside the weights ----------------------------------------------------------------
# Each block stores its site's per-feature input mean and std. For a one-hot feature, mean * n_train
# would be the number of training patients in that category: this test found hosp-clinic's clinical
# block saying 2 of its 28 training patients were ER-negative, before rare values were folded into
# the most common one for those statistics (common.data.splits.fold_rare_values).


def test_block_input_scaling_reveals_no_count_below_the_minimum_cell(seen: Seen) -> None:
    small, checked, rare_at_site = [], 0, 0
    for up in uploads(seen).values():
        m = pb.BlockManifest.FromString(up.manifest)
        n = m.train_stats.get("n_train")
        if n is None:
            continue
        site_data = seen.part.sites[up.site]
        data = site_data.modalities[m.modality]
        assert (
            site_data.holdout is None and seen.configs[up.site].evaluation.folds
        )  # cross-fitted: trained on all of them
        rows = data.x[data.present].numpy()  # its training patients
        binary = [
            j for j in range(rows.shape[1]) if set(np.unique(rows[:, j]).tolist()) <= {0.0, 1.0}
        ]
        mean = st_load(bytes(up.weights))["scaling.mean"]
        cell = seen.min_cell[up.site]
        for j in binary:
            checked += 1
            held = int(rows[:, j].sum())
            rare_at_site += (
                0 < held < cell or 0 < len(rows) - held < cell
            )  # something the fold has to hide
            count = round(float(mean[j]) * n)
            if 0 < count < cell or 0 < n - count < cell:
                small.append((up.site, m.modality, data.features[j], count, int(n)))
    assert checked and rare_at_site, (
        checked,
        rare_at_site,
    )  # the check has binary features, some with a rare category
    assert small == [], (
        f"(site, modality, feature, patients, n_train) readable from the weights: {small}"
    )


# ---- fold copies stay at the site -----------------------------------------------------------


def test_no_fold_copy_of_a_block_appears_in_anything_a_site_sent(seen: Seen) -> None:
    """Each cross-fitted block's fold copies (its site's state folder) are never uploaded: neither
    their weights files nor any of their tensors' bytes appear in any haystack; a fold copy's
    tensor planted in the largest one is found."""
    needles: dict[bytes, str] = {}
    released = {
        f.name.rsplit("-", 1)[1]: st_load((f / "weights.safetensors").read_bytes())
        for site in seen.configs
        for f in (seen.out / "sites" / site / "blocks").iterdir()
    }
    for site in seen.configs:
        for weights in sorted(
            (seen.out / "sites" / site / "folds").glob("*/fold-*/weights.safetensors")
        ):
            raw = weights.read_bytes()
            (n,) = struct.unpack("<Q", raw[:8])
            label = f"{site} {weights.parent.parent.name[:12]} {weights.parent.name}"
            # its tensors' bytes (the header is the block's too)
            needles[raw[8 + n : 8 + n + 4096]] = f"{label} (file)"
            mine = released[weights.parent.parent.name[:12]]
            for name, tensor in st_load(raw).items():
                data = np.ascontiguousarray(tensor).tobytes()
                if len(data) >= 64 and not np.array_equal(
                    tensor, mine[name]
                ):  # a tensor only the fold copy has
                    needles[data[:64]] = f"{label} {name}"
    copies = {v.rsplit(" ", 1)[0] for v in needles.values() if v.endswith("(file)")}
    assert len(copies) == sum(5 * len(c.modalities) for c in seen.configs.values()), (
        copies
    )  # 5 per block
    hay = haystacks(seen)
    hits = [(name, at, c) for name, data in hay for at, c in find_needles(data, needles)]
    assert hits == [], f"fold copies in what sites sent: {hits[:10]}"
    name, biggest = max(hay, key=lambda h: len(h[1]))
    planted = biggest[: len(biggest) // 2] + next(iter(needles)) + biggest[len(biggest) // 2 :]
    assert find_needles(planted, needles), f"a fold copy planted in {name} was not found"
