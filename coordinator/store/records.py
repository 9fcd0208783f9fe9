"""The records the store's queries return besides those of common/records.py (tasks, sites,
blocks and model versions): pages, unfinished uploads, evaluation jobs and answers, fuse runs,
counts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from common.evaluation import CandidateScore
from common.evaluation.candidates import EvaluationJob

T = TypeVar("T")

# Why a site's report was not kept (nothing was written): the job closed or its deadline passed,
# it was never delivered to the site, or the site answered it before.
Refusal = Literal["closed", "not-delivered", "answered"]


@dataclass(frozen=True)
class Paged(Generic[T]):
    """One entry of a listing page, newest first: the next page starts below ``seq``."""

    seq: int
    item: T


@dataclass(frozen=True)
class BlockState:
    block_id: str
    state: str  # "accepted" | "withdrawn" | "corrupt"


@dataclass(frozen=True)
class OpenUpload:
    """An unfinished upload; its bytes so far are in ``BlobStore.partial(key)``."""

    site: str
    upload_id: str
    key: str  # a hex digest of (site, upload id)
    manifest: bytes  # the signed manifest the upload was opened with
    signature: bytes
    block_id: str  # the sha256 the manifest announces
    total: int  # bytes the manifest announces
    started_at: float  # seconds since the epoch


@dataclass(frozen=True)
class JobRecord:
    """A stored evaluation job: ``state`` as stored ("open" or "closed"; an open job whose
    deadline has passed is closed for everyone who reads it)."""

    job: EvaluationJob
    state: str
    deadline: float  # seconds since the epoch


@dataclass(frozen=True)
class Answer:
    """A site's answer to a job: scores, or ``declined`` with the reason's kind."""

    site: str
    declined: str = ""


@dataclass(frozen=True)
class SiteScore:
    """One site's score of one candidate of a job."""

    site: str
    candidate_id: str
    score: CandidateScore


@dataclass(frozen=True)
class CarriedWeights:
    """The weights a fuse-round candidate carries, already stored as blob ``sha256`` (stored
    again when a coordinator starting beside this process swept it as an orphan)."""

    candidate_id: str
    sha256: str
    data: bytes


@dataclass(frozen=True)
class VersionScores:
    """The sites' scores of a model version, from one candidate of one job."""

    model_id: str
    candidate_id: str
    scores: Mapping[str, CandidateScore]  # site -> score


@dataclass(frozen=True)
class FuseRunRecord:
    """A fuse run as stored; ``detail`` is JSON (its rounds so far, its outcome's reason)."""

    run_key: str
    task_id: str
    parent_id: str
    started_at: str
    finished_at: str
    state: str  # "running", "stored", "not-stored", "failed"
    model_id: str
    detail: str


@dataclass(frozen=True)
class StoreCounts:
    """How many rows the store holds, by state where there is one."""

    tasks: int
    sites: Mapping[bool, int]  # withdrawn -> sites
    blocks: Mapping[str, int]  # state -> blocks
    open_uploads: int
    evaluations: Mapping[str, int]  # state -> jobs


@dataclass(frozen=True)
class EvaluationTraffic:
    """What federated evaluation carried for one site: the bytes of the scores it reported, and
    the jobs it answered with scores (their fuse-round candidates' weights it downloaded)."""

    score_bytes: int
    answered: tuple[EvaluationJob, ...]
