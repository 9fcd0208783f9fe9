"""Hyper-parameters of a LegoBlock; this is what a block's manifest records."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..fields import reject_unknown
from ..tasks.spec import TaskSpec
from .encoders import EncoderConfig
from .fourier import FourierMode, check_mode


@dataclass(frozen=True)
class BlockConfig:
    """One LegoBlock: encoder g_m, latent L0 (c x d), S update steps, task head."""

    modality: str  # name of the modality this block reads, e.g. "genes"
    encoder: EncoderConfig
    task: TaskSpec
    latent_rows: int = 16  # c, rows (queries) of the latent
    latent_dim: int = 64  # d, width of the latent
    depth: int = 2  # S, update steps
    fourier: FourierMode = "2d"  # "2d" as in the paper, "1d" (rows only) as in the authors' code
    heads: int = 1  # cross-attention heads
    dim_head: int = 64  # width per head
    ff_mult: int = 2  # feed-forward expansion
    attn_dropout: float = 0.0
    ff_dropout: float = 0.1
    init_seed: int | None = None  # shared initialisation of L0 and head (set by the task owner)
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes, recorded as-is

    def __post_init__(self) -> None:
        check_mode(self.fourier)
        if not self.modality or not self.modality.replace("-", "").replace("_", "").isalnum():
            raise ValueError(
                "modality must be a non-empty name of letters, digits, '-' or '_', "
                f"got {self.modality!r}"
            )
        for name in ("latent_rows", "latent_dim", "depth", "heads", "dim_head", "ff_mult"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def latent_shape(self) -> tuple[int, int]:
        return (self.latent_rows, self.latent_dim)

    def with_(self, **changes: Any) -> BlockConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["encoder"] = self.encoder.to_dict()
        d["task"] = self.task.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BlockConfig:
        reject_unknown(cls, data, "block config")
        data = dict(data)
        data["encoder"] = EncoderConfig.from_dict(data["encoder"])
        data["task"] = TaskSpec.from_dict(data["task"])
        return cls(**data)
