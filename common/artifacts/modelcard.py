"""Model cards: what a model version is made of and how, as JSON (stored with the version) and
as Markdown for people."""

from __future__ import annotations

from typing import Any


def render_markdown(card: dict[str, Any]) -> str:
    """A readable card; every figure comes from ``card``."""
    task = card.get("task", {})
    lines = [
        f"# Model {card.get('model_id', '?')}",
        "",
        f"- task: `{card.get('task_id', '?')}` ({task.get('kind', '?')}; latent "
        f"{task.get('latent_rows')}x"
        f"{task.get('latent_dim')}, fourier {task.get('fourier')})",
        f"- recipe: **{card.get('recipe', '?')}** "
        + ", ".join(f"{k}={v}" for k, v in sorted(card.get("parameters", {}).items())),
        f"- created: {card.get('created_at', '?')} by {card.get('created_by', '?')} with mmlego "
        f"{card.get('code_version', '?')}",
        f"- weights sha256: `{card.get('weights_sha256', '?')}`",
    ]
    if card.get("parent_id"):
        lines.append(f"- parent version: `{card['parent_id']}`")
    lines += [
        "",
        "## Blocks",
        "",
        "| site | modality | block (sha256) | bytes | accepted | signer key | n_train | val "
        "metric | DP epsilon (delta) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for b in card.get("blocks", []):
        stats, dp = b.get("train_stats", {}), b.get("dp")
        dp_text = f"{dp['epsilon']:.3g} ({dp['delta']:.2g})" if dp else "no DP"
        lines.append(
            f"| {b['site']} | {b['modality']} | `{b['block_id'][:16]}…` | {b['size']} | "
            f"{b['accepted_at']} | "
            f"`{b['signer']['signing_key_sha256'][:16]}…` (cert "
            f"{b['signer']['certificate_serial']}) | "
            f"{stats.get('n_train', '')} | {stats.get('val_metric', '')} | {dp_text} |"
        )
    lines += _privacy(card)
    metrics = card.get("metrics", {})
    if metrics:
        lines += ["", "## Metrics", ""] + [f"- {k}: {v}" for k, v in sorted(metrics.items())]
    lines += _validation(card.get("validation"))
    lines += _fuse(card.get("fuse"))
    return "\n".join(lines) + "\n"


def privacy(card: dict[str, Any]) -> dict[str, Any]:
    """What the version guarantees a patient of each site: its blocks' DP-SGD epsilons, and for a
    fused version the central DP of the rounds composed with them (basic composition: epsilons
    and deltas add). Central DP bounds a whole site's update, so it bounds each of its patients
    too. A site with a block without DP has no finite guarantee."""
    central = (card.get("fuse") or {}).get("privacy") or {}
    try:
        c_eps, c_delta = float(central.get("epsilon", "")), float(central.get("delta", ""))
    except ValueError:
        c_eps = c_delta = None  # type: ignore[assignment]
    fused = bool(card.get("fuse"))
    out: dict[str, Any] = {}
    for b in card.get("blocks", []):
        dp = b.get("dp")
        row = out.setdefault(b["site"], {"blocks": [], "epsilon": 0.0, "delta": 0.0})
        row["blocks"].append(
            {
                "modality": b["modality"],
                "epsilon": dp["epsilon"] if dp else None,
                "delta": dp["delta"] if dp else None,
            }
        )
        if dp is None or row["epsilon"] is None:
            row["epsilon"] = row["delta"] = None
        else:  # a site's blocks share its patients: their epsilons add up
            row["epsilon"] += dp["epsilon"]
            row["delta"] += dp["delta"]
    for row in out.values():
        if fused and row["epsilon"] is not None:
            row["epsilon"] = row["epsilon"] + c_eps if c_eps is not None else None
            row["delta"] = row["delta"] + c_delta if c_delta is not None else None
    return out


def _privacy(card: dict[str, Any]) -> list[str]:
    blocks = card.get("blocks", [])
    if not any(b.get("dp") for b in blocks):
        return []
    central = (card.get("fuse") or {}).get("privacy") or {}
    lines = [
        "",
        "## Privacy",
        "",
        "Differential privacy per patient of each site: its blocks (DP-SGD, Opacus RDP accountant) "
        + (
            "composed with the LegoFuse rounds' central DP (epsilon "
            f"{central.get('epsilon', 'n/a')}, delta "
            f"{central.get('delta', 'n/a')}, site-level, so it covers each patient)"
            if card.get("fuse")
            else ""
        )
        + "; epsilons and deltas add (basic composition).",
        "",
        "| site | blocks (epsilon) | epsilon | delta |",
        "|---|---|---|---|",
    ]
    for site, row in sorted(privacy(card).items()):
        parts = ", ".join(
            f"{b['modality']} {b['epsilon']:.3g}"
            if b["epsilon"] is not None
            else f"{b['modality']} no DP"
            for b in row["blocks"]
        )
        eps = f"{row['epsilon']:.3g}" if row["epsilon"] is not None else "no finite guarantee"
        delta = f"{row['delta']:.2g}" if row["delta"] is not None else "-"
        lines.append(f"| {site} | {parts} | {eps} | {delta} |")
    return lines


def _num(x: Any, digits: int = 4) -> str:
    return f"{x:.{digits}f}" if isinstance(x, int | float) else "-"


def _validation(v: dict[str, Any] | None) -> list[str]:
    """What the sites found when they scored this version (federated evaluation)."""
    if not v:
        return []
    lines = ["", "## Consortium validation", ""]
    if not v.get("evaluated"):
        return [*lines, f"Not measured by the sites: {v.get('reason', '')}."]
    if v.get("scored_by") is not None:
        scored = ", ".join(v["scored_by"]) or "no site"
        declined = ", ".join(v.get("declined_by", [])) or "none"
        silent = ", ".join(v.get("silent", [])) or "none"
        lines.append(
            f"Scored by {scored}; declined by {declined}; silent: {silent}. Within-site "
            "(stratified) metric from "
            "pair counts summed over the sites."
        )
    lines += [
        "",
        f"Chosen: **{v.get('chosen', v.get('kept_round', '?'))}**: {v.get('reason', '')}.",
    ]
    if v.get("candidates"):
        lines += [
            "",
            "| candidate | kind | weights | validation | standard error | vs reference | standard "
            "error | sites |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in v["candidates"]:
            lines.append(
                f"| {r['label']} | {r['kind']} | "
                f"{', '.join(f'{w:g}' for w in r.get('weights', [])) or 'equal'} | "
                f"{_num(r.get('value'))} | {_num(r.get('se'))} | {_num(r.get('diff'))} | "
                f"{_num(r.get('se_diff'))} | "
                f"{len(r.get('sites', []))} |"
            )
    if v.get("curve"):
        lines += [
            "",
            "| round | validation | parent (same sites) | difference | standard error |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {i + 1} | {_num(c.get('value'))} | {_num(c.get('parent'))} | "
            f"{_num(c.get('diff'))} | "
            f"{_num(c.get('se_diff'))} |"
            for i, c in enumerate(v["curve"])
            if c
        ]
    if v.get("per_site"):
        lines += ["", "| site | validation | patients | events |", "|---|---|---|---|"]
        for site, row in sorted(v["per_site"].items()):
            row = row if isinstance(row, dict) else {"value": row}
            lines.append(
                f"| {site} | {_num(row.get('value'))} | {row.get('patients', '')} | "
                f"{row.get('events', '')} |"
            )
    return lines


def _fuse(f: dict[str, Any] | None) -> list[str]:
    if not f:
        return []
    lines = [
        "",
        "## LegoFuse rounds",
        "",
        f"Participants: {', '.join(f.get('participants', []))}; strategy {f.get('strategy')}; "
        f"round {f.get('kept_round', '?')} kept; privacy: "
        f"{f.get('privacy', {}).get('mechanism', 'none')}.",
        "",
        "| round | sites | patients | train loss |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['round']} | {', '.join(r.get('sites', []))} | {r.get('num-examples', '')} | "
        f"{_num(r.get('train_loss'))} |"
        for r in f.get("rounds", [])
    ]
    return lines
