import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Task(_message.Message):
    __slots__ = ("task_id", "kind", "n_bins", "bin_edges", "n_classes", "latent_rows", "latent_dim", "fourier", "init_seed", "modalities", "description", "created_at", "fuse_mode", "max_block_epsilon", "public_ranges")
    class PublicRangesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: PublicRanges
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[PublicRanges, _Mapping]] = ...) -> None: ...
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    N_BINS_FIELD_NUMBER: _ClassVar[int]
    BIN_EDGES_FIELD_NUMBER: _ClassVar[int]
    N_CLASSES_FIELD_NUMBER: _ClassVar[int]
    LATENT_ROWS_FIELD_NUMBER: _ClassVar[int]
    LATENT_DIM_FIELD_NUMBER: _ClassVar[int]
    FOURIER_FIELD_NUMBER: _ClassVar[int]
    INIT_SEED_FIELD_NUMBER: _ClassVar[int]
    MODALITIES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FUSE_MODE_FIELD_NUMBER: _ClassVar[int]
    MAX_BLOCK_EPSILON_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_RANGES_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    kind: str
    n_bins: int
    bin_edges: _containers.RepeatedScalarFieldContainer[float]
    n_classes: int
    latent_rows: int
    latent_dim: int
    fourier: str
    init_seed: int
    modalities: _containers.RepeatedScalarFieldContainer[str]
    description: str
    created_at: _timestamp_pb2.Timestamp
    fuse_mode: str
    max_block_epsilon: float
    public_ranges: _containers.MessageMap[str, PublicRanges]
    def __init__(self, task_id: _Optional[str] = ..., kind: _Optional[str] = ..., n_bins: _Optional[int] = ..., bin_edges: _Optional[_Iterable[float]] = ..., n_classes: _Optional[int] = ..., latent_rows: _Optional[int] = ..., latent_dim: _Optional[int] = ..., fourier: _Optional[str] = ..., init_seed: _Optional[int] = ..., modalities: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., fuse_mode: _Optional[str] = ..., max_block_epsilon: _Optional[float] = ..., public_ranges: _Optional[_Mapping[str, PublicRanges]] = ...) -> None: ...

class Range(_message.Message):
    __slots__ = ("low", "high")
    LOW_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    low: float
    high: float
    def __init__(self, low: _Optional[float] = ..., high: _Optional[float] = ...) -> None: ...

class PublicRanges(_message.Message):
    __slots__ = ("all", "features")
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Range
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Range, _Mapping]] = ...) -> None: ...
    ALL_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    all: Range
    features: _containers.MessageMap[str, Range]
    def __init__(self, all: _Optional[_Union[Range, _Mapping]] = ..., features: _Optional[_Mapping[str, Range]] = ...) -> None: ...

class DpAccounting(_message.Message):
    __slots__ = ("epsilon", "delta", "target_epsilon", "noise_multiplier", "sample_rate", "steps", "max_grad_norm", "accountant", "input_scaling")
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    TARGET_EPSILON_FIELD_NUMBER: _ClassVar[int]
    NOISE_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    MAX_GRAD_NORM_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTANT_FIELD_NUMBER: _ClassVar[int]
    INPUT_SCALING_FIELD_NUMBER: _ClassVar[int]
    epsilon: float
    delta: float
    target_epsilon: float
    noise_multiplier: float
    sample_rate: float
    steps: int
    max_grad_norm: float
    accountant: str
    input_scaling: str
    def __init__(self, epsilon: _Optional[float] = ..., delta: _Optional[float] = ..., target_epsilon: _Optional[float] = ..., noise_multiplier: _Optional[float] = ..., sample_rate: _Optional[float] = ..., steps: _Optional[int] = ..., max_grad_norm: _Optional[float] = ..., accountant: _Optional[str] = ..., input_scaling: _Optional[str] = ...) -> None: ...

class TensorSpec(_message.Message):
    __slots__ = ("name", "shape", "dtype")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: str
    def __init__(self, name: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[str] = ...) -> None: ...

class BlockManifest(_message.Message):
    __slots__ = ("task_id", "site", "modality", "config_json", "tensors", "train_stats", "code_version", "created_at", "weights_sha256", "weights_size", "dp")
    class TrainStatsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_STATS_FIELD_NUMBER: _ClassVar[int]
    CODE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_SHA256_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_SIZE_FIELD_NUMBER: _ClassVar[int]
    DP_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    site: str
    modality: str
    config_json: str
    tensors: _containers.RepeatedCompositeFieldContainer[TensorSpec]
    train_stats: _containers.ScalarMap[str, float]
    code_version: str
    created_at: _timestamp_pb2.Timestamp
    weights_sha256: str
    weights_size: int
    dp: DpAccounting
    def __init__(self, task_id: _Optional[str] = ..., site: _Optional[str] = ..., modality: _Optional[str] = ..., config_json: _Optional[str] = ..., tensors: _Optional[_Iterable[_Union[TensorSpec, _Mapping]]] = ..., train_stats: _Optional[_Mapping[str, float]] = ..., code_version: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., weights_sha256: _Optional[str] = ..., weights_size: _Optional[int] = ..., dp: _Optional[_Union[DpAccounting, _Mapping]] = ...) -> None: ...

