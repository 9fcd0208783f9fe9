"""One LegoFuse round at a site and the centralized equivalent.

A round: every selected site loads the global weights, trains ``epochs`` epochs of Adam on its
round patients (FedProx: plus mu/2 ||w - w_global||^2), and returns its weights and patient
count; the coordinator averages the weights, weighted by count (Flower's FedAvg, in
coordinator/fuse_rounds.py). With one site this is
exactly :func:`centralized_fuse` on that site's data: the same seeds, the same steps.

Which sites and patients a round trains on is ``FuseConfig.sites``: "paired" (the sites with
paired data, on their patients having every model modality the site holds) or "all" (every site
holding one of the model's modalities, on every patient having one of them; the model masks the
modalities a patient lacks, see :class:`..lego.legofuse.LegoFuse`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from ..data.dataset import MultimodalDataset
from ..fuse_sites import DEFAULT_FUSE_SITES, check_fuse_sites
from ..lego.block import LegoBlock
from ..lego.ensemble import LegoEnsemble
from ..lego.legofuse import FUSE_MODES, LegoFuse
from ..lego.legomerge import LegoMerge
from ..lego.recipe import MergeRecipe, Recipe
from ..tasks.spec import TaskSpec
from ..train.loop import TrainConfig, train_epochs


@dataclass(frozen=True)
class FuseConfig:
    """How LegoFuse rounds run; recorded on the fused version's model card."""

    mode: str = "stack"  # "stack" or "weave"
    # R federated rounds at most (the run keeps the best round on consortium validation)
    rounds: int = 6
    epochs: int = 1  # E local epochs per round
    lr: float = 5e-4
    batch_size: int = 32
    proximal_mu: float = 0.0  # > 0: FedProx
    seed: int = 0
    patience: int = 2  # stop after this many rounds without a better consortium validation metric
    # fold runs trained beside the full run, fold run k without any site's fold k (the sites score
    # each round out of fold with them); -1: as many as the parent's blocks were cross-fitted with
    folds: int = -1
    # who trains: "paired" (sites with paired data, their patients with every modality they hold)
    # or "all" (every site with one of the model's modalities, its patients with one of them)
    sites: str = DEFAULT_FUSE_SITES
    # at most this many of the sites taking part train in one round (0: every one): a seeded
    # rotation, so that over rounds each trains as often as the others, give or take one round
    sites_per_round: int = 0

    def __post_init__(self) -> None:
        if self.mode not in FUSE_MODES:
            raise ValueError(f"fuse mode must be one of {', '.join(FUSE_MODES)}, got {self.mode!r}")
        check_fuse_sites(self.sites)
        if self.folds < -1 or self.folds == 1:
            raise ValueError(
                "folds must be -1 (those of the parent's blocks), 0 (no fold runs) or 2 or more, "
                f"got {self.folds}"
            )
        if self.sites_per_round < 0:
            raise ValueError(
                f"sites_per_round must be 0 (every site) or >= 1, got {self.sites_per_round}"
            )
        for name in ("rounds", "epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (
            math.isfinite(self.lr)
            and self.lr > 0
            and math.isfinite(self.proximal_mu)
            and self.proximal_mu >= 0
        ):
            raise ValueError(
                f"lr must be a finite number > 0 and proximal_mu one >= 0, got {self.lr} and "
                f"{self.proximal_mu}"
            )

    @property
    def fold_runs(self) -> int:
        """Fold runs beside the full run (-1, not yet resolved, counts as none)."""
        return max(0, self.folds)

    @property
    def strategy(self) -> str:
        return "fedprox" if self.proximal_mu > 0 else "fedavg"

    def train_config(self, round_: int, device: str = "cpu") -> TrainConfig:
        """Round ``round_``'s local training: the seed depends on the round only, so every site
        (and the centralized run) draws the same way."""
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            seed=self.seed * 1000 + round_,
            device=device,
            amp=False,
        )

    def to_dict(self) -> dict[str, str | int | float]:
        return asdict(self)

    def to_run_config(self) -> dict[str, str | int | float]:
        """As keys of a Flower run config (``batch-size``, ``proximal-mu``, ...)."""
        return to_run_config(self)

    @classmethod
    def from_run_config(cls, rc: Mapping[str, object]) -> FuseConfig:
        return from_run_config(cls, rc)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> FuseConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fuse settings {unknown}; known: {sorted(known)}")
        values: dict[str, Any] = {}
        for name, value in data.items():
            default = cls.__dataclass_fields__[name].default
            kind = type(default)
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)  # a whole number sent for a float setting
            if type(value) is not kind:
                raise ValueError(f"fuse setting {name} is {value!r}; expected {kind.__name__}")
            values[name] = value
        return cls(**values)


