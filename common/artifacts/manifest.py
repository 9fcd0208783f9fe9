"""The manifest of a block: what it is, how to rebuild it, and the hash of its weights.

On disk and on the wire it is a protobuf ``BlockManifest`` (``common.serde`` converts); the
JSON written beside it is a view for people and is never read back.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ..lego.config import BlockConfig
from ..version import code_version


@dataclass(frozen=True)
class DPAccount:
    """How a block trained with DP-SGD spent its privacy budget (on its manifest)."""

    epsilon: float  # spent over the steps actually run, at ``delta``, by ``accountant``
    delta: float
    target_epsilon: float  # what the noise was calibrated for (the planned epochs)
    noise_multiplier: float
    sample_rate: float  # Poisson: expected batch / training patients
    steps: int
    max_grad_norm: float
    accountant: str = "rdp"
    input_scaling: str = "public ranges of the task"

    def __post_init__(self) -> None:
        finite = all(
            abs(v) < float("inf") and v == v
            for v in (
                self.epsilon,
                self.delta,
                self.target_epsilon,
                self.noise_multiplier,
                self.sample_rate,
                self.max_grad_norm,
            )
        )
        if not (
            finite
            and self.epsilon >= 0
            and 0 < self.delta < 1
            and self.target_epsilon > 0
            and self.noise_multiplier >= 0
            and 0 < self.sample_rate <= 1
            and self.steps >= 0
            and self.max_grad_norm > 0
            and self.accountant
        ):
            raise ValueError(f"DP accounting is not valid: {self}")


@dataclass(frozen=True)
class BlockManifest:
    """Everything about a block except its weights. ``train_stats`` holds aggregates only
    (counts, validation metric): never anything about a single patient."""

    config: BlockConfig
    weights_sha256: str
    tensors: dict[str, list[int]]  # name -> shape, as written in the weights file
    weights_size: int = 0  # bytes of the weights file
    dtypes: dict[str, str] = field(default_factory=dict)  # name -> safetensors dtype ("F32")
    task_id: str = ""
    site: str = ""
    train_stats: dict[str, float] = field(default_factory=dict)
    code_version: str = field(default_factory=code_version)
    created_at: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds")
    )
    dp: DPAccount | None = None  # set when trained with differential privacy

    @property
    def modality(self) -> str:
        return self.config.modality

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["config"] = self.config.to_dict()
        d["latent_shape"] = list(self.config.latent_shape)  # human view; derived from config
        d["fourier"] = self.config.fourier
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)
