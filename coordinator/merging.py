"""LegoMerge as a service: the latest accepted block of every (site, modality) of a task, made into
an immutable model version with no training: the recipe a merge policy chooses (the uniform
merge, the ensemble, or with ``auto`` the candidate the sites' federated evaluation supports:
common.evaluation.policy).
Every version is measured before it is published: the sites score it (up to the deadline) and its
card shows what they found, site by site."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

import torch
from cryptography import x509
from safetensors import safe_open

from common.artifacts import sha256_file
from common.artifacts.modelfile import version_weights
from common.artifacts.recipefile import write_recipe
from common.evaluation import CandidateScore, Consortium
from common.evaluation.candidates import Candidate, EvaluationJob
from common.evaluation.policy import merge_policy
from common.evaluation.selection import check_hierarchy, site_choices
from common.lego.merge import HEAD_MERGES, LATENT_MERGES
from common.lego.recipe import Recipe
from common.pki import identity_from_cert
from common.recipe_defaults import DEFAULT_HEAD_MERGE, DEFAULT_LATENT_MERGE, DEFAULT_POLICY
from common.records import BlockRecord, ModelRecord, TaskRecord, utc_now
from common.serde import manifest_from_bytes
from common.version import code_version

from .errors import Kind, RegistryError, as_invalid, not_found, precondition
from .evaluations import Evaluations, block_infos
from .stacking import fit_stack
from .store import Store, write_card

log = logging.getLogger("mmlego.coordinator")


def _signer(b: BlockRecord) -> dict[str, Any]:
    ident = (
        identity_from_cert(x509.load_pem_x509_certificate(b.signer_certificate))
        if b.signer_certificate
        else None
    )
    return {
        "site": b.site,
        "certificate_serial": str(ident.serial) if ident else "",
        "signing_key_sha256": hashlib.sha256(ident.signing_key).hexdigest() if ident else "",
    }


def head_tensors(store: Store, block_id: str) -> dict[str, torch.Tensor]:
    """A stored block's head (``head.*``, prefix removed), after re-checking the blob's hash."""
    path = store.blobs.path(block_id)
    if not path.is_file() or sha256_file(path) != block_id:
        raise RegistryError(
            Kind.DATA_LOSS,
            f"stored block {block_id[:12]} is missing or damaged on the coordinator's disk; "
            "the operator must restore it from backup or withdraw it",
        )
    with safe_open(str(path), framework="pt") as st:  # type: ignore[no-untyped-call]
        return {k[len("head.") :]: st.get_tensor(k) for k in st.keys() if k.startswith("head.")}


def task_card(t: TaskRecord) -> dict[str, Any]:
    return {
        "kind": t.spec.kind,
        "n_bins": t.spec.n_bins,
        "bin_edges": list(t.spec.bin_edges),
        "n_classes": t.spec.n_classes,
        "latent_rows": t.latent_rows,
        "latent_dim": t.latent_dim,
        "fourier": t.fourier,
        "init_seed": t.init_seed,
        "modalities": list(t.modalities),
    }


def block_entries(records: list[BlockRecord]) -> list[dict[str, Any]]:
    out = []
    for r in records:
        manifest = manifest_from_bytes(r.manifest)
        out.append(
            {
                "block_id": r.block_id,
                "site": r.site,
                "modality": r.modality,
                "size": r.size,
                "accepted_at": r.accepted_at,
                "signer": _signer(r),
                "train_stats": dict(manifest.train_stats),
                "code_version": manifest.code_version,
                "dp": asdict(manifest.dp) if manifest.dp is not None else None,
            }
        )
    return out


def validation_card(
    job: EvaluationJob | None,
    results: Mapping[str, Consortium],
    scores: Mapping[str, Mapping[str, CandidateScore]],
    chosen: Candidate,
    reason: str,
    status: Any = None,
    expected: set[str] | None = None,
) -> dict[str, Any]:
    """What the sites found, for the card: every candidate's consortium metric (with its standard
    error and its difference to the reference), the chosen one site by site, and why."""
    if job is None:
        return {"evaluated": False, "reason": reason, "chosen": chosen.candidate_id}
    rows = []
    for c in job.candidates:
        r = results.get(c.candidate_id)
        rows.append(
            {
                "candidate": c.candidate_id,
                "label": c.label,
                "kind": c.kind,
                "weights": list(c.weights),
                **(r.to_dict() if r is not None else {"value": None}),
            }
        )
    per_site = {
        site: {"value": round(s.metric, 6), "patients": s.patients, "events": s.events}
        for site, s in sorted(scores.get(chosen.candidate_id, {}).items())
    }
    out = {
        "evaluated": True,
        "job_id": job.job_id,
        "reference": job.candidates[0].candidate_id,
        "candidates": rows,
        "chosen": chosen.candidate_id,
        "reason": reason,
        "per_site": per_site,
    }
    if status is not None:
        out.update(
            {
                "scored_by": list(status.reported),
                "declined_by": list(status.declined),
                "silent": sorted(
                    (expected or set(status.delivered))
                    - set(status.reported)
                    - set(status.declined)
                ),
            }
        )
    return out


def merge_task(
    store: Store,
    task_id: str,
    latent_merge: str = "",
    head_merge: str = "",
    actor: str = "operator",
    policy: str = DEFAULT_POLICY,
    evaluations: Evaluations | None = None,
    deadline_s: float = 0.0,
    z: float = 1.0,
    stop: Callable[[], bool] = lambda: False,
    layout: str = "auto",
) -> ModelRecord:
    """Build, measure and store a new version of ``task_id``: the recipe that ``policy``
    (uniform, ensemble, auto) chooses, among flat or hierarchical recipes or both (``layout``:
    auto, flat, modality). ``evaluations`` None (or a zero deadline with no configured one)
    publishes without asking the sites."""
    task = store.task(task_id)
    if task is None:
        raise not_found(f"task {task_id!r} does not exist")
    latent_merge, head_merge = (
        latent_merge or DEFAULT_LATENT_MERGE,
        head_merge or DEFAULT_HEAD_MERGE,
    )
    with as_invalid():  # the policy and the registries name the known ones
        chooser = merge_policy(policy)
        layout = check_hierarchy(layout)
        LATENT_MERGES.get(latent_merge)
        HEAD_MERGES.get(head_merge)
    records = store.blocks.latest(task_id)
    if not records:
        raise precondition(
            f"task {task_id!r} has no accepted blocks of sites that are not withdrawn; nothing to "
            "merge"
        )
    infos = block_infos(records)
    asked = evaluations.panel(task) if evaluations is not None else ()  # every job of the merge
    stack = None
    if evaluations is not None and chooser.stacks:
        stack = fit_stack(
            evaluations,
            task,
            infos,
            evaluations.deadline(deadline_s),
            actor,
            latent_merge,
            head_merge,
            stop,
            layout,
            asked,
        )
    candidates = chooser.candidates(
        infos, latent_merge, head_merge, stack.candidates if stack else (), layout
    )
    job, results, scores, status, expected = None, {}, {}, None, set()
    if evaluations is not None:
        wait_s = evaluations.deadline(deadline_s)
        job = evaluations.open(task, "merge", candidates, wait_s, actor=actor, sites=asked)
        expected = evaluations.expected(task, asked)
        silent = stack.silent if stack is not None else set()  # waited for once already
        status = evaluations.wait(job.job_id, expected - silent, wait_s, stop)
        results, scores = evaluations.results(job), evaluations.scores(job.job_id)
    choice = chooser.choose(candidates, infos, results, z, job is not None and not results)
    chosen = choice.candidate
    validation = validation_card(job, results, scores, chosen, choice.reason, status, expected)
    if stack is not None:
        validation["stack"] = stack.card
    record = store_recipe(
        store,
        task,
        records,
        chosen,
        actor,
        validation,
        scores.get(chosen.candidate_id, {}),
        job.job_id if job is not None else "",
    )
    if job is not None and chooser.per_site:
        for cand, sites in _by_candidate(site_choices(candidates, scores, chosen, z)).items():
            mine = validation_card(
                job,
                results,
                scores,
                cand,
                f"for {', '.join(sites)}: their own out-of-fold evidence favours {cand.label} "
                f"over {record.model_id} ({chosen.label}) by more than {z:g} standard errors",
                status,
                expected,
            )
            site_version = store_recipe(
                store,
                task,
                records,
                cand,
                actor,
                {**mine, "serves": sites, "consortium_version": record.model_id},
                scores.get(cand.candidate_id, {}),
                job.job_id,
            )
            log.info(
                "published %s (%s) for %s",
                site_version.model_id,
                cand.label,
                ", ".join(sites),
                extra={
                    "event": "merged-for-sites",
                    "task": task_id,
                    "model_id": site_version.model_id,
                    "sites": sites,
                    "actor": actor,
                },
            )
    log.info(
        "merged %d blocks of %s into %s (%s)",
        len(records),
        task_id,
        record.model_id,
        choice.reason,
        extra={
            "event": "merged",
            "task": task_id,
            "model_id": record.model_id,
            "blocks": len(records),
            "actor": actor,
            "candidate": chosen.candidate_id,
        },
    )
    return record


def _by_candidate(choices: Mapping[str, Candidate]) -> dict[Candidate, list[str]]:
    out: dict[Candidate, list[str]] = {}
    for site, cand in sorted(choices.items()):
        out.setdefault(cand, []).append(site)
    return out


def store_recipe(
    store: Store,
    task: TaskRecord,
    records: list[BlockRecord],
    chosen: Candidate,
    actor: str,
    validation: dict[str, Any],
    scores: Mapping[str, CandidateScore],
    job_id: str,
) -> ModelRecord:
    """The chosen merge or ensemble as a version: its own weights come from its blocks' heads
    (whose blobs are re-checked here, for either kind); the blocks travel by id."""
    by_id = {r.block_id: r for r in records}
    used = [by_id[i] for i in chosen.block_ids]
    weights = version_weights(chosen.recipe, [head_tensors(store, r.block_id) for r in used])
    extra = {"task": task_card(task), "blocks": block_entries(used), "validation": validation}
    metrics = _metrics(validation, chosen.candidate_id)
    return insert_version(
        store,
        task.task_id,
        chosen.recipe,
        {"candidate": chosen.candidate_id},
        weights,
        extra,
        actor,
        metrics=metrics,
        scores=scores,
        job_id=job_id,
        candidate_id=chosen.candidate_id,
    )


def _metrics(validation: dict[str, Any], candidate_id: str) -> dict[str, float]:
    row = next(
        (r for r in validation.get("candidates", []) if r["candidate"] == candidate_id), None
    )
    if row is None or row.get("value") is None:
        return {}
    out = {"val_metric": float(row["value"]), "val_patients": float(row["patients"])}
    if row.get("se") is not None:
        out["val_se"] = float(row["se"])
    return out


def insert_version(
    store: Store,
    task_id: str,
    recipe: Recipe,
    settings: dict[str, str],
    weights: bytes,
    card_extra: dict[str, Any],
    actor: str,
    parent_id: str = "",
    metrics: dict[str, float] | None = None,
    scores: Mapping[str, CandidateScore] | None = None,
    job_id: str = "",
    candidate_id: str = "",
) -> ModelRecord:
    """Store ``weights`` as a blob and a new immutable model version of ``task_id`` (id
    ``<task>-v<n>``) with its model card (also written as card.json / card.md for operators) and
    the sites' scores of it (kept for the recommendation). The card shows the recipe as the
    model file records it."""
    params = write_recipe(recipe, settings)
    sha = store.blobs.put_bytes(weights)  # 1. the blob is durable under its hash
    created = utc_now()

    def make(model_id: str) -> ModelRecord:
        card = {
            "model_id": model_id,
            "task_id": task_id,
            "recipe": recipe.kind,
            "parameters": params,
            "parent_id": parent_id,
            "created_at": created,
            "created_by": actor,
            "code_version": code_version(),
            "weights_sha256": sha,
            "metrics": dict(metrics or {}),
            **card_extra,
        }
        return ModelRecord(
            model_id=model_id,
            task_id=task_id,
            recipe=recipe,
            settings=dict(settings),
            weights_sha256=sha,
            weights_size=len(weights),
            card=card,
            created_at=created,
            code_version=code_version(),
            parent_id=parent_id,
            metrics=dict(metrics or {}),
        )

    # 2. then the version becomes visible (a crash between: recovery removes the orphan blob)
    record = store.models.add(task_id, weights, make, actor, scores, job_id, candidate_id)
    # 3. a crash before this: recovery writes the card files from the record
    write_card(store.models_dir / record.model_id, record.card)
    return record
