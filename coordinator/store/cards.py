"""A model version's card as files for operators (the version's record holds the card)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from common.artifacts.modelcard import render_markdown
from common.fileio import atomic_write


def write_card(folder: Path, card: dict[str, Any]) -> None:
    """The card as card.json and card.md in ``folder``."""
    atomic_write(folder / "card.json", json.dumps(card, indent=2, sort_keys=True).encode())
    atomic_write(folder / "card.md", render_markdown(card).encode())
