"""The manifest of a block: what it is, how to rebuild it, and the hash of its weights."""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ..fields import reject_unknown
from ..lego.config import BlockConfig
from ..version import code_version

FORMAT = "mmlego-block/1"


@dataclass(frozen=True)
class BlockManifest:
    """Everything about a block except its weights. ``train_stats`` holds aggregates only
    (counts, validation metric): never anything about a single patient."""

    config: BlockConfig
    weights_sha256: str
    tensors: dict[str, list[int]]  # name -> shape, as written in the weights file
    site: str = ""
    train_stats: dict[str, float] = field(default_factory=dict)
    code_version: str = field(default_factory=code_version)
    created_at: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    format: str = FORMAT

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

    @classmethod
    def from_json(cls, text: str) -> BlockManifest:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"manifest is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError("manifest must be a JSON object")
        if data.get("format") != FORMAT:
            raise ValueError(f"manifest format is {data.get('format')!r}, expected {FORMAT!r}")
        data.pop("latent_shape", None)
        data.pop("fourier", None)
        reject_unknown(cls, data, "manifest")
        try:
            data["config"] = BlockConfig.from_dict(data["config"])
            return cls(**data)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"manifest is incomplete or malformed: {exc}") from exc
