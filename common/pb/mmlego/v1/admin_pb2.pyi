from common.pb.mmlego.v1 import registry_pb2 as _registry_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TaskSummary(_message.Message):
    __slots__ = ("task", "kind", "modalities", "fuse_mode", "max_block_epsilon", "blocks", "latest_blocks", "versions", "latest_version", "recommended", "recommended_metric", "recommended_reason")
    TASK_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODALITIES_FIELD_NUMBER: _ClassVar[int]
    FUSE_MODE_FIELD_NUMBER: _ClassVar[int]
    MAX_BLOCK_EPSILON_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    LATEST_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    LATEST_VERSION_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDED_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDED_METRIC_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDED_REASON_FIELD_NUMBER: _ClassVar[int]
    task: str
    kind: str
    modalities: _containers.RepeatedScalarFieldContainer[str]
    fuse_mode: str
    max_block_epsilon: float
    blocks: int
    latest_blocks: int
    versions: int
    latest_version: str
    recommended: str
    recommended_metric: float
    recommended_reason: str
    def __init__(self, task: _Optional[str] = ..., kind: _Optional[str] = ..., modalities: _Optional[_Iterable[str]] = ..., fuse_mode: _Optional[str] = ..., max_block_epsilon: _Optional[float] = ..., blocks: _Optional[int] = ..., latest_blocks: _Optional[int] = ..., versions: _Optional[int] = ..., latest_version: _Optional[str] = ..., recommended: _Optional[str] = ..., recommended_metric: _Optional[float] = ..., recommended_reason: _Optional[str] = ...) -> None: ...

class SiteSummary(_message.Message):
    __slots__ = ("site", "modalities", "paired", "state", "blocks", "withdrawn_reason", "last_seen")
    SITE_FIELD_NUMBER: _ClassVar[int]
    MODALITIES_FIELD_NUMBER: _ClassVar[int]
    PAIRED_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    WITHDRAWN_REASON_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    site: str
    modalities: _containers.RepeatedScalarFieldContainer[str]
    paired: bool
    state: str
    blocks: int
    withdrawn_reason: str
    last_seen: str
    def __init__(self, site: _Optional[str] = ..., modalities: _Optional[_Iterable[str]] = ..., paired: _Optional[bool] = ..., state: _Optional[str] = ..., blocks: _Optional[int] = ..., withdrawn_reason: _Optional[str] = ..., last_seen: _Optional[str] = ...) -> None: ...

class VersionSummary(_message.Message):
    __slots__ = ("model", "task", "recipe", "parent", "blocks", "created_at", "rounds", "val_metric", "sites")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    VAL_METRIC_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    model: str
    task: str
    recipe: str
    parent: str
    blocks: int
    created_at: str
    rounds: int
    val_metric: float
    sites: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[str] = ..., task: _Optional[str] = ..., recipe: _Optional[str] = ..., parent: _Optional[str] = ..., blocks: _Optional[int] = ..., created_at: _Optional[str] = ..., rounds: _Optional[int] = ..., val_metric: _Optional[float] = ..., sites: _Optional[_Iterable[str]] = ...) -> None: ...

class ConsortiumStatus(_message.Message):
    __slots__ = ("store", "schema", "code_version", "blob_bytes", "open_uploads", "corrupt_blocks", "tasks", "sites", "models")
    STORE_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    CODE_VERSION_FIELD_NUMBER: _ClassVar[int]
    BLOB_BYTES_FIELD_NUMBER: _ClassVar[int]
    OPEN_UPLOADS_FIELD_NUMBER: _ClassVar[int]
    CORRUPT_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    store: str
    schema: int
    code_version: str
    blob_bytes: int
    open_uploads: int
    corrupt_blocks: _containers.RepeatedScalarFieldContainer[str]
    tasks: _containers.RepeatedCompositeFieldContainer[TaskSummary]
    sites: _containers.RepeatedCompositeFieldContainer[SiteSummary]
    models: _containers.RepeatedCompositeFieldContainer[VersionSummary]
    def __init__(self, store: _Optional[str] = ..., schema: _Optional[int] = ..., code_version: _Optional[str] = ..., blob_bytes: _Optional[int] = ..., open_uploads: _Optional[int] = ..., corrupt_blocks: _Optional[_Iterable[str]] = ..., tasks: _Optional[_Iterable[_Union[TaskSummary, _Mapping]]] = ..., sites: _Optional[_Iterable[_Union[SiteSummary, _Mapping]]] = ..., models: _Optional[_Iterable[_Union[VersionSummary, _Mapping]]] = ...) -> None: ...

