"""Domain errors of the registry; each carries the kind of failure, which the servicer maps to a
gRPC status code (one translator, in :mod:`coordinator.servicer`)."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager


class Kind(enum.Enum):
    INVALID = "invalid argument"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "permission denied"
    NOT_FOUND = "not found"
    EXISTS = "already exists"
    PRECONDITION = "failed precondition"
    EXHAUSTED = "resource exhausted"
    DATA_LOSS = "data loss"
    ABORTED = "aborted"
    UNIMPLEMENTED = "unimplemented"


class RegistryError(Exception):
    """A request the registry refuses; ``message`` is shown to the caller and must say what to
    do."""

    def __init__(self, kind: Kind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def invalid(msg: str) -> RegistryError:
    return RegistryError(Kind.INVALID, msg)


@contextmanager
def as_invalid() -> Iterator[None]:
    """Inside: a ``ValueError`` (a message that does not parse, a setting out of range) is the
    caller's mistake and leaves as an INVALID argument with its message (nothing else of it)."""
    try:
        yield
    except ValueError as exc:
        raise invalid(str(exc)) from None


def not_found(msg: str) -> RegistryError:
    return RegistryError(Kind.NOT_FOUND, msg)


def forbidden(msg: str) -> RegistryError:
    return RegistryError(Kind.FORBIDDEN, msg)


def precondition(msg: str) -> RegistryError:
    return RegistryError(Kind.PRECONDITION, msg)
