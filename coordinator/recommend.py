"""Which version of a task to deploy, and scoring stored versions on demand.

A version's scores are the ones the sites sent when it was measured (a merge's job, the round a
fused version was kept from, or ``coordinator evaluate``), site by site. Versions are compared on
the sites that scored both, so a site that joined later does not tilt the comparison: going from
the oldest version to the newest, a version replaces the best so far when it beats it there (ties
keep the earlier; a tournament, so not every pair is compared). Withdrawn sites' scores do not
count, and a version with a block of a withdrawn site is never recommended. While no version has
scores, the newest merge version is recommended (the uniform merge needs no validation)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from common.evaluation import CandidateScore, compare, stratified_metric
from common.evaluation.candidates import Candidate, JobStatus
from common.evaluation.scores import Consortium
from common.lego.recipe import MergeRecipe
from common.records import Recommendation
from common.serde import model_from_bytes, model_outline

from .errors import invalid, not_found
from .evaluations import Evaluations
from .store import Store, VersionScores

log = logging.getLogger("mmlego.coordinator")


def recommend(store: Store, task_id: str) -> Recommendation:
    if store.task(task_id) is None:
        raise not_found(f"task {task_id!r} does not exist")
    accepted = store.blocks.accepted_ids(task_id)
    # oldest first; a card is read only for the version chosen
    raw = list(reversed(store.models.messages(task_id)))
    outlines = [(i, *model_outline(m)) for i, m in enumerate(raw)]
    versions = [
        (i, mid, kind) for i, mid, kind, blocks in outlines if all(b in accepted for b in blocks)
    ]
    if not versions:
        raise not_found(
            f"task {task_id!r} has no model version of blocks that are all still accepted"
        )
    best: int | None = None
    best_scores: dict[str, CandidateScore] = {}
    for i, model_id, _ in versions:
        scores = store.models.scores(model_id)
        if not scores:
            continue
        if best is None:
            best, best_scores = i, scores
            continue
        mine, theirs, _ = compare(scores, best_scores)
        if math.isfinite(mine) and math.isfinite(theirs) and mine > theirs:
            best, best_scores = i, scores
    if best is None:
        newest = next(
            (i for i, _, kind in reversed(versions) if kind == MergeRecipe.name), versions[-1][0]
        )
        merge = model_from_bytes(raw[newest])
        return Recommendation(
            task_id,
            merge,
            float("nan"),
            f"no version has consortium validation scores yet (no site "
            f"scored any); {merge.model_id} is the newest merge version",
        )
    chosen = model_from_bytes(raw[best])
    value = stratified_metric([best_scores[s] for s in sorted(best_scores)])
    sites = tuple(sorted(best_scores))
    return Recommendation(
        task_id,
        chosen,
        value,
        f"{chosen.model_id} ({chosen.recipe.kind}) has the best consortium validation metric, "
        f"{value:.4f} on {len(sites)} site(s); every other scored version was compared with it on "
        "the sites that scored both",
        sites,
    )


def evaluate_versions(
    store: Store,
    evaluations: Evaluations,
    model_ids: list[str],
    deadline_s: float,
    actor: str,
    stop: Callable[[], bool] = lambda: False,
) -> tuple[JobStatus, dict[str, Consortium]]:
    """Ask the sites to score stored versions (of one task), wait, and keep each version's scores
    (a site's newer score replaces its older one)."""
    if not model_ids:
        raise invalid("name at least one model version to evaluate")
    if len(set(model_ids)) != len(model_ids):
        raise invalid("a model version is named twice")
    records = []
    for mid in model_ids:
        record = store.models.get(mid)
        if record is None:
            raise not_found(f"no model version {mid[:80]!r}")
        records.append(record)
    tasks = {r.task_id for r in records}
    if len(tasks) != 1:
        raise invalid(
            f"the versions belong to different tasks {sorted(tasks)}; evaluate one task's "
            "versions at a time"
        )
    task = store.task(records[0].task_id)
    assert task is not None
    candidates = [
        Candidate(f"v{i}", "version", r.model_id, model_id=r.model_id)
        for i, r in enumerate(records)
    ]
    wait_s = evaluations.deadline(deadline_s)
    job = evaluations.open(task, "versions", candidates, wait_s, actor=actor)
    status = evaluations.wait(job.job_id, evaluations.expected(task), wait_s, stop)
    scores = evaluations.scores(job.job_id)
    store.models.keep_scores(
        job.job_id,
        [
            VersionScores(rec.model_id, cand.candidate_id, scores.get(cand.candidate_id, {}))
            for cand, rec in zip(candidates, records, strict=True)
        ],
    )
    return status, evaluations.results(job)
