import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from common.pb.mmlego.v1 import registry_pb2 as _registry_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Candidate(_message.Message):
    __slots__ = ("candidate_id", "kind", "label", "block_ids", "weights", "latent_merge", "head_merge", "model_id", "weights_sha256", "weights_size", "fuse_mode", "layout", "folds", "groups")
    CANDIDATE_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    BLOCK_IDS_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    LATENT_MERGE_FIELD_NUMBER: _ClassVar[int]
    HEAD_MERGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_SHA256_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_SIZE_FIELD_NUMBER: _ClassVar[int]
    FUSE_MODE_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    FOLDS_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    candidate_id: str
    kind: str
    label: str
    block_ids: _containers.RepeatedScalarFieldContainer[str]
    weights: _containers.RepeatedScalarFieldContainer[float]
    latent_merge: str
    head_merge: str
    model_id: str
    weights_sha256: str
    weights_size: int
    fuse_mode: str
    layout: str
    folds: int
    groups: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, candidate_id: _Optional[str] = ..., kind: _Optional[str] = ..., label: _Optional[str] = ..., block_ids: _Optional[_Iterable[str]] = ..., weights: _Optional[_Iterable[float]] = ..., latent_merge: _Optional[str] = ..., head_merge: _Optional[str] = ..., model_id: _Optional[str] = ..., weights_sha256: _Optional[str] = ..., weights_size: _Optional[int] = ..., fuse_mode: _Optional[str] = ..., layout: _Optional[str] = ..., folds: _Optional[int] = ..., groups: _Optional[_Iterable[int]] = ...) -> None: ...

class EvaluationJob(_message.Message):
    __slots__ = ("job_id", "task_id", "purpose", "candidates", "created_at", "deadline", "stack_points", "sites")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    STACK_POINTS_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    task_id: str
    purpose: str
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    created_at: _timestamp_pb2.Timestamp
    deadline: _timestamp_pb2.Timestamp
    stack_points: _containers.RepeatedCompositeFieldContainer[StackPoint]
    sites: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, job_id: _Optional[str] = ..., task_id: _Optional[str] = ..., purpose: _Optional[str] = ..., candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stack_points: _Optional[_Iterable[_Union[StackPoint, _Mapping]]] = ..., sites: _Optional[_Iterable[str]] = ...) -> None: ...

class StackPoint(_message.Message):
    __slots__ = ("weights",)
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    weights: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, weights: _Optional[_Iterable[float]] = ...) -> None: ...

class PendingEvaluationsRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class PendingEvaluationsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[EvaluationJob]
    def __init__(self, jobs: _Optional[_Iterable[_Union[EvaluationJob, _Mapping]]] = ...) -> None: ...

class DownloadCandidateRequest(_message.Message):
    __slots__ = ("job_id", "candidate_id", "offset")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    candidate_id: str
    offset: int
    def __init__(self, job_id: _Optional[str] = ..., candidate_id: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class PairCounts(_message.Message):
    __slots__ = ("concordant", "discordant", "tied")
    CONCORDANT_FIELD_NUMBER: _ClassVar[int]
    DISCORDANT_FIELD_NUMBER: _ClassVar[int]
    TIED_FIELD_NUMBER: _ClassVar[int]
    concordant: int
    discordant: int
    tied: int
    def __init__(self, concordant: _Optional[int] = ..., discordant: _Optional[int] = ..., tied: _Optional[int] = ...) -> None: ...

class CandidateScore(_message.Message):
    __slots__ = ("candidate_id", "strata", "patients", "events", "var_metric", "var_diff")
    CANDIDATE_ID_FIELD_NUMBER: _ClassVar[int]
    STRATA_FIELD_NUMBER: _ClassVar[int]
    PATIENTS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    VAR_METRIC_FIELD_NUMBER: _ClassVar[int]
    VAR_DIFF_FIELD_NUMBER: _ClassVar[int]
    candidate_id: str
    strata: _containers.RepeatedCompositeFieldContainer[PairCounts]
    patients: int
    events: int
    var_metric: float
    var_diff: float
    def __init__(self, candidate_id: _Optional[str] = ..., strata: _Optional[_Iterable[_Union[PairCounts, _Mapping]]] = ..., patients: _Optional[int] = ..., events: _Optional[int] = ..., var_metric: _Optional[float] = ..., var_diff: _Optional[float] = ...) -> None: ...

class StackStats(_message.Message):
    __slots__ = ("point", "fold", "patients", "events", "loss", "gradient", "hessian")
    POINT_FIELD_NUMBER: _ClassVar[int]
    FOLD_FIELD_NUMBER: _ClassVar[int]
    PATIENTS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_FIELD_NUMBER: _ClassVar[int]
    HESSIAN_FIELD_NUMBER: _ClassVar[int]
    point: int
    fold: int
    patients: int
    events: int
    loss: float
    gradient: _containers.RepeatedScalarFieldContainer[float]
    hessian: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, point: _Optional[int] = ..., fold: _Optional[int] = ..., patients: _Optional[int] = ..., events: _Optional[int] = ..., loss: _Optional[float] = ..., gradient: _Optional[_Iterable[float]] = ..., hessian: _Optional[_Iterable[float]] = ...) -> None: ...

