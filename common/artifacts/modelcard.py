"""Model cards: what a model version is made of and how, as JSON (stored with the version) and
as Markdown for people."""

from __future__ import annotations

from typing import Any


def render_markdown(card: dict[str, Any]) -> str:
    """A readable card; every figure comes from ``card``."""
    task = card.get("task", {})
    lines = [f"# Model {card.get('model_id', '?')}", "",
             f"- task: `{card.get('task_id', '?')}` ({task.get('kind', '?')}; latent {task.get('latent_rows')}x"
             f"{task.get('latent_dim')}, fourier {task.get('fourier')})",
             f"- recipe: **{card.get('recipe', '?')}** " + ", ".join(f"{k}={v}" for k, v in sorted(card.get("parameters", {}).items())),
             f"- created: {card.get('created_at', '?')} by {card.get('created_by', '?')} with mmlego {card.get('code_version', '?')}",
             f"- weights sha256: `{card.get('weights_sha256', '?')}`"]
    if card.get("parent_id"):
        lines.append(f"- parent version: `{card['parent_id']}`")
    lines += ["", "## Blocks", "", "| site | modality | block (sha256) | bytes | accepted | signer key | n_train | val metric |",
              "|---|---|---|---|---|---|---|---|"]
    for b in card.get("blocks", []):
        stats = b.get("train_stats", {})
        lines.append(f"| {b['site']} | {b['modality']} | `{b['block_id'][:16]}…` | {b['size']} | {b['accepted_at']} | "
                     f"`{b['signer']['signing_key_sha256'][:16]}…` (cert {b['signer']['certificate_serial']}) | "
                     f"{stats.get('n_train', '')} | {stats.get('val_metric', '')} |")
    metrics = card.get("metrics", {})
    if metrics:
        lines += ["", "## Metrics", ""] + [f"- {k}: {v}" for k, v in sorted(metrics.items())]
    lines += _validation(card.get("validation"))
    lines += _fuse(card.get("fuse"))
    return "\n".join(lines) + "\n"


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
        lines.append(f"Scored by {scored}; declined by {declined}; silent: {silent}. Within-site (stratified) metric from "
                     "pair counts summed over the sites.")
    lines += ["", f"Chosen: **{v.get('chosen', v.get('kept_round', '?'))}**: {v.get('reason', '')}."]
    if v.get("candidates"):
        lines += ["", "| candidate | kind | weights | validation | standard error | vs reference | standard error | sites |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in v["candidates"]:
            lines.append(f"| {r['label']} | {r['kind']} | {', '.join(f'{w:g}' for w in r.get('weights', [])) or 'equal'} | "
                         f"{_num(r.get('value'))} | {_num(r.get('se'))} | {_num(r.get('diff'))} | {_num(r.get('se_diff'))} | "
                         f"{len(r.get('sites', []))} |")
    if v.get("curve"):
        lines += ["", "| round | validation | parent (same sites) | difference | standard error |", "|---|---|---|---|---|"]
        lines += [f"| {i + 1} | {_num(c.get('value'))} | {_num(c.get('parent'))} | {_num(c.get('diff'))} | "
                  f"{_num(c.get('se_diff'))} |" for i, c in enumerate(v["curve"]) if c]
    if v.get("per_site"):
        lines += ["", "| site | validation | patients | events |", "|---|---|---|---|"]
        for site, row in sorted(v["per_site"].items()):
            row = row if isinstance(row, dict) else {"value": row}
            lines.append(f"| {site} | {_num(row.get('value'))} | {row.get('patients', '')} | {row.get('events', '')} |")
    return lines


def _fuse(f: dict[str, Any] | None) -> list[str]:
    if not f:
        return []
    lines = ["", "## LegoFuse rounds", "", f"Participants: {', '.join(f.get('participants', []))}; strategy {f.get('strategy')}; "
             f"round {f.get('kept_round', '?')} kept; privacy: {f.get('privacy', {}).get('mechanism', 'none')}.", "",
             "| round | sites | patients | train loss |", "|---|---|---|---|"]
    lines += [f"| {r['round']} | {', '.join(r.get('sites', []))} | {r.get('num-examples', '')} | {_num(r.get('train_loss'))} |"
              for r in f.get("rounds", [])]
    return lines
