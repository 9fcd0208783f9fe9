"""A typed client of the BlockRegistry: push a block (retry with exponential back-off and
jitter, resume where the coordinator stopped), pull model versions and blocks with every hash
and signature checked, and the admin calls."""

from __future__ import annotations

import hashlib
import logging
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509

from .. import serde
from ..artifacts import IntegrityError, SignatureError, read_block_files, verify
from ..artifacts.blockfile import MANIFEST, MANIFEST_VIEW, SIGNATURE, WEIGHTS
from ..artifacts.modelfile import load_model_folder, write_model_folder
from ..evaluation import Consortium
from ..evaluation.candidates import EvaluationJob, JobStatus, SiteReport
from ..evaluation.stacking import STACK_JOBS
from ..fileio import atomic_write
from ..pb.mmlego.v1 import evaluation_pb2 as epb
from ..pb.mmlego.v1 import evaluation_pb2_grpc as epb_grpc
from ..pb.mmlego.v1 import registry_pb2 as pb
from ..pb.mmlego.v1 import registry_pb2_grpc as pb_grpc
from ..pki import identity_from_cert
from ..records import (
    BlockRecord,
    ModelRecord,
    Recommendation,
    SiteRecord,
    TaskRecord,
    UploadData,
    UploadHeader,
)
from .connect import CHUNK_BYTES, TLSFiles, open_channel
from .errors import CallError

log = logging.getLogger("mmlego.client")
# What a call that waits for the sites' scores assumes the coordinator's deadline is, when not told.
WAIT_S = 600.0
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
}


@dataclass(frozen=True)
class Retry:
    """Exponential back-off with full jitter: attempt k waits uniform(0, min(cap, base * 2**k))."""

    attempts: int = 8
    base_s: float = 0.5
    cap_s: float = 30.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0.0, min(self.cap_s, self.base_s * (2**attempt)))


def upload_id_of(manifest: bytes, signature: bytes) -> str:
    """The id of a block's upload: the same on every try and after a restart of the site, so an
    interrupted upload resumes where the coordinator stopped."""
    return "u-" + hashlib.sha256(manifest + signature).hexdigest()[:40]


