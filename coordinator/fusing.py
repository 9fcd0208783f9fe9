"""LegoFuse as a service: the starting weights of a fuse run (the LegoFuse of a merge version's
blocks) and the fused result stored as a new immutable model version with its card."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import torch
from safetensors.torch import save as st_save

from common.artifacts import build_block, parse_weights
from common.fuse import FuseConfig, fused_model
from common.fuse.history import RoundRecord, history_to_json
from common.lego import LegoFuse
from common.records import ModelRecord
from common.serde import manifest_from_bytes

from .errors import precondition
from .fuse_rounds import FuseOutcome
from .merging import insert_version
from .registry import Registry

log = logging.getLogger("mmlego.coordinator")


def check_fuse_start(parent: ModelRecord) -> None:
    """LegoFuse rounds start from a version made of its blocks alone (a merge or an ensemble)."""
    if parent.recipe.method.trained:
        raise precondition(
            f"model {parent.model_id!r} is a {parent.recipe.kind} version; LegoFuse rounds start "
            "from a merge or an ensemble version"
        )


def starting_model(
    registry: Registry, parent_id: str, cfg: FuseConfig, judged: bool = True
) -> tuple[ModelRecord, LegoFuse, FuseConfig]:
    """The merge version ``parent_id``, the LegoFuse of its blocks (in the version's order), and
    ``cfg`` with its fold runs resolved: ``folds`` -1 takes the folds the blocks were cross-fitted
    with (their manifests' ``folds``, the largest where they differ; 0 for blocks with a
    validation split), and a run nobody judges (``judged`` False) carries none."""
    parent = registry.model(parent_id)
    check_fuse_start(parent)
    blocks, folds = [], set()
    for block_id in parent.block_ids:
        record = registry.block(block_id)
        manifest = manifest_from_bytes(record.manifest)
        blocks.append(
            build_block(manifest, parse_weights(registry.store.blobs.read(block_id), manifest))
        )
        folds.add(int(manifest.train_stats.get("folds", 0)))
    if not judged:
        cfg = replace(cfg, folds=0)  # fold runs serve out-of-fold scores of the rounds only
    elif cfg.folds < 0:
        if len(folds) > 1:
            log.warning(
                "the blocks of %s were cross-fitted with different folds %s: the rounds carry "
                "%d fold runs (a site cross-fitting with another number does not take part)",
                parent_id,
                sorted(folds),
                max(folds),
            )
        cfg = replace(cfg, folds=max(folds))
    return parent, fused_model(blocks, cfg.mode, parent.recipe), cfg


def store_fused(
    registry: Registry,
    parent: ModelRecord,
    outcome: FuseOutcome,
    cfg: FuseConfig,
    actor: str,
    privacy: dict[str, str] | None = None,
    validation: dict[str, Any] | None = None,
) -> ModelRecord:
    """The kept round's weights as a new model version whose card records parent, rounds,
    participants, per-round metrics and validation, strategy and privacy settings; the sites'
    scores of the kept round go with it (for the recommendation)."""
    weights = st_save({k: v.detach().to("cpu").contiguous() for k, v in outcome.state.items()})
    settings = {**{k: str(v) for k, v in cfg.to_dict().items()}, "strategy": cfg.strategy}
    kept = (
        outcome.history[outcome.best_round - 1]
        if outcome.best_round
        else (outcome.history[-1] if outcome.history else RoundRecord(0))
    )
    metrics = {"train_loss": float(kept.train_loss), "num-examples": float(kept.num_examples)}
    verdict = outcome.verdicts.get(outcome.best_round)
    if verdict is not None:
        metrics.update(
            {
                "val_metric": float(verdict.value),
                "val_parent": float(verdict.parent),
                "val_diff": float(verdict.diff),
                "val_se_diff": float(verdict.se_diff),
            }
        )
    extra = {
        "task": parent.card.get("task", {}),
        "blocks": parent.card.get("blocks", []),
        "fuse": {
            "participants": outcome.participants,
            "rounds": history_to_json(outcome.history),
            "strategy": cfg.strategy,
            "kept_round": outcome.best_round or len(outcome.history),
            "privacy": privacy or {"mechanism": "none"},
        },
        "validation": validation or {"evaluated": False, "reason": "not measured"},
    }
    record = insert_version(
        registry.store,
        parent.task_id,
        parent.recipe.fused(),
        settings,
        weights,
        extra,
        actor,
        parent_id=parent.model_id,
        metrics=metrics,
        scores=verdict.scores if verdict is not None else None,
        job_id=verdict.job_id if verdict is not None else "",
        candidate_id=f"round-{outcome.best_round}" if verdict is not None else "",
    )
    log.info(
        "stored fused version %s (parent %s, round %d of %d kept, sites %s)",
        record.model_id,
        parent.model_id,
        outcome.best_round or len(outcome.history),
        len(outcome.history),
        ", ".join(outcome.participants),
    )
    return record


def state_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
