"""What operators read, as plain rows (``--json``) and as text: one module for the host's
``mmlego coordinator`` commands, ``mmlego admin`` and the admin console, so all three say the same.
Every figure comes from what the registry holds (counts, validation metrics, hashes); nothing
from a single patient."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # records import torch; the CLI's text output does not need it
    from ..records import BlockRecord, FuseRound, FuseRun, ModelRecord, SiteRecord, TaskRecord


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


def age_seconds(iso: str, now: dt.datetime | None = None) -> float | None:
    """Seconds since ``iso`` (UTC), or None for an empty or unreadable time."""
    try:
        then = dt.datetime.fromisoformat(iso)
    except ValueError:
        return None
    return max(0.0, ((now or dt.datetime.now(dt.UTC)) - then).total_seconds())


def human_age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


# ---- status --------------------------------------------------------------------------------------
def render_status(s: dict[str, Any]) -> str:
    lines = [
        f"store {s['store']} (schema {s['schema']}, mmlego {s['code_version']}): "
        f"{s['blob_bytes'] / 1e6:.1f} MB of blobs, "
        f"{s['open_uploads']} unfinished uploads, {len(s['corrupt_blocks'])} corrupt blocks",
        "",
        "tasks:",
    ]
    lines += [
        f"  {t['task']:<20} {t['kind']:<15} modalities {', '.join(t['modalities'])}; "
        f"{t['blocks']} blocks "
        f"({t['latest_blocks']} latest of active sites); {t['versions']} versions, latest "
        f"{t['latest_version'] or '-'}; "
        f"recommended {t['recommended'] or '-'}"
        + (
            f" (consortium validation {t['recommended_metric']:.4f})"
            if t["recommended_metric"] is not None
            else ""
        )
        for t in s["tasks"]
    ] or ["  (none)"]
    lines += ["", "sites:"]
    lines += [
        f"  {x['site']:<20} {x['state']:<10} {'paired' if x['paired'] else 'unpaired':<9} "
        "modalities "
        f"{', '.join(x['modalities'])}; {x['blocks']} blocks"
        + (f" (withdrawn: {x['withdrawn_reason']})" if x["state"] == "withdrawn" else "")
        for x in s["sites"]
    ] or ["  (none)"]
    lines += ["", "model versions (newest first):"]
    lines += [
        f"  {m['model']:<20} {m['recipe']:<8} {m['blocks']} blocks of "
        f"{', '.join(m['sites']) or '-'}"
        + (f"; from {m['parent']}, {m['rounds']} rounds" if m["recipe"] == "fuse" else "")
        + (
            f"; validation {m['val_metric']:.4f}"
            if m["val_metric"] is not None
            else "; not measured"
        )
        + f"; {m['created_at']}"
        for m in s["models"]
    ] or ["  (none)"]
    return "\n".join(lines)


# ---- tasks ---------------------------------------------------------------------------------------
def task_row(t: TaskRecord) -> dict[str, Any]:
    return {
        "task": t.task_id,
        "kind": t.spec.kind,
        "latent": [t.latent_rows, t.latent_dim],
        "fourier": t.fourier,
        "modalities": list(t.modalities),
        "fuse_mode": t.fuse_mode,
        "max_block_epsilon": t.max_block_epsilon or None,
        "created_at": t.created_at,
        "description": t.description,
    }


def task_line(t: TaskRecord) -> str:
    return (
        f"{t.task_id:<20} {t.spec.kind:<15} latent {t.latent_rows}x{t.latent_dim} {t.fourier}  "
        f"modalities {', '.join(t.modalities)}"
        + (f"  DP blocks only, epsilon <= {t.max_block_epsilon:g}" if t.max_block_epsilon else "")
    )


def created_task_line(t: TaskRecord) -> str:
    return f"created task {t.task_id} ({t.spec.kind}; modalities {', '.join(t.modalities)})"


# ---- sites ---------------------------------------------------------------------------------------
def site_rows(sites: Iterable[SiteRecord], now: dt.datetime | None = None) -> list[dict[str, Any]]:
    return [
        {
            "site": s.name,
            "modalities": list(s.modalities),
            "paired": s.paired,
            "state": "withdrawn" if s.withdrawn else "active",
            "blocks": s.block_count,
            "first_seen": s.first_seen,
            "last_seen": s.last_seen,
            "last_seen_s": age_seconds(s.last_seen, now),
            "withdrawn_reason": s.withdrawn_reason,
        }
        for s in sites
    ]


def render_sites(rows: list[dict[str, Any]]) -> str:
    out = [
        f"{r['site']:<20} {r['state']:<10} {'paired' if r['paired'] else 'unpaired':<9} "
        f"{', '.join(r['modalities']):<24} "
        f"{r['blocks']:>4} blocks  last seen {human_age(r['last_seen_s'])}"
        + (f"  (withdrawn: {r['withdrawn_reason']})" if r["state"] == "withdrawn" else "")
        for r in rows
    ]
    return "\n".join(out) or "no sites"


def withdrew_line(s: SiteRecord) -> str:
    return f"withdrew site {s.name}; its {s.block_count} block(s) leave future merges"


# ---- blocks --------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4096)  # a site's blocks share its certificate: parse each once
def signer_name(pem: bytes) -> str:
    """The name in a block signer's certificate ("" when there is none)."""
    if not pem:
        return ""
    from cryptography import x509

    from ..pki import identity_from_cert

    try:
        return identity_from_cert(x509.load_pem_x509_certificate(pem)).name
    except (ValueError, TypeError):
        return "?"


