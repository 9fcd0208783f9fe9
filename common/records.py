"""What the registry keeps: tasks, accepted blocks, sites, model versions (plain dataclasses;
:mod:`common.serde` converts them to and from the wire)."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

from .lego.config import BlockConfig
from .lego.recipe import Recipe
from .pki.identity import check_name
from .tasks.spec import TaskSpec


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


Interval = tuple[float, float]


@dataclass(frozen=True)
class PublicRanges:
    """Public value ranges of one modality's features (from the assay or the units, never from a
    site's data): ``features`` names some, ``all`` covers the rest; a one-hot column
    ("name=level") is [0, 1] unless named. A DP block's input scaling comes from these: the
    range's midpoint and a quarter of its width, so the range maps to [-2, 2]."""

    all: Interval | None = None
    features: dict[str, Interval] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, (lo, hi) in ([("all", self.all)] if self.all else []) + list(
            self.features.items()
        ):
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ValueError(
                    f"public range of {name!r} must be two finite numbers, low < high; got [{lo}, "
                    f"{hi}]"
                )

    def interval(self, feature: str) -> Interval | None:
        if feature in self.features:
            return self.features[feature]
        if "=" in feature:
            return (0.0, 1.0)
        return self.all

    def scaling(self, modality: str, features: list[str]) -> tuple[list[float], list[float]]:
        """Per-feature (mean, std) for ``features``; ``ValueError`` naming a feature with no
        range."""
        means, stds = [], []
        for f in features:
            iv = self.interval(f)
            if iv is None:
                raise ValueError(
                    f"the task's public ranges of modality {modality!r} give no range for feature "
                    f"{f!r}; "
                    f"add it to [public_ranges.{modality}] features, or set all = [low, high]"
                )
            means.append((iv[0] + iv[1]) / 2)
            stds.append((iv[1] - iv[0]) / 4)
        return means, stds


@dataclass(frozen=True)
class TaskRecord:
    """A federation's task: what every block must agree on to be merged."""

    task_id: str
    spec: TaskSpec  # kind and outputs (bins / classes)
    latent_rows: int = 16
    latent_dim: int = 64
    fourier: str = "2d"
    init_seed: int = 0  # shared initialisation of L0 and the head
    modalities: tuple[str, ...] = ()
    description: str = ""
    created_at: str = ""
    fuse_mode: str = "stack"  # how LegoFuse runs fuse the blocks: "stack" or "weave"
    max_block_epsilon: float = 0.0  # > 0: only DP blocks at this epsilon or less are accepted
    public_ranges: dict[str, PublicRanges] = field(
        default_factory=dict
    )  # per modality, for DP blocks' input scaling

    def __post_init__(self) -> None:
        check_name("task", self.task_id)
        for m in self.modalities:
            check_name("modality", m)
        if not self.modalities:
            raise ValueError(f"task {self.task_id!r} names no modalities")
        if self.latent_rows < 1 or self.latent_dim < 1:
            raise ValueError(
                f"task {self.task_id!r}: latent shape must be positive, got "
                f"{self.latent_rows}x{self.latent_dim}"
            )
        if self.fourier not in ("1d", "2d"):
            raise ValueError(
                f"task {self.task_id!r}: fourier must be '1d' or '2d', got {self.fourier!r}"
            )
        if self.fuse_mode not in ("stack", "weave"):
            raise ValueError(
                f"task {self.task_id!r}: fuse_mode must be 'stack' or 'weave', got "
                f"{self.fuse_mode!r}"
            )
        if not (math.isfinite(self.max_block_epsilon) and self.max_block_epsilon >= 0):
            raise ValueError(
                f"task {self.task_id!r}: max_block_epsilon must be a finite number >= 0 (0: no "
                f"limit), got {self.max_block_epsilon}"
            )
        for m in self.public_ranges:
            if m not in self.modalities:
                raise ValueError(
                    f"task {self.task_id!r}: public_ranges names modality {m!r}, not one of "
                    f"{list(self.modalities)}"
                )
        if self.spec.kind == "survival" and len(self.spec.bin_edges) != self.spec.n_bins - 1:
            raise ValueError(
                f"task {self.task_id!r}: survival needs {self.spec.n_bins - 1} bin edges, got "
                f"{len(self.spec.bin_edges)}"
            )

    def check_block(self, config: BlockConfig) -> None:
        """Raise ``ValueError`` naming the first way a block does not fit this task."""
        problems = [
            (
                "modality",
                config.modality in self.modalities,
                config.modality,
                f"one of {list(self.modalities)}",
            ),
            (
                "latent shape",
                config.latent_shape == (self.latent_rows, self.latent_dim),
                list(config.latent_shape),
                [self.latent_rows, self.latent_dim],
            ),
            ("fourier mode", config.fourier == self.fourier, config.fourier, self.fourier),
            (
                "task outputs",
                config.task.merge_key() == self.spec.merge_key(),
                config.task.merge_key(),
                self.spec.merge_key(),
            ),
            ("init seed", config.init_seed == self.init_seed, config.init_seed, self.init_seed),
        ]
        for what, ok, got, want in problems:
            if not ok:
                raise ValueError(
                    f"block does not fit task {self.task_id!r}: {what} is {got}, the task needs "
                    f"{want}"
                )

    def block_config(self, modality: str, encoder: Any, **overrides: Any) -> BlockConfig:
        """A block config for ``modality`` that fits this task (sites start from this)."""
        return BlockConfig(
            modality=modality,
            encoder=encoder,
            task=self.spec,
            latent_rows=self.latent_rows,
            latent_dim=self.latent_dim,
            fourier=self.fourier,  # type: ignore[arg-type]
            init_seed=self.init_seed,
            **overrides,
        )


