"""task.toml: how an operator defines a task.

    id = "nki70"                  kind = "survival"           n_bins = 4
    bin_edges = [3.1, 6.2, 9.8]   # survival: the n_bins - 1 inner cut points (time units of the data)
    n_classes = 2                 # classification
    modalities = ["genes", "clinical"]
    latent_rows = 16  latent_dim = 64  fourier = "2d"  init_seed = 0  description = "..."
    fuse_mode = "stack"           # LegoFuse runs: "stack" or "weave"
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from common.records import TaskRecord
from common.tasks import TaskSpec
from common.tomlconfig import Strict, read_toml


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


def read_task_file(path: Path) -> TaskRecord:
    f = read_toml(path, TaskFile)
    try:
        spec = (TaskSpec("survival", n_bins=f.n_bins, bin_edges=tuple(f.bin_edges)) if f.kind == "survival"
                else TaskSpec("classification", n_classes=f.n_classes))
        return TaskRecord(f.id, spec, f.latent_rows, f.latent_dim, f.fourier, f.init_seed, tuple(f.modalities), f.description,
                          fuse_mode=f.fuse_mode)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