T = TypeVar("T")


def to_run_config(settings: Any) -> dict[str, str | int | float]:
    """A settings dataclass as Flower run-config keys (``snake_case`` -> ``kebab-case``)."""
    return {k.replace("_", "-"): v for k, v in asdict(settings).items()}


def from_run_config(cls: type[T], rc: Mapping[str, object]) -> T:
    """The settings of dataclass ``cls`` that a run config carries (the rest keep their defaults),
    each converted to its default's type; ValueError if one does not fit."""
    values: dict[str, Any] = {}
    for name, f in cls.__dataclass_fields__.items():  # type: ignore[attr-defined]
        key = name.replace("_", "-")
        if key in rc:
            values[name] = type(f.default)(rc[key])
    return cls(**values)


def fused_model(blocks: Sequence[LegoBlock], mode: str, recipe: Recipe | None = None) -> LegoFuse:
    """The LegoFuse a fuse run starts from: the blocks of the version's ``recipe``, in its order,
    and its (weighted) head merge (an ensemble version: the default head merge of its blocks'
    heads, with its weights); no recipe: the blocks' equal-weight default head merge."""
    start = (recipe or Recipe(MergeRecipe.name)).fused().make(blocks, mode)
    assert isinstance(start, LegoFuse), type(start)
    return start


def fused_of(model: LegoMerge | LegoEnsemble, mode: str, recipe: Recipe) -> LegoFuse:
    """The LegoFuse a fuse run starts from, of a version already made (``recipe`` its recipe):
    its blocks (with groups: its modality blocks, not made again), its weights and head merge."""
    start = recipe.fused().over_groups(model.weights).make(model.block_list, mode)
    assert isinstance(start, LegoFuse), type(start)
    return start


def paired_only(data: MultimodalDataset, modalities: Sequence[str]) -> MultimodalDataset:
    """A site's paired data for a model of ``modalities``: the patients that have every one of
    those modalities the site holds. A modality of the model the site does not hold is absent for
    all of them (the model masks it), so a site with two of three modalities trains on its pairs."""
    held = [m for m in modalities if m in data.modalities]
    if not held:
        raise ValueError(f"the site data has none of the model's modalities {list(modalities)}")
    both = np.all(np.stack([data.modalities[m].present.numpy() for m in held], axis=1), axis=1)
    return data.subset(np.flatnonzero(both)).select_modalities(held)


def round_patients(
    data: MultimodalDataset, modalities: Sequence[str], sites: str = "paired"
) -> MultimodalDataset:
    """The patients of a site's data that a LegoFuse round trains on, with the model's modalities
    the site holds: ``sites`` "paired", those having every one of them (:func:`paired_only`);
    "all", those having at least one (each trains the blocks of the modalities it has, the
    shared latent and the head; the model skips the blocks of the others)."""
    if check_fuse_sites(sites) == "paired":
        return paired_only(data, modalities)
    held = [m for m in modalities if m in data.modalities]
    if not held:
        raise ValueError(f"the site data has none of the model's modalities {list(modalities)}")
    some = np.any(np.stack([data.modalities[m].present.numpy() for m in held], axis=1), axis=1)
    return data.subset(np.flatnonzero(some)).select_modalities(held)


def local_round(
    model: LegoFuse,
    state: dict[str, torch.Tensor],
    data: MultimodalDataset,
    spec: TaskSpec,
    cfg: FuseConfig,
    round_: int,
    device: str = "cpu",
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """What a site does in round ``round_``: load ``state``, train, return its weights and
    metrics."""
    model.load_state_dict(state, strict=True)
    metrics = train_epochs(model, data, spec, cfg.train_config(round_, device), cfg.proximal_mu)
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}, metrics


def centralized_fuse(
    model: LegoFuse, data: MultimodalDataset, spec: TaskSpec, cfg: FuseConfig, device: str = "cpu"
) -> list[dict[str, float]]:
    """The same R x E epochs in one process on ``data``: what FedAvg over one site must equal."""
    history = []
    for r in range(1, cfg.rounds + 1):
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        _, metrics = local_round(model, state, data, spec, cfg, r, device)
        history.append(metrics)
    return history
