"""admin.toml, an operator's kit file: its one schema and its one writer (without gRPC)."""

from __future__ import annotations

from pydantic import Field

from ..tomlconfig import Strict, TLSSection, render_toml

KIT_FILE = "admin.toml"


class AdminToml(Strict):
    """Who the operator is, which coordinator it calls, and the kit's TLS files."""

    admin: str
    coordinator: str
    tls: TLSSection = Field(default_factory=TLSSection)


def render(f: AdminToml) -> str:
    """``f`` as admin.toml text, as ``mmlego ca enroll-admin`` writes it."""
    return render_toml(f, f"Operator kit for {f.admin}.")
