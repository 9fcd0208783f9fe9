"""Talking to a coordinator's block registry over mutual TLS (used by sites and operators)."""

from .connect import TLSFiles, open_channel
from .errors import CallError
from .registry import RegistryClient, Retry

__all__ = ["CallError", "RegistryClient", "Retry", "TLSFiles", "open_channel"]