class ListFuseRunsRequest(_message.Message):
    __slots__ = ("task_id", "limit")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    limit: int
    def __init__(self, task_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class FuseRoundInfo(_message.Message):
    __slots__ = ("round", "asked", "answered", "failed", "no_answer", "patients", "train_loss", "seconds", "validated", "value", "parent", "diff", "se_diff")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    ASKED_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    NO_ANSWER_FIELD_NUMBER: _ClassVar[int]
    PATIENTS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_LOSS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    VALIDATED_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    DIFF_FIELD_NUMBER: _ClassVar[int]
    SE_DIFF_FIELD_NUMBER: _ClassVar[int]
    round: int
    asked: int
    answered: _containers.RepeatedScalarFieldContainer[str]
    failed: _containers.RepeatedScalarFieldContainer[str]
    no_answer: _containers.RepeatedScalarFieldContainer[str]
    patients: int
    train_loss: float
    seconds: float
    validated: bool
    value: float
    parent: float
    diff: float
    se_diff: float
    def __init__(self, round: _Optional[int] = ..., asked: _Optional[int] = ..., answered: _Optional[_Iterable[str]] = ..., failed: _Optional[_Iterable[str]] = ..., no_answer: _Optional[_Iterable[str]] = ..., patients: _Optional[int] = ..., train_loss: _Optional[float] = ..., seconds: _Optional[float] = ..., validated: _Optional[bool] = ..., value: _Optional[float] = ..., parent: _Optional[float] = ..., diff: _Optional[float] = ..., se_diff: _Optional[float] = ...) -> None: ...

class FuseRunInfo(_message.Message):
    __slots__ = ("run_key", "task_id", "parent_id", "started_at", "finished_at", "state", "model_id", "reason", "rounds")
    RUN_KEY_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    run_key: str
    task_id: str
    parent_id: str
    started_at: str
    finished_at: str
    state: str
    model_id: str
    reason: str
    rounds: _containers.RepeatedCompositeFieldContainer[FuseRoundInfo]
    def __init__(self, run_key: _Optional[str] = ..., task_id: _Optional[str] = ..., parent_id: _Optional[str] = ..., started_at: _Optional[str] = ..., finished_at: _Optional[str] = ..., state: _Optional[str] = ..., model_id: _Optional[str] = ..., reason: _Optional[str] = ..., rounds: _Optional[_Iterable[_Union[FuseRoundInfo, _Mapping]]] = ...) -> None: ...

class ListFuseRunsResponse(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[FuseRunInfo]
    def __init__(self, runs: _Optional[_Iterable[_Union[FuseRunInfo, _Mapping]]] = ...) -> None: ...

class FuseEvent(_message.Message):
    __slots__ = ("line", "round", "stored", "not_stored")
    LINE_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    NOT_STORED_FIELD_NUMBER: _ClassVar[int]
    line: str
    round: FuseRoundInfo
    stored: _registry_pb2.ModelVersion
    not_stored: str
    def __init__(self, line: _Optional[str] = ..., round: _Optional[_Union[FuseRoundInfo, _Mapping]] = ..., stored: _Optional[_Union[_registry_pb2.ModelVersion, _Mapping]] = ..., not_stored: _Optional[str] = ...) -> None: ...
