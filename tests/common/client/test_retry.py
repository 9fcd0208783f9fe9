"""Back-off with full jitter stays within its bounds and spreads out; refusals are not retried."""

from __future__ import annotations

import random

import grpc

from common.client import CallError, Retry
from common.client.registry import RETRYABLE


def test_delays_grow_exponentially_up_to_the_cap_with_jitter() -> None:
    r, rng = Retry(attempts=10, base_s=0.5, cap_s=8.0), random.Random(1)
    for attempt in range(10):
        bound = min(8.0, 0.5 * 2**attempt)
        draws = [r.delay(attempt, rng) for _ in range(200)]
        assert all(0.0 <= d <= bound for d in draws)
        assert (
            max(draws) > 0.8 * bound and min(draws) < 0.2 * bound
        )  # jitter: spread over the whole range


def test_only_transient_failures_are_retried() -> None:
    assert (
        grpc.StatusCode.UNAVAILABLE in RETRYABLE and grpc.StatusCode.DEADLINE_EXCEEDED in RETRYABLE
    )
    for refusal in (
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.DATA_LOSS,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ALREADY_EXISTS,
    ):
        assert refusal not in RETRYABLE


def test_call_error_explains_a_refused_handshake() -> None:
    class Fake(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.UNAVAILABLE

        def details(self) -> str:
            return (
                "failed to connect to all addresses; "
                "last error: UNAVAILABLE: ipv4:127.0.0.1:1: Socket closed"
            )

    err = CallError.of(Fake())
    assert (
        err.code == grpc.StatusCode.UNAVAILABLE and "refused this kit's certificate" in err.message
    )
