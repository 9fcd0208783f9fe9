"""Fitting a stacked recipe's weights with the sites (common.evaluation.stacking): a stack job
per damped Newton step, each asking every site for its sums at the current weights of every
grouping (per block, per modality); then the fraction of the fit kept, chosen on the out-of-fold
loss. What comes out is candidates (a weighted merge and a weighted ensemble per grouping) that
the merge's job scores beside the others: a fit is never published on its own evidence."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from common.evaluation.candidates import Candidate
from common.evaluation.selection import BlockInfo, flat_allowed, hierarchy, soup_blocks
from common.evaluation.stacking import (
    MAX_POINTS,
    STACK_JOBS,
    Design,
    Grouping,
    block_weights,
    design,
    in_groups,
    newton,
    shrinkage,
    shrunk,
    summed,
)
from common.lego.recipe import EnsembleRecipe, MergeRecipe
from common.records import TaskRecord

from .evaluations import Evaluations

log = logging.getLogger("mmlego.coordinator")
STEPS = STACK_JOBS  # stack jobs (Newton steps) at most
TOLERANCE = 1e-3  # a step smaller than this share of the weights' norm ends the fit


@dataclass
class Fit:
    """One grouping's fit: its weights per step, the amount kept and the out-of-fold losses."""

    grouping: Grouping
    steps: list[list[float]] = field(default_factory=list)
    amount: float = float("nan")
    losses: dict[float, float] = field(default_factory=dict)
    folds: int = 0
    weights: tuple[float, ...] = ()  # per block, mean 1

    def card(self) -> dict[str, Any]:
        return {
            "grouping": self.grouping.name,
            "steps": [[round(v, 6) for v in s] for s in self.steps],
            "kept": self.amount,
            "out_of_fold_loss": {str(a): round(v, 4) for a, v in self.losses.items()},
            "folds": self.folds,
            "block_weights": list(self.weights),
        }


@dataclass
class Stack:
    """What the stack jobs found: the candidates they propose, and a record for the card."""

    candidates: list[Candidate]
    card: dict[str, Any]
    silent: set[str] = field(default_factory=set)  # expected sites that never answered a stack job


def fit_stack(
    evaluations: Evaluations,
    task: TaskRecord,
    blocks: Sequence[BlockInfo],
    wait_s: float,
    actor: str,
    latent_merge: str,
    head_merge: str,
    stop: Callable[[], bool] = lambda: False,
    layout: str = "auto",
    asked: Sequence[str] = (),
) -> Stack:
    """Fit stacked weights with the sites (those ``asked``: the merge's panel; empty: every site)
    and propose them as candidates (none when the blocks leave nothing to weigh or no site sent
    sums)."""
    flat = flat_allowed(blocks, layout)
    if not flat:  # hierarchical only (many blocks, or asked for): the stacked recipes are grouped
        blocks = soup_blocks(blocks)  # over the blocks the modality blocks average
    plan = design([b.modality for b in blocks], [f"{b.site}/{b.modality}" for b in blocks])
    if plan is None:
        return Stack([], {"fitted": False, "reason": "nothing to weigh"})
    groups = () if flat else hierarchy(blocks, layout)
    components = _components(plan, blocks, flat)
    fits = [Fit(g) for g in plan.groupings[:MAX_POINTS]]
    gammas = [g.uniform.astype(float) for g in plan.groupings[:MAX_POINTS]]
    expected = evaluations.expected(task, asked)
    silent: set[str] = set()
    jobs: list[str] = []
    last: list[Any] = []
    for _ in range(STEPS):
        points = [f.grouping.to_components @ gam for f, gam in zip(fits, gammas, strict=True)]
        job = evaluations.open(
            task, "stack", components, wait_s, actor=actor, points=points, sites=asked
        )
        jobs.append(job.job_id)
        status = evaluations.wait(job.job_id, expected, wait_s, stop)
        # a site silent until the deadline is not waited for again in this merge, nor one that
        # said its evaluation is switched off
        answered = set(status.reported) | set(status.declined)
        silent |= expected - answered
        expected = (expected & answered) - evaluations.switched_off(task)
        stats = evaluations.stack(job.job_id)
        sums = [summed(stats, p, len(components)) for p in range(len(points))]
        if not stats or any(s.sites == 0 for s in sums):
            break
        moved = 0.0
        last = []
        for i, (f, gam, s) in enumerate(zip(fits, gammas, sums, strict=True)):
            grouped = in_groups(s, f.grouping.to_components)
            f.steps.append([float(v) for v in gam])
            nxt = newton(gam, grouped.gradient, grouped.hessian)
            size = max(1e-9, float(np.linalg.norm(gam)))
            moved = max(moved, float(np.linalg.norm(nxt - gam)) / size)
            last.append((gam, nxt, grouped))
            gammas[i] = nxt
        if moved < TOLERANCE or stop():
            break
    if not last:
        return Stack([], {"fitted": False, "reason": "no site sent sums", "jobs": jobs}, silent)
    out: list[Candidate] = []
    ids = tuple(b.block_id for b in blocks)
    for f, (at, fit, grouped) in zip(fits, last, strict=True):
        chosen = shrinkage(at, f.grouping.uniform, grouped)
        f.amount, f.losses, f.folds = chosen.amount, chosen.losses, chosen.folds
        final = shrunk(at, fit, f.grouping.uniform, grouped, chosen.amount)
        # grouped: a modality block weighs the mean of its blocks' weights, so each block carries
        # its modality's whole weight (flat: the modality's blocks share it)
        reach = f.grouping.to_blocks if not groups else (f.grouping.to_blocks > 0).astype(float)
        f.weights = block_weights(final, reach)
        if all(abs(w - 1.0) < 1e-6 for w in f.weights):
            continue  # the uniform weights: the uniform merge and the ensemble are candidates
        name, label = f.grouping.name, f.grouping.label
        out += [
            Candidate(
                f"stacked-{name}",
                MergeRecipe.name,
                f"stacked merge ({label})",
                ids,
                f.weights,
                latent_merge,
                head_merge,
                groups=groups,
            ),
            Candidate(
                f"stacked-{name}-ensemble",
                EnsembleRecipe.name,
                f"stacked ensemble ({label})",
                ids,
                f.weights,
                groups=groups,
            ),
        ]
        log.info(
            "stack %s: %d steps, %.2f of the fit kept (out-of-fold loss over %d folds)",
            name,
            len(f.steps),
            f.amount,
            f.folds,
            extra={"event": "stack-fitted", "task": task.task_id, "grouping": name},
        )
    return Stack(out, {"fitted": True, "jobs": jobs, "fits": [f.card() for f in fits]}, silent)


def _components(plan: Design, blocks: Sequence[BlockInfo], flat: bool) -> list[Candidate]:
    """The stack job's candidates: a block alone (a one-block merge), or a modality's blocks'
    ensemble (beyond the flat recipes' size, their modality block: one block to run, not many)."""
    out = []
    for cid, label, idx in plan.components:
        ids = tuple(blocks[i].block_id for i in idx)
        if len(ids) > 1 and not flat:
            out.append(Candidate(cid, MergeRecipe.name, label, ids, groups=(0,) * len(ids)))
            continue
        kind = MergeRecipe.name if len(ids) == 1 else EnsembleRecipe.name
        out.append(Candidate(cid, kind, label, ids))
    return out