class SignedManifest(_message.Message):
    __slots__ = ("manifest", "signature")
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    manifest: bytes
    signature: bytes
    def __init__(self, manifest: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class UploadChunk(_message.Message):
    __slots__ = ("header", "data", "offset")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    data: bytes
    offset: int
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., data: _Optional[bytes] = ..., offset: _Optional[int] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("upload_id", "manifest")
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    upload_id: str
    manifest: SignedManifest
    def __init__(self, upload_id: _Optional[str] = ..., manifest: _Optional[_Union[SignedManifest, _Mapping]] = ...) -> None: ...

class UploadStatusRequest(_message.Message):
    __slots__ = ("upload_id",)
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    upload_id: str
    def __init__(self, upload_id: _Optional[str] = ...) -> None: ...

class UploadStatus(_message.Message):
    __slots__ = ("upload_id", "received_bytes", "total_bytes")
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_BYTES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    upload_id: str
    received_bytes: int
    total_bytes: int
    def __init__(self, upload_id: _Optional[str] = ..., received_bytes: _Optional[int] = ..., total_bytes: _Optional[int] = ...) -> None: ...

class UploadResult(_message.Message):
    __slots__ = ("block", "already_present")
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    ALREADY_PRESENT_FIELD_NUMBER: _ClassVar[int]
    block: BlockInfo
    already_present: bool
    def __init__(self, block: _Optional[_Union[BlockInfo, _Mapping]] = ..., already_present: _Optional[bool] = ...) -> None: ...

class BlockInfo(_message.Message):
    __slots__ = ("block_id", "task_id", "site", "modality", "size", "accepted_at", "state", "manifest", "signer_certificate")
    BLOCK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_AT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    SIGNER_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    block_id: str
    task_id: str
    site: str
    modality: str
    size: int
    accepted_at: _timestamp_pb2.Timestamp
    state: str
    manifest: SignedManifest
    signer_certificate: bytes
    def __init__(self, block_id: _Optional[str] = ..., task_id: _Optional[str] = ..., site: _Optional[str] = ..., modality: _Optional[str] = ..., size: _Optional[int] = ..., accepted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[str] = ..., manifest: _Optional[_Union[SignedManifest, _Mapping]] = ..., signer_certificate: _Optional[bytes] = ...) -> None: ...

class DownloadBlockRequest(_message.Message):
    __slots__ = ("block_id", "offset")
    BLOCK_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    block_id: str
    offset: int
    def __init__(self, block_id: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class DownloadModelRequest(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class DownloadChunk(_message.Message):
    __slots__ = ("block", "model", "data", "offset")
    BLOCK_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    block: BlockInfo
    model: ModelVersion
    data: bytes
    offset: int
    def __init__(self, block: _Optional[_Union[BlockInfo, _Mapping]] = ..., model: _Optional[_Union[ModelVersion, _Mapping]] = ..., data: _Optional[bytes] = ..., offset: _Optional[int] = ...) -> None: ...

class ModelVersion(_message.Message):
    __slots__ = ("model_id", "task_id", "block_ids", "recipe", "parameters", "parent_id", "metrics", "created_at", "weights_sha256", "weights_size", "card_json", "code_version")
    class ParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    BLOCK_IDS_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_SHA256_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_SIZE_FIELD_NUMBER: _ClassVar[int]
    CARD_JSON_FIELD_NUMBER: _ClassVar[int]
    CODE_VERSION_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    task_id: str
    block_ids: _containers.RepeatedScalarFieldContainer[str]
    recipe: str
    parameters: _containers.ScalarMap[str, str]
    parent_id: str
    metrics: _containers.ScalarMap[str, float]
    created_at: _timestamp_pb2.Timestamp
    weights_sha256: str
    weights_size: int
    card_json: str
    code_version: str
    def __init__(self, model_id: _Optional[str] = ..., task_id: _Optional[str] = ..., block_ids: _Optional[_Iterable[str]] = ..., recipe: _Optional[str] = ..., parameters: _Optional[_Mapping[str, str]] = ..., parent_id: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., weights_sha256: _Optional[str] = ..., weights_size: _Optional[int] = ..., card_json: _Optional[str] = ..., code_version: _Optional[str] = ...) -> None: ...

class Site(_message.Message):
    __slots__ = ("name", "modalities", "paired", "withdrawn", "block_count", "withdrawn_reason", "first_seen", "last_seen")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODALITIES_FIELD_NUMBER: _ClassVar[int]
    PAIRED_FIELD_NUMBER: _ClassVar[int]
    WITHDRAWN_FIELD_NUMBER: _ClassVar[int]
    BLOCK_COUNT_FIELD_NUMBER: _ClassVar[int]
    WITHDRAWN_REASON_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    name: str
    modalities: _containers.RepeatedScalarFieldContainer[str]
    paired: bool
    withdrawn: bool
    block_count: int
    withdrawn_reason: str
    first_seen: str
    last_seen: str
    def __init__(self, name: _Optional[str] = ..., modalities: _Optional[_Iterable[str]] = ..., paired: _Optional[bool] = ..., withdrawn: _Optional[bool] = ..., block_count: _Optional[int] = ..., withdrawn_reason: _Optional[str] = ..., first_seen: _Optional[str] = ..., last_seen: _Optional[str] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    def __init__(self, tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ...) -> None: ...

class GetTaskRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class ListBlocksRequest(_message.Message):
    __slots__ = ("task_id", "site", "modality", "include_withdrawn", "page_size", "page_token")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_WITHDRAWN_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    site: str
    modality: str
    include_withdrawn: bool
    page_size: int
    page_token: str
    def __init__(self, task_id: _Optional[str] = ..., site: _Optional[str] = ..., modality: _Optional[str] = ..., include_withdrawn: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListBlocksResponse(_message.Message):
    __slots__ = ("blocks", "next_page_token")
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    blocks: _containers.RepeatedCompositeFieldContainer[BlockInfo]
    next_page_token: str
    def __init__(self, blocks: _Optional[_Iterable[_Union[BlockInfo, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetBlockRequest(_message.Message):
    __slots__ = ("block_id",)
    BLOCK_ID_FIELD_NUMBER: _ClassVar[int]
    block_id: str
    def __init__(self, block_id: _Optional[str] = ...) -> None: ...

class ListSitesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSitesResponse(_message.Message):
    __slots__ = ("sites",)
    SITES_FIELD_NUMBER: _ClassVar[int]
    sites: _containers.RepeatedCompositeFieldContainer[Site]
    def __init__(self, sites: _Optional[_Iterable[_Union[Site, _Mapping]]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("task_id", "page_size", "page_token")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    page_size: int
    page_token: str
    def __init__(self, task_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "next_page_token")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelVersion]
    next_page_token: str
    def __init__(self, models: _Optional[_Iterable[_Union[ModelVersion, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class MergeRequest(_message.Message):
    __slots__ = ("task_id", "latent_merge", "head_merge", "recipe", "deadline_s", "unmeasured", "hierarchy")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LATENT_MERGE_FIELD_NUMBER: _ClassVar[int]
    HEAD_MERGE_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_S_FIELD_NUMBER: _ClassVar[int]
    UNMEASURED_FIELD_NUMBER: _ClassVar[int]
    HIERARCHY_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    latent_merge: str
    head_merge: str
    recipe: str
    deadline_s: float
    unmeasured: bool
    hierarchy: str
    def __init__(self, task_id: _Optional[str] = ..., latent_merge: _Optional[str] = ..., head_merge: _Optional[str] = ..., recipe: _Optional[str] = ..., deadline_s: _Optional[float] = ..., unmeasured: _Optional[bool] = ..., hierarchy: _Optional[str] = ...) -> None: ...

class FuseRequest(_message.Message):
    __slots__ = ("model_id", "rounds", "epochs", "patience", "deadline_s", "mode", "lr", "proximal_mu", "expect_paired", "unvalidated", "folds", "sites", "sites_per_round")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    PATIENCE_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_S_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    LR_FIELD_NUMBER: _ClassVar[int]
    PROXIMAL_MU_FIELD_NUMBER: _ClassVar[int]
    EXPECT_PAIRED_FIELD_NUMBER: _ClassVar[int]
    UNVALIDATED_FIELD_NUMBER: _ClassVar[int]
    FOLDS_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    SITES_PER_ROUND_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    rounds: int
    epochs: int
    patience: int
    deadline_s: float
    mode: str
    lr: float
    proximal_mu: float
    expect_paired: int
    unvalidated: bool
    folds: int
    sites: str
    sites_per_round: int
    def __init__(self, model_id: _Optional[str] = ..., rounds: _Optional[int] = ..., epochs: _Optional[int] = ..., patience: _Optional[int] = ..., deadline_s: _Optional[float] = ..., mode: _Optional[str] = ..., lr: _Optional[float] = ..., proximal_mu: _Optional[float] = ..., expect_paired: _Optional[int] = ..., unvalidated: _Optional[bool] = ..., folds: _Optional[int] = ..., sites: _Optional[str] = ..., sites_per_round: _Optional[int] = ...) -> None: ...

class WithdrawSiteRequest(_message.Message):
    __slots__ = ("site", "reason")
    SITE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    site: str
    reason: str
    def __init__(self, site: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...
