"""task.toml: how an operator defines a task.

id = "nki70"                  kind = "survival"           n_bins = 4
bin_edges = [3.1, 6.2, 9.8]   # survival: the n_bins - 1 inner cut points (time units of the data)
n_classes = 2                 # classification
modalities = ["genes", "clinical"]
latent_rows = 16  latent_dim = 64  fourier = "2d"  init_seed = 0  description = "..."
fuse_mode = "stack"           # LegoFuse runs: "stack" or "weave"
max_block_epsilon = 8.0       # > 0: only DP blocks at this epsilon or less are accepted
[public_ranges.genes]         # public value ranges (assay, units; never a site's data): a DP
all = [-2.0, 2.0]             # block's input scaling; one-hot columns "name=level" are [0, 1]
features = { age = [18.0, 95.0] }
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from ..records import PublicRanges, TaskRecord
from ..tomlconfig import Strict, read_toml
from .spec import TaskSpec


class RangesSection(Strict):
    all: tuple[float, float] | None = None
    features: dict[str, tuple[float, float]] = Field(default_factory=dict)


class TaskFile(Strict):
    id: str
    kind: Literal["survival", "classification"]
    modalities: list[str] = Field(min_length=1)
    n_bins: int = Field(default=4, ge=2)
    bin_edges: list[float] = Field(default_factory=list)
    n_classes: int = Field(default=2, ge=2)
    latent_rows: int = Field(default=16, ge=1)
    latent_dim: int = Field(default=64, ge=1)
    fourier: Literal["1d", "2d"] = "2d"
    init_seed: int = 0
    description: str = ""
    fuse_mode: Literal["stack", "weave"] = "stack"
    max_block_epsilon: float = Field(default=0.0, ge=0)
    public_ranges: dict[str, RangesSection] = Field(default_factory=dict)


def read_task_file(path: Path) -> TaskRecord:
    f = read_toml(path, TaskFile)
    try:
        spec = (
            TaskSpec("survival", n_bins=f.n_bins, bin_edges=tuple(f.bin_edges))
            if f.kind == "survival"
            else TaskSpec("classification", n_classes=f.n_classes)
        )
        ranges = {m: PublicRanges(r.all, dict(r.features)) for m, r in f.public_ranges.items()}
        return TaskRecord(
            f.id,
            spec,
            f.latent_rows,
            f.latent_dim,
            f.fourier,
            f.init_seed,
            tuple(f.modalities),
            f.description,
            fuse_mode=f.fuse_mode,
            max_block_epsilon=f.max_block_epsilon,
            public_ranges=ranges,
        )
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
