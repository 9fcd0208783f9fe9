"""Which version of a task to deploy, and scoring stored versions on demand.

A version's scores are the ones the sites sent when it was measured (a merge's job, the round a
fused version was kept from, or ``coordinator evaluate``), site by site. Versions are compared on
the sites that scored both, so a site that joined later does not tilt the comparison: going from
the oldest version to the newest, a version replaces the best so far when it beats it there (ties
keep the earlier; a tournament, so not every pair is compared). Withdrawn sites' scores do not
count, and a version with a block of a withdrawn site is never recommended. While no version has
scores, the newest merge version is recommended (the uniform merge needs no validation). A version
over fewer modalities than the best so far (one a merge published for some sites only) never
replaces it for the consortium.

For a site, the consortium's version is recommended unless the site's own out-of-fold scores
favour another version that serves every one of its patients (a block alone, the merge published
for it, a fused version) by more than Z standard errors: so that a hospital whose own data say
the consortium's model serves it worse than what it contributed is not made worse off for
joining (docs/EVALUATION.md)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import replace

from common.evaluation import CandidateScore, compare, stratified_metric
from common.evaluation.candidates import Candidate, JobStatus
from common.evaluation.scores import Consortium
from common.evaluation.selection import Z, site_bound
from common.lego.recipe import MergeRecipe
from common.records import Recommendation
from common.serde import model_from_bytes, model_outline

from .errors import invalid, not_found
from .evaluations import Evaluations
from .store import Store, VersionScores

log = logging.getLogger("mmlego.coordinator")


def recommend(store: Store, task_id: str, site: str = "", z: float = Z) -> Recommendation:
    """The consortium's recommended version; for ``site``, the one for its patients (another
    version only where the site's own scores favour it by more than ``z`` standard errors)."""
    if store.task(task_id) is None:
        raise not_found(f"task {task_id!r} does not exist")
    if site and store.sites.get(site) is None:
        raise not_found(f"no site {site[:80]!r} is known to the registry")
    accepted = store.blocks.accepted_ids(task_id)
    modality = {b.block_id: b.modality for b in store.blocks.latest(task_id)}
    # oldest first; a card is read only for the version chosen
    raw = list(reversed(store.models.messages(task_id)))
    outlines = [(i, *model_outline(m)) for i, m in enumerate(raw)]
    versions = [
        (i, mid, kind, frozenset(_modalities(store, modality, blocks)))
        for i, mid, kind, blocks in outlines
        if all(b in accepted for b in blocks)
    ]
    if not versions:
        raise not_found(
            f"task {task_id!r} has no model version of blocks that are all still accepted"
        )
    best: int | None = None
    best_scores: dict[str, CandidateScore] = {}
    best_covers: frozenset[str] = frozenset()
    for i, model_id, _, covers in versions:
        scores = store.models.scores(model_id)
        if not scores:
            continue
        if best is None:
            best, best_scores, best_covers = i, scores, covers
            continue
        if not covers >= best_covers:  # serves fewer patients: a version for some sites only
            continue
        mine, theirs, _ = compare(scores, best_scores)
        if math.isfinite(mine) and math.isfinite(theirs) and mine > theirs:
            best, best_scores, best_covers = i, scores, covers
    if best is None:
        newest = next(
            (i for i, _, kind, _ in reversed(versions) if kind == MergeRecipe.name),
            versions[-1][0],
        )
        merge = model_from_bytes(raw[newest])
        return Recommendation(
            task_id,
            merge,
            float("nan"),
            f"no version has consortium validation scores yet (no site "
            f"scored any); {merge.model_id} is the newest merge version",
            site=site,
        )
    chosen = model_from_bytes(raw[best])
    value = stratified_metric([best_scores[s] for s in sorted(best_scores)])
    sites = tuple(sorted(best_scores))
    consortium = Recommendation(
        task_id,
        chosen,
        value,
        f"{chosen.model_id} ({chosen.recipe.kind}) has the best consortium validation metric, "
        f"{value:.4f} on {len(sites)} site(s); every other scored version was compared with it on "
        "the sites that scored both",
        sites,
        site,
    )
    if not site or site not in best_scores:
        return consortium
    return _for_site(store, raw, versions, consortium, best_scores[site], site, z)


def _modalities(store: Store, known: dict[str, str], blocks: Sequence[str]) -> set[str]:
    out = set()
    for b in blocks:
        if b not in known:
            record = store.blocks.get(b)
            known[b] = record.modality if record is not None else ""
        out.add(known[b])
    return out


def _for_site(
    store: Store,
    raw: list[bytes],
    versions: list[tuple[int, str, str, frozenset[str]]],
    consortium: Recommendation,
    base: CandidateScore,
    site: str,
    z: float,
) -> Recommendation:
    """The consortium's version, unless the site's own out-of-fold scores favour another that
    serves all the patients it serves there by more than ``z`` standard errors (common.evaluation.
    selection.site_bound); the best such one, in a tournament from the oldest."""
    best_id, best = consortium.model.model_id, base
    best_job = store.models.scored_in(best_id).get(site, "")
    for _, model_id, _, _ in versions:
        if model_id == consortium.model.model_id:
            continue
        mine = store.models.scores(model_id).get(site)
        if mine is None or mine.patients != base.patients:
            continue
        job = store.models.scored_in(model_id).get(site, "")
        if site_bound(mine, best, bool(job) and job == best_job, z) > 0:
            best_id, best, best_job = model_id, mine, job
    if best_id == consortium.model.model_id:
        return replace(
            consortium,
            reason=f"{consortium.reason}; no version beats it on {site}'s own scores by more "
            f"than {z:g} standard errors",
        )
    chosen = next(model_from_bytes(raw[i]) for i, mid, _, _ in versions if mid == best_id)
    return Recommendation(
        consortium.task_id,
        chosen,
        best.metric,
        f"{best_id} ({chosen.recipe.kind}) for {site}: its out-of-fold metric there, "
        f"{best.metric:.4f} on {best.patients} patients, beats {consortium.model.model_id}'s "
        f"{base.metric:.4f} by more than {z:g} standard errors",
        (site,),
        site,
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