def block_rows(
    blocks: Iterable[BlockRecord], now: dt.datetime | None = None
) -> list[dict[str, Any]]:
    from .. import serde

    rows = []
    for b in blocks:
        m = serde.manifest_from_bytes(b.manifest)
        stats = m.train_stats
        rows.append(
            {
                "block": b.block_id,
                "task": b.task_id,
                "site": b.site,
                "modality": b.modality,
                "state": b.state,
                "patients": int(stats["n_train"]) if "n_train" in stats else None,
                "val_patients": int(stats["n_val"]) if "n_val" in stats else None,
                "val_metric": _num(stats.get("val_metric")),
                "size": b.size,
                "signer": signer_name(b.signer_certificate),
                "signer_certificate_sha256": hashlib.sha256(b.signer_certificate).hexdigest()
                if b.signer_certificate
                else "",
                "accepted_at": b.accepted_at,
                "age_s": age_seconds(b.accepted_at, now),
                "dp_epsilon": m.dp.epsilon if m.dp is not None else None,
                "code_version": m.code_version,
            }
        )
    return rows


def render_blocks(rows: list[dict[str, Any]]) -> str:
    def f(x: float | None, spec: str = ".4f") -> str:
        return "-" if x is None else format(x, spec)

    head = (
        f"{'block':<14} {'task':<14} {'site':<14} {'modality':<12} {'patients':>8} {'val':>7} "
        f"{'size':>10}  signer  age"
    )
    out = [
        f"{r['block'][:12]:<14} {r['task']:<14} {r['site']:<14} {r['modality']:<12} "
        f"{f(r['patients'], 'd'):>8} "
        f"{f(r['val_metric']):>7} {r['size']:>10}  {r['signer'] or '-'}  {human_age(r['age_s'])}"
        + ("  (withdrawn)" if r["state"] != "accepted" else "")
        + (f"  DP eps {r['dp_epsilon']:.3g}" if r["dp_epsilon"] else "")
        for r in rows
    ]
    return "\n".join([head, *out]) if out else "no blocks"


# ---- model versions ------------------------------------------------------------------------------
def version_rows(models: Iterable[ModelRecord]) -> list[dict[str, Any]]:
    """Versions newest first with their lineage (parent and children), recipe, and the sites'
    validation: the consortium metric and each site's, when the sites scored the version."""
    models = list(models)
    children: dict[str, list[str]] = {}
    for m in models:
        if m.parent_id:
            children.setdefault(m.parent_id, []).append(m.model_id)
    rows = []
    for m in models:
        v = m.card.get("validation", {})
        per_site = {
            s: _num(x.get("value") if isinstance(x, dict) else x)
            for s, x in sorted(v.get("per_site", {}).items())
        }
        rows.append(
            {
                "model": m.model_id,
                "task": m.task_id,
                "recipe": m.recipe.kind,
                "parent": m.parent_id,
                "children": sorted(children.get(m.model_id, [])),
                "blocks": len(m.block_ids),
                "sites": sorted({b.get("site", "") for b in m.card.get("blocks", [])}),
                "created_at": m.created_at,
                "val_metric": _num(m.metrics.get("val_metric")),
                "val_se": _num(m.metrics.get("val_se")),
                "val_patients": int(m.metrics["val_patients"])
                if "val_patients" in m.metrics
                else None,
                "per_site": per_site,
                "measured": bool(v.get("evaluated")),
                "reason": v.get("reason", ""),
                "rounds": len(m.card.get("fuse", {}).get("rounds", [])),
            }
        )
    return rows


