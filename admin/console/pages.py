"""What each console page shows, as plain template data built from the source's answers through
:mod:`common.admin.render` (so the console and ``mmlego admin`` say the same)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from typing import Any

from markupsafe import Markup

from common.admin.render import (
    age_seconds,
    block_rows,
    fuse_run_rows,
    human_age,
    validation_line,
    version_rows,
)
from common.artifacts.modelcard import render_markdown
from common.artifacts.recipefile import write_recipe

from .source import ConsoleSource
from .svg import Point, Reference, line_plot

COUNTS = (
    ("tasks", "tasks"),
    ("active_sites", "active sites"),
    ("withdrawn_sites", "withdrawn sites"),
    ("blocks", "blocks"),
    ("versions", "model versions"),
    ("open_uploads", "open uploads"),
    ("corrupt_blocks", "corrupt blocks"),
)


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and math.isfinite(x) else None


def ago(iso: str, now: dt.datetime | None = None) -> str:
    """ "5 min ago" (the ``ago`` filter of the templates), "never" for no time."""
    return human_age(age_seconds(iso, now)) if iso else "never"


# ---- overview ------------------------------------------------------------------------------------
def overview(source: ConsoleSource) -> dict[str, Any]:
    s = source.status()
    sites = s["sites"]
    n = {
        "tasks": len(s["tasks"]),
        "active_sites": sum(x["state"] == "active" for x in sites),
        "withdrawn_sites": sum(x["state"] == "withdrawn" for x in sites),
        "blocks": sum(int(x["blocks"]) for x in sites),
        "versions": len(s["models"]),
        "open_uploads": int(s["open_uploads"]),
        "corrupt_blocks": len(s["corrupt_blocks"]),
    }
    return {
        "status": s,
        "counts": [(key, label, n[key]) for key, label in COUNTS],
        "tasks": s["tasks"],
        "sites": sites,
        "newest": s["models"][:5],
        "corrupt": list(s["corrupt_blocks"]),
    }


# ---- blocks --------------------------------------------------------------------------------------
def blocks(source: ConsoleSource, task: str = "", site: str = "") -> dict[str, Any]:
    rows = block_rows(source.blocks(task_id=task, site=site, include_withdrawn=True))
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(rows, key=lambda r: r["accepted_at"], reverse=True):
        groups.setdefault(r["site"], []).append(r)
    sections = []
    for name in sorted(groups):
        items = sorted(
            groups[name], key=lambda r: (r["task"], r["modality"])
        )  # stable: newest first within each
        active = [r for r in items if r["state"] == "accepted"]
        latest: dict[str, dict[str, Any]] = {}
        for r in active:  # the newest accepted block of each task and modality
            latest.setdefault(f"{r['task']}/{r['modality']}", r)
        sections.append(
            {
                "site": name,
                "rows": items,
                "active": len(active),
                "withdrawn": len(items) - len(active),
                "patients": {k: r["patients"] for k, r in sorted(latest.items())},
            }
        )
    return {"sections": sections, "count": len(rows), "filters": _filters(source, task, site)}


def _filters(source: ConsoleSource, task: str, site: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"task": task, "tasks": sorted(t.task_id for t in source.tasks())}
    if site is not None:
        out.update(site=site, sites=sorted(s.name for s in source.sites()))
    return out


# ---- versions ------------------------------------------------------------------------------------
def _metric(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.4f}"


def versions(source: ConsoleSource, task: str = "") -> dict[str, Any]:
    rows = version_rows(source.models(task))
    by_task: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_task.setdefault(r["task"], []).append({**r, "metric": _metric(r["val_metric"])})
    sections = [
        {
            "task": t,
            "rows": rs,
            "plot": versions_plot(t, rs),
            "measured": sum(r["val_metric"] is not None for r in rs),
        }
        for t, rs in sorted(by_task.items())
    ]
    return {"sections": sections, "count": len(rows), "filters": _filters(source, task)}


def _version_tip(r: dict[str, Any]) -> str:
    if r["val_metric"] is None:
        return f"{r['model']} ({r['recipe']}): not measured"
    se = f" ± {r['val_se']:.4f}" if r["val_se"] is not None else ""
    return f"{r['model']} ({r['recipe']}): {r['val_metric']:.4f}{se}"


def versions_plot(task: str, rows: Iterable[dict[str, Any]]) -> Markup:
    """Consortium validation per version of one task, oldest first; unmeasured versions are gaps."""
    ordered = sorted(rows, key=lambda r: r["created_at"])
    points = [
        Point(r["model"], r["val_metric"], tip=_version_tip(r), err=r["val_se"]) for r in ordered
    ]
    return Markup(
        line_plot(
            points, f"consortium validation per version — {task}", y_label="validation metric"
        )
    )


# ---- one version ---------------------------------------------------------------------------------
def version(source: ConsoleSource, model_id: str) -> dict[str, Any]:
    m = source.model(model_id)
    rows = version_rows(source.models(m.task_id))
    row = next((r for r in rows if r["model"] == m.model_id), None) or version_rows([m])[0]
    card = m.card
    v = card.get("validation") or {}
    fuse = card.get("fuse") or {}
    rounds = card_rounds(fuse)
    return {
        "m": m,
        "parameters": write_recipe(m.recipe, m.settings),  # as its model file records them
        "row": row,
        "card": card,
        "metric": _metric(row["val_metric"]),
        "validation": v,
        "validation_line": validation_line(card),
        "fuse": fuse,
        "rounds": rounds,
        "candidates": [
            {**c, "chosen": c.get("candidate") == v.get("chosen")} for c in v.get("candidates", [])
        ],
        "per_site": per_site(v),
        "plot": rounds_plot(m.parent_id, rounds),
        "blocks": card_blocks(card),
        "markdown": render_markdown(card),
    }


def per_site(v: dict[str, Any]) -> list[dict[str, Any]]:
    """Each site's score of the version (a number, or a dict with value, patients and events)."""
    out = []
    for name, x in sorted((v.get("per_site") or {}).items()):
        x = x if isinstance(x, dict) else {"value": x}
        out.append(
            {
                "site": name,
                "value": _finite(x.get("value")),
                "patients": x.get("patients"),
                "events": x.get("events"),
            }
        )
    return out


