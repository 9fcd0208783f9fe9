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
    created_at: str = field(default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds"))

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
