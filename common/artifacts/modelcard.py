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
    return "\n".join(lines) + "\n"