def render_versions(rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        metric = (
            f"validation {r['val_metric']:.4f}"
            + (f" +- {r['val_se']:.4f}" if r["val_se"] is not None else "")
            if r["val_metric"] is not None
            else "not measured"
        )
        out.append(
            f"{r['model']:<22} {r['recipe']:<8} {r['blocks']} blocks of "
            f"{', '.join(r['sites']) or '-'}; {metric}"
            + (f"; from {r['parent']}" if r["parent"] else "")
            + (f"; parent of {', '.join(r['children'])}" if r["children"] else "")
            + f"; {r['created_at']}"
        )
    return "\n".join(out) or "no model versions"


def validation_line(card: dict[str, Any]) -> str:
    """One line on what the sites found when they scored a new version."""
    v = card.get("validation", {})
    if not v.get("evaluated"):
        return "not measured by the sites"
    if not v.get("candidates"):  # a fused version: the kept round, scored beside its parent
        value = _num(card.get("metrics", {}).get("val_metric"))
        return (f"consortium validation {value:.4f}; " if value is not None else "") + str(
            v.get("reason", "")
        )
    row: dict[str, Any] = next(
        (r for r in v.get("candidates", []) if r["candidate"] == v.get("chosen")), {}
    )
    if row.get("value") is None:
        return f"no site could score it (scored by {', '.join(v.get('scored_by', [])) or 'none'})"
    return (
        f"consortium validation {row['value']:.4f} +- {row.get('se') or float('nan'):.4f} on "
        f"{len(row['sites'])} site(s); "
        f"{v.get('reason', '')}"
    )


def created_version_line(m: ModelRecord, card_hint: str) -> str:
    return (
        f"created model version {m.model_id} ({m.recipe.kind}, {len(m.block_ids)} blocks): "
        f"{validation_line(m.card)} ({card_hint})"
    )


# ---- fuse runs -----------------------------------------------------------------------------------
def round_row(x: FuseRound) -> dict[str, Any]:
    return {
        "round": x.round,
        "asked": x.asked,
        "answered": list(x.answered),
        "failed": list(x.failed),
        "no_answer": list(x.no_answer),
        "patients": x.patients,
        "train_loss": _num(x.train_loss),
        "seconds": x.seconds,
        "validation": _num(x.value),
        "parent_validation": _num(x.parent),
        "diff": _num(x.diff),
        "se_diff": _num(x.se_diff),
    }


def fuse_run_rows(runs: Iterable[FuseRun]) -> list[dict[str, Any]]:
    return [
        {
            "run": r.run_key,
            "task": r.task_id,
            "parent": r.parent_id,
            "state": r.state,
            "started_at": r.started_at,
            "finished_at": r.finished_at,
            "model": r.model_id,
            "reason": r.reason,
            "rounds": [round_row(x) for x in r.rounds],
        }
        for r in runs
    ]


def round_line(x: dict[str, Any]) -> str:
    verdict = (
        f"; validation {x['validation']:.4f} vs parent {x['parent_validation']:.4f} "
        f"({x['diff']:+.4f}, standard error "
        f"{x['se_diff']:.4f})"
        if x["validation"] is not None
        else ""
    )
    loss = f"{x['train_loss']:.4f}" if x["train_loss"] is not None else "-"
    return (
        f"round {x['round']}: {len(x['answered'])} of {x['asked']} sites answered "
        f"({', '.join(x['answered']) or '-'}), "
        f"{len(x['failed'])} failed, {len(x['no_answer'])} silent; {x['patients']} patients, loss "
        f"{loss}{verdict}"
    )


def render_fuse_runs(rows: list[dict[str, Any]]) -> str:
    out = []
    for r in rows:
        out.append(
            f"{r['run'][:12]}  {r['task']:<14} from {r['parent']:<16} {r['state']:<10} started "
            f"{r['started_at']}"
            + (f" -> {r['model']}" if r["model"] else "")
            + (f"  ({r['reason']})" if r["reason"] else "")
        )
        out += [f"    {round_line(x)}" for x in r["rounds"]]
    return "\n".join(out) or "no fuse runs"


# ---- evaluations ---------------------------------------------------------------------------------
def evaluation_rows(statuses: Iterable[Any]) -> list[dict[str, Any]]:
    """Evaluation jobs (:class:`common.evaluation.candidates.JobStatus`), newest first."""
    return [
        {
            "job": s.job.job_id,
            "task": s.job.task_id,
            "purpose": s.job.purpose,
            "state": s.state,
            "candidates": len(s.job.candidates),
            "created_at": s.job.created_at,
            "delivered": list(s.delivered),
            "scored": list(s.reported),
            "declined": list(s.declined),
        }
        for s in statuses
    ]


def render_evaluations(rows: list[dict[str, Any]]) -> str:
    out = [
        f"{r['job']:<20} {r['purpose']:<9} {r['state']:<7} {r['candidates']} candidates; scored by "
        f"{', '.join(r['scored']) or '-'}; declined by {', '.join(r['declined']) or '-'}"
        for r in rows
    ]
    return "\n".join(out) or "no evaluation jobs"


def render_evaluate(status: Any, results: dict[str, Any], recommended: Any) -> str:
    """What ``evaluate`` prints: who scored, each version's consortium score, the recommendation."""
    lines = [
        f"evaluation {status.job.job_id}: scored by {', '.join(status.reported) or 'no site'}; "
        f"declined by {', '.join(status.declined) or 'none'}"
    ]
    for c in status.job.candidates:
        r = results.get(c.candidate_id)
        lines.append(
            f"  {c.model_id:<24} "
            + (
                f"{r.value:.4f} +- {r.se:.4f} ({len(r.sites)} sites, {r.patients} patients)"
                if r is not None
                else "no score"
            )
        )
    lines.append(f"recommended: {recommended.model.model_id} ({recommended.reason})")
    return "\n".join(lines)


# ---- fuse ----------------------------------------------------------------------------------------
def fused_line(model_id: str, parent: str, rounds: object) -> str:
    return f"created model version {model_id} (LegoFuse of {parent}, {rounds} rounds run)"


def not_fused_line(reason: str) -> str:
    return f"no fused version stored: {reason}"