@dataclass(frozen=True)
class BlockRecord:
    """An accepted block: its id is the sha256 of its weights."""

    block_id: str
    task_id: str
    site: str
    modality: str
    size: int
    accepted_at: str
    state: str  # "accepted" | "withdrawn"
    manifest: bytes  # the serialized BlockManifest exactly as signed
    signature: bytes
    signer_certificate: bytes = b""  # PEM


@dataclass(frozen=True)
class ModelRecord:
    """An immutable model version: its recipe (kind, blocks, weights, merge operators) and what
    else its model file records (``settings``: the merge's chosen candidate; a fuse run's settings).
    common.artifacts.modelfile writes both into the model file and reads them back."""

    model_id: str
    task_id: str
    recipe: Recipe
    settings: dict[str, str]
    weights_sha256: str
    weights_size: int
    card: dict[str, Any]
    created_at: str
    code_version: str
    parent_id: str = ""
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def block_ids(self) -> tuple[str, ...]:
        """The blocks it is made of, by id, in its recipe's order."""
        return self.recipe.block_ids


@dataclass(frozen=True)
class SiteRecord:
    name: str
    modalities: tuple[str, ...]
    paired: bool
    withdrawn: bool = False
    block_count: int = 0
    withdrawn_reason: str = ""
    first_seen: str = ""  # UTC, ISO 8601: the site's first accepted call
    # the latest one the registry recorded (at most a minute old while it calls)
    last_seen: str = ""


@dataclass(frozen=True)
class FuseRound:
    """One LegoFuse round as the coordinator saw it: who was asked and answered, the training
    loss (mean over the sites' patients), and the sites' verdict on the round's global model
    (consortium validation of the round and of the parent, on the same sites; NaN when unscored)."""

    round: int
    asked: int
    answered: tuple[str, ...]
    failed: tuple[str, ...] = ()
    no_answer: tuple[str, ...] = ()
    patients: int = 0
    train_loss: float = math.nan
    seconds: float = 0.0
    value: float = math.nan
    parent: float = math.nan
    diff: float = math.nan
    se_diff: float = math.nan


@dataclass(frozen=True)
class FuseRun:
    """A LegoFuse run: ``state`` is running, stored, not-stored or failed; ``rounds`` so far."""

    run_key: str
    task_id: str
    parent_id: str
    started_at: str
    state: str
    finished_at: str = ""
    model_id: str = ""
    reason: str = ""
    rounds: tuple[FuseRound, ...] = ()


@dataclass(frozen=True)
class UploadProgress:
    upload_id: str
    received: int
    total: int


@dataclass(frozen=True)
class UploadHeader:
    """First message of an upload stream."""

    upload_id: str
    manifest: bytes
    signature: bytes
    offset: int


@dataclass(frozen=True)
class UploadData:
    """A later message: bytes of the weights at ``offset``."""

    data: bytes
    offset: int


Chunk = UploadHeader | UploadData


@dataclass(frozen=True)
class Recommendation:
    """The version of a task to deploy: the best consortium validation metric (on the sites that
    scored the versions compared), or while none has one, the newest merge version."""

    task_id: str
    model: ModelRecord
    metric: float
    reason: str
    sites: tuple[str, ...] = ()
    site: str = ""  # asked for this site's patients (empty: the consortium's)
