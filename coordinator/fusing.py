"""LegoFuse as a service: the starting weights of a fuse run (the LegoFuse of a merge version's
blocks) and the fused result stored as a new immutable model version with its card."""

from __future__ import annotations

import logging

import torch
from safetensors.torch import save as st_save

from common.artifacts import build_block, parse_weights
from common.fuse import FuseConfig, fused_model
from common.lego import LegoFuse
from common.records import ModelRecord
from common.serde import manifest_from_bytes

from .errors import precondition
from .fuse_rounds import FuseOutcome
from .merging import insert_version
from .registry import Registry

log = logging.getLogger("mmlego.coordinator")


def starting_model(registry: Registry, parent_id: str, cfg: FuseConfig) -> tuple[ModelRecord, LegoFuse]:
    """The merge version ``parent_id`` and the LegoFuse of its blocks (in the version's order)."""
    parent = registry.model(parent_id)
    if parent.recipe != "merge":
        raise precondition(f"model {parent_id!r} is a {parent.recipe} version; LegoFuse rounds start from a merge version")
    blocks = []
    for block_id in parent.block_ids:
        record = registry.block(block_id)
        manifest = manifest_from_bytes(record.manifest)
        blocks.append(build_block(manifest, parse_weights(registry.store.blobs.read(block_id), manifest)))
    return parent, fused_model(blocks, cfg.mode, parent.parameters)


def store_fused(registry: Registry, parent: ModelRecord, outcome: FuseOutcome, cfg: FuseConfig, actor: str,
                privacy: dict[str, str] | None = None) -> ModelRecord:
    """The fused weights as a new model version whose card records parent, rounds, participants,
    per-round metrics, strategy and privacy settings."""
    weights = st_save({k: v.detach().to("cpu").contiguous() for k, v in outcome.state.items()})
    params = {**{k: str(v) for k, v in cfg.to_dict().items()}, "strategy": cfg.strategy,
              "head_merge": parent.parameters.get("head_merge", "spherical")}
    last = outcome.history[-1] if outcome.history else {}
    metrics = {"train_loss": float(last.get("train_loss", float("nan"))), "num-examples": float(last.get("num-examples", 0))}
    extra = {"task": parent.card.get("task", {}), "blocks": parent.card.get("blocks", []),
             "fuse": {"participants": outcome.participants, "rounds": outcome.history, "strategy": cfg.strategy,
                      "privacy": privacy or {"mechanism": "none"}}}
    record = insert_version(registry.store, parent.task_id, "fuse", parent.block_ids, params, weights, extra, actor,
                            parent_id=parent.model_id, metrics=metrics)
    log.info("stored fused version %s (parent %s, %d rounds, sites %s)", record.model_id, parent.model_id,
             len(outcome.history), ", ".join(outcome.participants))
    return record


def state_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
