"""Reading a TOML configuration file into a validated pydantic model, with one clear message."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Base of every configuration model: unknown keys are errors (typos do not pass silently)."""

    model_config = ConfigDict(extra="forbid")


class ConfigError(ValueError):
    """A configuration file that is missing, not TOML, or not valid; the message names file and field."""


def read_toml(path: Path, model: type[M]) -> M:
    if not path.is_file():
        raise ConfigError(f"{path}: not found")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ConfigError(f"{path}: {loc}: {first['msg']}") from exc
