"""The code version recorded in every artifact."""

from __future__ import annotations


def code_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mmlego")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"
