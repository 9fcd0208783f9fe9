"""How every Flower process of mmlego is started: its own FLWR_HOME, no telemetry, no update
check, and this interpreter's scripts first on PATH (the SuperLink starts ``flower-superexec``
and the SuperNodes ``flwr-clientapp`` from there)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def flower_tool(name: str) -> str:
    """Path of a Flower command installed beside this interpreter."""
    return str(Path(sys.executable).parent / name)


def flower_env(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return dict(
        os.environ,
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        FLWR_HOME=str(home),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
