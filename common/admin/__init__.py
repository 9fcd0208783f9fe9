"""Operating a consortium from anywhere with an admin kit: the admin client and what operators
read (shared by the coordinator's host commands, ``mmlego admin`` and the console of the
top-level :mod:`admin` package). The client is imported on first use: the CLI starts without
gRPC."""

from __future__ import annotations

from typing import Any

__all__ = ["AdminClient", "AdminKit", "NotStored"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