def card_rounds(fuse: dict[str, Any]) -> list[dict[str, Any]]:
    """A fused version's rounds as its card records them, with the sites' verdict on each."""
    return [
        {
            "round": h.get("round"),
            "sites": h.get("sites", []),
            "patients": h.get("num-examples"),
            "train_loss": _finite(h.get("train_loss")),
            "failed": h.get("failed", []),
            "no_answer": h.get("no_answer", []),
            "seconds": h.get("seconds"),
            "kept": h.get("round") == fuse.get("kept_round"),
            **_verdict(h.get("validation") or {}),
        }
        for h in fuse.get("rounds", [])
    ]


def card_blocks(card: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for b in card.get("blocks", []):
        stats = b.get("train_stats") or {}
        out.append(
            {
                "site": b.get("site", ""),
                "modality": b.get("modality", ""),
                "block": b.get("block_id", ""),
                "size": b.get("size"),
                "accepted_at": b.get("accepted_at", ""),
                "patients": stats.get("n_train"),
                "val_metric": _finite(stats.get("val_metric")),
                "dp_epsilon": _finite((b.get("dp") or {}).get("epsilon")),
            }
        )
    return out


def _verdict(x: dict[str, Any]) -> dict[str, Any]:
    return {
        "validation": _finite(x.get("value")),
        "parent_validation": _finite(x.get("parent")),
        "diff": _finite(x.get("diff")),
        "se_diff": _finite(x.get("se_diff")),
    }


def _round_tip(r: dict[str, Any]) -> str:
    if r["validation"] is None:
        return f"round {r['round']}: not measured"
    diff = (
        f" ({r['diff']:+.4f} vs the parent, standard error {r['se_diff']:.4f})"
        if r["diff"] is not None and r["se_diff"] is not None
        else ""
    )
    return f"round {r['round']}: {r['validation']:.4f}{diff}"


def rounds_plot(parent: str, rounds: list[dict[str, Any]]) -> Markup | None:
    """Validation per round beside a dashed line for the parent (its value in the last validated
    round: each round is compared with the parent on the same sites); bars are one standard error
    of the difference. None when no round was scored."""
    scored = [r for r in rounds if r["validation"] is not None]
    if not scored:
        return None
    ref = scored[-1]["parent_validation"]
    points = [
        Point(f"round {r['round']}", r["validation"], tip=_round_tip(r), err=r["se_diff"])
        for r in rounds
    ]
    reference = Reference(ref, f"parent {parent}: {ref:.4f}") if ref is not None else None
    return Markup(
        line_plot(points, "validation per round", y_label="validation metric", reference=reference)
    )


# ---- fuse runs -----------------------------------------------------------------------------------
def fuse(source: ConsoleSource, task: str = "") -> dict[str, Any]:
    rows = fuse_run_rows(source.fuse_runs(task_id=task))
    runs = [{**r, "plot": rounds_plot(r["parent"], r["rounds"])} for r in rows]
    return {"runs": runs, "filters": _filters(source, task)}