class EvaluationReport(_message.Message):
    __slots__ = ("job_id", "scores", "declined", "stack")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    DECLINED_FIELD_NUMBER: _ClassVar[int]
    STACK_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    scores: _containers.RepeatedCompositeFieldContainer[CandidateScore]
    declined: str
    stack: _containers.RepeatedCompositeFieldContainer[StackStats]
    def __init__(self, job_id: _Optional[str] = ..., scores: _Optional[_Iterable[_Union[CandidateScore, _Mapping]]] = ..., declined: _Optional[str] = ..., stack: _Optional[_Iterable[_Union[StackStats, _Mapping]]] = ...) -> None: ...

class EvaluationReceipt(_message.Message):
    __slots__ = ("job_id", "accepted")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    accepted: int
    def __init__(self, job_id: _Optional[str] = ..., accepted: _Optional[int] = ...) -> None: ...

class ListEvaluationsRequest(_message.Message):
    __slots__ = ("task_id", "open_only")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    OPEN_ONLY_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    open_only: bool
    def __init__(self, task_id: _Optional[str] = ..., open_only: _Optional[bool] = ...) -> None: ...

class EvaluationStatus(_message.Message):
    __slots__ = ("job", "state", "delivered", "reported", "declined")
    JOB_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    REPORTED_FIELD_NUMBER: _ClassVar[int]
    DECLINED_FIELD_NUMBER: _ClassVar[int]
    job: EvaluationJob
    state: str
    delivered: _containers.RepeatedScalarFieldContainer[str]
    reported: _containers.RepeatedScalarFieldContainer[str]
    declined: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, job: _Optional[_Union[EvaluationJob, _Mapping]] = ..., state: _Optional[str] = ..., delivered: _Optional[_Iterable[str]] = ..., reported: _Optional[_Iterable[str]] = ..., declined: _Optional[_Iterable[str]] = ...) -> None: ...

class ListEvaluationsResponse(_message.Message):
    __slots__ = ("evaluations",)
    EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    evaluations: _containers.RepeatedCompositeFieldContainer[EvaluationStatus]
    def __init__(self, evaluations: _Optional[_Iterable[_Union[EvaluationStatus, _Mapping]]] = ...) -> None: ...

class EvaluateRequest(_message.Message):
    __slots__ = ("model_ids", "deadline_s")
    MODEL_IDS_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_S_FIELD_NUMBER: _ClassVar[int]
    model_ids: _containers.RepeatedScalarFieldContainer[str]
    deadline_s: float
    def __init__(self, model_ids: _Optional[_Iterable[str]] = ..., deadline_s: _Optional[float] = ...) -> None: ...

class CandidateResult(_message.Message):
    __slots__ = ("candidate_id", "label", "value", "se", "diff", "se_diff", "sites", "patients")
    CANDIDATE_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SE_FIELD_NUMBER: _ClassVar[int]
    DIFF_FIELD_NUMBER: _ClassVar[int]
    SE_DIFF_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    PATIENTS_FIELD_NUMBER: _ClassVar[int]
    candidate_id: str
    label: str
    value: float
    se: float
    diff: float
    se_diff: float
    sites: _containers.RepeatedScalarFieldContainer[str]
    patients: int
    def __init__(self, candidate_id: _Optional[str] = ..., label: _Optional[str] = ..., value: _Optional[float] = ..., se: _Optional[float] = ..., diff: _Optional[float] = ..., se_diff: _Optional[float] = ..., sites: _Optional[_Iterable[str]] = ..., patients: _Optional[int] = ...) -> None: ...

class EvaluationResult(_message.Message):
    __slots__ = ("status", "results")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    status: EvaluationStatus
    results: _containers.RepeatedCompositeFieldContainer[CandidateResult]
    def __init__(self, status: _Optional[_Union[EvaluationStatus, _Mapping]] = ..., results: _Optional[_Iterable[_Union[CandidateResult, _Mapping]]] = ...) -> None: ...

class GetRecommendedRequest(_message.Message):
    __slots__ = ("task_id", "site")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    site: str
    def __init__(self, task_id: _Optional[str] = ..., site: _Optional[str] = ...) -> None: ...

class Recommendation(_message.Message):
    __slots__ = ("task_id", "model", "metric", "reason", "sites", "site")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    model: _registry_pb2.ModelVersion
    metric: float
    reason: str
    sites: _containers.RepeatedScalarFieldContainer[str]
    site: str
    def __init__(self, task_id: _Optional[str] = ..., model: _Optional[_Union[_registry_pb2.ModelVersion, _Mapping]] = ..., metric: _Optional[float] = ..., reason: _Optional[str] = ..., sites: _Optional[_Iterable[str]] = ..., site: _Optional[str] = ...) -> None: ...
