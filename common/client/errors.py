"""A refused or failed registry call, with the message a person can act on."""

from __future__ import annotations

import grpc

HANDSHAKE_HINT = (
    "no TLS session with the coordinator: it may have refused this kit's certificate "
    "(not issued by the consortium CA, expired or not yet valid), "
    "this kit may not trust the coordinator's certificate, "
    "the clocks of this machine and the coordinator may differ by more than a certificate allows "
    "(check both), or the coordinator is down or restarting"
)


class CallError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message

    @classmethod
    def of(cls, exc: grpc.RpcError) -> CallError:
        code: grpc.StatusCode = exc.code()  # type: ignore[attr-defined]
        details = exc.details() or ""  # type: ignore[attr-defined]
        low = details.lower()
        if code == grpc.StatusCode.UNAVAILABLE and "stream removed" in low:
            details = (
                "the connection to the coordinator broke during the call "
                f"(it stopped, or the network failed) ({details})"
            )
        elif code == grpc.StatusCode.UNAVAILABLE and any(
            s in low
            for s in ("handshake", "ssl", "tls", "certificate", "socket closed", "connection reset")
        ):
            details = f"{HANDSHAKE_HINT} ({details})"
        return cls(code, details)