class RegistryClient:
    def __init__(
        self, address: str, tls: TLSFiles, insecure: bool = False, timeout_s: float = 30.0
    ) -> None:
        self.address = address
        self.channel, self.metadata = open_channel(address, tls, insecure)
        self.stub = pb_grpc.BlockRegistryStub(self.channel)
        self.evaluation = epb_grpc.EvaluationStub(self.channel)
        self.ca = x509.load_pem_x509_certificate(tls.ca.read_bytes())
        self.timeout_s = timeout_s
        self.rng = random.Random()

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        stub = self.evaluation if hasattr(self.evaluation, method) else self.stub
        try:
            return getattr(stub, method)(
                request, timeout=timeout or self.timeout_s, metadata=self.metadata
            )
        except grpc.RpcError as exc:
            raise CallError.of(exc) from None

    # ---- reads -------------------------------------------------------------------------------
    def task(self, task_id: str) -> TaskRecord:
        return serde.task_from_pb(self.call("GetTask", pb.GetTaskRequest(task_id=task_id)))

    def tasks(self) -> list[TaskRecord]:
        return [serde.task_from_pb(t) for t in self.call("ListTasks", pb.ListTasksRequest()).tasks]

    def _pages(self, method: str, request: Callable[[str], Any], field: str) -> Iterator[Any]:
        """Every item of a paged list call, page by page (a registry of thousands of blocks or
        versions does not fit in one message)."""
        token = ""
        while True:
            reply = self.call(method, request(token))
            yield from getattr(reply, field)
            token = reply.next_page_token
            if not token:
                return

    def blocks(
        self, task_id: str = "", site: str = "", modality: str = "", include_withdrawn: bool = False
    ) -> list[BlockRecord]:
        return [
            serde.block_from_pb(b)
            for b in self._pages(
                "ListBlocks",
                lambda token: pb.ListBlocksRequest(
                    task_id=task_id,
                    site=site,
                    modality=modality,
                    include_withdrawn=include_withdrawn,
                    page_token=token,
                ),
                "blocks",
            )
        ]

    def sites(self) -> list[SiteRecord]:
        return [serde.site_from_pb(s) for s in self.call("ListSites", pb.ListSitesRequest()).sites]

    def models(self, task_id: str = "") -> list[ModelRecord]:
        """Every version (of ``task_id``), newest first."""
        return [
            serde.model_from_pb(m)
            for m in self._pages(
                "ListModels",
                lambda token: pb.ListModelsRequest(task_id=task_id, page_token=token),
                "models",
            )
        ]

    def model(self, model_id: str) -> ModelRecord:
        return serde.model_from_pb(self.call("GetModel", pb.GetModelRequest(model_id=model_id)))

    # ---- admin -------------------------------------------------------------------------------
    def create_task(self, task: TaskRecord) -> TaskRecord:
        return serde.task_from_pb(self.call("CreateTask", serde.task_to_pb(task)))

    def merge(
        self,
        task_id: str,
        latent_merge: str = "",
        head_merge: str = "",
        policy: str = "",
        deadline_s: float = 0.0,
        measure: bool = True,
        hierarchy: str = "",
    ) -> ModelRecord:
        """A new version: the recipe that ``policy`` chooses (uniform, ensemble or auto) among
        flat or hierarchical recipes (``hierarchy``: auto, flat, modality; empty: auto); the call
        waits while the sites score it (at most ``deadline_s``; 0: the coordinator's default),
        unless not ``measure``."""
        req = pb.MergeRequest(
            task_id=task_id,
            latent_merge=latent_merge,
            head_merge=head_merge,
            recipe=policy,  # the wire's name for the merge policy
            deadline_s=deadline_s,
            unmeasured=not measure,
            hierarchy=hierarchy,
        )
        # the sites may take up to the deadline for each stack job and for the scoring job
        waits = 1 + STACK_JOBS
        return serde.model_from_pb(
            self.call("Merge", req, timeout=(deadline_s or WAIT_S) * waits + 120)
        )

    def fuse(
        self,
        model_id: str,
        rounds: int = 0,
        epochs: int = 0,
        patience: int = 0,
        deadline_s: float = 0.0,
        timeout_s: float = 3600.0,
    ) -> ModelRecord:
        """Run LegoFuse rounds from a merge version on the paired sites; waits for the new
        version."""
        req = pb.FuseRequest(
            model_id=model_id,
            rounds=rounds,
            epochs=epochs,
            patience=patience,
            deadline_s=deadline_s,
        )
        return serde.model_from_pb(self.call("Fuse", req, timeout=timeout_s))

    # ---- federated evaluation ------------------------------------------------------------------
    def pending_evaluations(self, task_id: str = "") -> list[EvaluationJob]:
        """Open jobs this site has not answered (they count as delivered to it from now on)."""
        reply = self.call("PendingEvaluations", epb.PendingEvaluationsRequest(task_id=task_id))
        return [serde.job_from_pb(j) for j in reply.jobs]

    def download_candidate(self, job_id: str, candidate_id: str, sha256: str) -> bytes:
        """A candidate's own weights, checked against the sha256 the job names."""
        _, data = self._download(
            "DownloadCandidate",
            epb.DownloadCandidateRequest(job_id=job_id, candidate_id=candidate_id),
            header=False,
            stub=self.evaluation,
        )
        if hashlib.sha256(data).hexdigest() != sha256:
            raise IntegrityError(
                f"the weights of candidate {candidate_id} of {job_id} do not match their sha256"
            )
        return data

    def report(self, report: SiteReport) -> int:
        """Send this site's answer to one job; returns how many scores the coordinator kept."""
        return int(self.call("ReportEvaluation", serde.report_to_pb(report)).accepted)

    def evaluations(self, task_id: str = "", open_only: bool = False) -> list[JobStatus]:
        reply = self.call(
            "ListEvaluations", epb.ListEvaluationsRequest(task_id=task_id, open_only=open_only)
        )
        return [serde.status_from_pb(s) for s in reply.evaluations]

    def evaluate(
        self, model_ids: list[str], deadline_s: float = 0.0
    ) -> tuple[JobStatus, dict[str, Consortium]]:
        """Ask the sites to score stored versions; waits for their reports (at most the
        deadline)."""
        reply = self.call(
            "Evaluate",
            epb.EvaluateRequest(model_ids=model_ids, deadline_s=deadline_s),
            timeout=(deadline_s or WAIT_S) + 120,
        )
        return serde.status_from_pb(reply.status), dict(
            serde.result_from_pb(r) for r in reply.results
        )

    def recommended(self, task_id: str, site: str = "") -> Recommendation:
        """The consortium's recommended version, or (``site``) the one for that site's
        patients."""
        return serde.recommendation_from_pb(
            self.call("GetRecommended", epb.GetRecommendedRequest(task_id=task_id, site=site))
        )

    def withdraw(self, site: str, reason: str) -> SiteRecord:
        return serde.site_from_pb(
            self.call("WithdrawSite", pb.WithdrawSiteRequest(site=site, reason=reason))
        )

    # ---- push --------------------------------------------------------------------------------
    def upload_status(self, upload_id: str) -> int:
        """Bytes the coordinator holds of ``upload_id`` (0 if it holds none)."""
        try:
            return int(
                self.call(
                    "GetUploadStatus", pb.UploadStatusRequest(upload_id=upload_id)
                ).received_bytes
            )
        except CallError as err:
            if err.code == grpc.StatusCode.NOT_FOUND:
                return 0
            raise

    def push(
        self,
        folder: str | Path,
        retry: Retry = Retry(),
        limit_bytes: int | None = None,
        on_attempt: Callable[[int, int], None] | None = None,
    ) -> tuple[BlockRecord, bool]:
        """Upload a signed block folder; returns (record, already_present). Resumes from what the
        coordinator holds after every failure that may be temporary; ``limit_bytes`` stops a
        stream after that many bytes (tests of resumption)."""
        files = read_block_files(folder)
        if files.signature is None:
            raise SignatureError(
                f"block folder {folder} is not signed (no {SIGNATURE}); sign it with the site's "
                "signing key"
            )
        upload_id = upload_id_of(files.manifest_bytes, files.signature)
        size = files.manifest.weights_size
        last: CallError | None = None
        for attempt in range(retry.attempts):
            try:
                offset = self.upload_status(upload_id)
                if on_attempt:
                    on_attempt(attempt, offset)
                stream = self._chunks(
                    files.weights,
                    upload_id,
                    files.manifest_bytes,
                    files.signature,
                    offset,
                    limit_bytes,
                )
                result = self.stub.UploadBlock(
                    stream, timeout=60 + size / (1 << 20), metadata=self.metadata
                )
                return serde.block_from_pb(result.block), bool(result.already_present)
            except grpc.RpcError as exc:
                last = CallError.of(exc)
            except CallError as err:
                last = err
            if not (
                last.code in RETRYABLE
                or (last.code == grpc.StatusCode.FAILED_PRECONDITION and "resume" in last.message)
            ):
                raise last
            if limit_bytes is not None:
                limit_bytes = None  # the simulated cut happens once
            if attempt + 1 == retry.attempts:
                break
            wait = retry.delay(attempt, self.rng)
            log.warning("upload of %s: %s; retrying in %.1f s", files.folder, last, wait)
            time.sleep(wait)
        assert last is not None
        raise last

    @staticmethod
    def _chunks(
        path: Path,
        upload_id: str,
        manifest: bytes,
        signature: bytes,
        offset: int,
        limit: int | None,
    ) -> Iterator[pb.UploadChunk]:
        yield serde.chunk_to_pb(UploadHeader(upload_id, manifest, signature, offset))
        sent = 0
        with open(path, "rb") as f:
            f.seek(offset)
            while buf := f.read(CHUNK_BYTES):
                if limit is not None and sent + len(buf) > limit:
                    return  # end the stream early, as a cut connection would
                yield serde.chunk_to_pb(UploadData(buf, offset))
                offset += len(buf)
                sent += len(buf)

    # ---- pull --------------------------------------------------------------------------------
    def _download(
        self, method: str, request: Any, header: bool = True, stub: Any = None
    ) -> tuple[Any, bytes]:
        head, parts, received = None, list[bytes](), 0
        try:
            for msg in getattr(stub or self.stub, method)(
                request, timeout=600, metadata=self.metadata
            ):
                part = msg.WhichOneof("part")
                if part in ("block", "model"):
                    head = getattr(msg, part)
                elif part == "data":
                    if msg.offset != received:
                        raise IntegrityError(
                            f"download chunk at offset {msg.offset} is out of order"
                        )
                    parts.append(msg.data)
                    received += len(msg.data)
        except grpc.RpcError as exc:
            raise CallError.of(exc) from None
        if head is None and header:
            raise IntegrityError(f"{method} sent no record")
        return head, b"".join(parts)

    def check_block(self, record: BlockRecord, data: bytes) -> None:
        """Weights hash to the block id and the manifest's hash; the manifest's signature verifies
        against the signing key in the signer's certificate, which the consortium CA issued."""
        manifest = serde.manifest_from_bytes(record.manifest)
        digest = hashlib.sha256(data).hexdigest()
        if digest != record.block_id or digest != manifest.weights_sha256:
            raise IntegrityError(f"block {record.block_id[:12]}: weights hash to {digest[:12]}")
        try:
            cert = x509.load_pem_x509_certificate(record.signer_certificate)
            cert.verify_directly_issued_by(self.ca)
            signer = identity_from_cert(cert)
        except Exception as exc:
            raise SignatureError(
                f"block {record.block_id[:12]}: signer certificate is not one our CA issued ({exc})"
            ) from None
        if signer.name != manifest.site or manifest.modality not in signer.modalities:
            raise SignatureError(
                f"block {record.block_id[:12]}: signed by {signer.name!r}, not enrolled for "
                f"{manifest.site!r}/{manifest.modality!r}"
            )
        verify(record.manifest, record.signature, signer.signing_key)

    def pull_block(self, block_id: str, out: Path) -> BlockRecord:
        msg, data = self._download("DownloadBlock", pb.DownloadBlockRequest(block_id=block_id))
        record = serde.block_from_pb(msg)
        self.check_block(record, data)
        out.mkdir(parents=True, exist_ok=True)
        # a copy of what the registry holds, checked again whenever it is loaded: not synced (five
        # fsyncs per block were seconds per evaluation job at a few hundred blocks)
        for name, content in (
            (WEIGHTS, data),
            (MANIFEST, record.manifest),
            (SIGNATURE, record.signature),
            (MANIFEST_VIEW, serde.manifest_from_bytes(record.manifest).to_json().encode()),
            ("signer.crt", record.signer_certificate),
        ):  # signer.crt last: it marks the folder complete
            atomic_write(out / name, content, sync=False)
        return record

    def pull_model(
        self, model_id: str, out: str | Path, verified: Path | None = None
    ) -> ModelRecord:
        """Download a model version and its blocks into ``out`` (written whole or not at all).
        ``verified``: a folder of blocks pulled and checked before (``verified/BLOCK_ID/``, as
        :meth:`pull_block` writes them): those are linked from there instead of downloaded again;
        the version's check below reads every block either way."""
        dest = Path(out)
        if dest.exists() and any(dest.iterdir()):
            raise FileExistsError(f"{dest} is not empty; pull into a new folder")
        msg, weights = self._download("DownloadModel", pb.DownloadModelRequest(model_id=model_id))
        record = serde.model_from_pb(msg)
        if hashlib.sha256(weights).hexdigest() != record.weights_sha256:
            raise IntegrityError(f"model {model_id}: weights do not match the recorded sha256")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            for block_id in record.block_ids:
                have = verified / block_id if verified is not None else None
                if have is not None and (have / "signer.crt").is_file():
                    link_folder(have, tmp / "blocks" / block_id)
                else:
                    self.pull_block(block_id, tmp / "blocks" / block_id)
            write_model_folder(tmp, msg.SerializeToString(deterministic=True), record, weights)
            load_model_folder(tmp)  # rebuilds the merge here and checks the head bit for bit
            if dest.exists():
                dest.rmdir()
            tmp.rename(dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return record


def link_folder(src: Path, dest: Path) -> None:
    """``dest`` with hard links to ``src``'s files (copies where links are not possible)."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file():
            try:
                os.link(f, dest / f.name)
            except OSError:
                shutil.copy2(f, dest / f.name)
