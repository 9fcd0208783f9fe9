"""Helpers for building frozen config dataclasses from plain dicts (JSON, TOML)."""

from __future__ import annotations

from typing import Any


def reject_unknown(cls: type, data: dict[str, Any], what: str) -> None:
    """Raise naming the keys of ``data`` that are not fields of dataclass ``cls``."""
    if not isinstance(data, dict):
        raise ValueError(f"{what} must be an object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(cls.__dataclass_fields__))  # type: ignore[attr-defined]
    if unknown:
        raise ValueError(f"{what} has unknown fields: {', '.join(unknown)}")
