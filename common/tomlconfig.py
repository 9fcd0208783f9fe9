"""TOML configuration files: read into validated pydantic models, written from them, commented."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Base of every configuration model: unknown keys are errors (typos do not pass silently).

    A field's ``description`` is the comment :func:`render_toml` writes beside the setting; an
    optional field's first ``examples`` entry is what it writes, commented out, while it is unset.
    """

    model_config = ConfigDict(extra="forbid")


class TLSSection(Strict):
    """[tls] of a kit (site.toml, admin.toml): its certificate and key, the consortium CA's
    certificate; paths relative to the file. The coordinator's adds its revocation list."""

    cert: str = "tls.crt"
    key: str = "tls.key"
    ca: str = "ca.crt"


class ConfigError(ValueError):
    """A configuration file that is missing, not TOML, or not valid; the message names file and
    field."""


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


def render_toml(model: BaseModel, header: str = "") -> str:
    """``model`` as TOML a person can edit: ``header`` as comment lines, then every setting (the
    top-level ones, then a table per section), each with its field's description as a comment; an
    unset optional setting is written commented out. :func:`read_toml` reads back ``model``."""
    lines = [f"# {line}" for line in header.splitlines()]
    lines += [_setting(model, k, v) for k, v in model if not isinstance(v, BaseModel)]
    for name, section in model:
        if isinstance(section, BaseModel):
            lines += ["", f"[{name}]", *(_setting(section, k, v) for k, v in section)]
    return "\n".join(lines) + "\n"


def _setting(model: BaseModel, name: str, value: object) -> str:
    info = type(model).model_fields[name]
    if isinstance(value, BaseModel):
        raise TypeError(f"{name}: a table inside [{type(model).__name__}] is not written")
    if value is None:
        line = f"# {name} = {toml_value(info.examples[0])}" if info.examples else f"# {name} ="
    else:
        line = f"{name} = {toml_value(value)}"
    return line + (f"  # {info.description}" if info.description else "")


def toml_value(v: object) -> str:
    """A TOML value: a boolean, a number, a string or a list of them."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int | float):
        return repr(v)  # inf and nan are TOML too
    if isinstance(v, str):
        return '"' + "".join(_ESCAPES.get(c) or _char(c) for c in v) + '"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"{v!r} ({type(v).__name__}) has no TOML form here")


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _char(c: str) -> str:
    """A character of a basic string: control characters (TOML forbids them raw) escaped."""
    return f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else c
