"""merge_heads: N-way spherical mean, SLERP at t=0.5 for two, finite in degenerate cases."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from common.lego import merge_heads


def head(seed: int, scale: float = 1.0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "linear.weight": torch.randn(4, 10, generator=g, dtype=torch.float64) * scale,
        "linear.bias": torch.randn(4, generator=g, dtype=torch.float64) * scale,
    }


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Textbook SLERP of two weight tensors (the angle from their directions)."""
    ua, ub = a.flatten() / a.norm(), b.flatten() / b.norm()
    omega = torch.arccos(torch.clamp(ua @ ub, -1.0, 1.0))
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


def test_two_heads_equal_slerp_at_half() -> None:
    a, b = head(0), head(1, scale=2.5)
    out = merge_heads([a, b])
    for k in a:
        assert_close(out[k], slerp(a[k], b[k], 0.5))


def test_order_independent_for_three_and_more() -> None:
    heads = [head(s, scale=1 + s) for s in range(4)]
    ref = merge_heads(heads)
    for perm in itertools.permutations(range(4)):
        out = merge_heads([heads[i] for i in perm])
        for k in ref:
            assert_close(out[k], ref[k])


def test_single_head_is_returned_unchanged() -> None:
    h = head(3)
    out = merge_heads([h])
    for k in h:
        assert torch.equal(out[k], h[k])
        assert out[k].data_ptr() != h[k].data_ptr()  # a copy, not the same storage


def test_identical_heads_give_that_head() -> None:
    h = head(4)
    out = merge_heads(
        [h, {k: v.clone() for k, v in h.items()}, {k: v.clone() for k, v in h.items()}]
    )
    for k in h:
        assert_close(out[k], h[k])
        assert torch.isfinite(out[k]).all()


def test_parallel_heads_finite_and_between() -> None:
    h = head(5)
    out = merge_heads([h, {k: 3 * v for k, v in h.items()}])
    for k in h:
        assert_close(out[k], 2 * h[k])  # same direction: the norms average


def test_opposite_heads_are_finite() -> None:
    h = head(6)
    for other in ({k: -v for k, v in h.items()}, {k: -2 * v for k, v in h.items()}):
        out = merge_heads([h, other])
        assert all(torch.isfinite(v).all() for v in out.values())


def test_zero_tensors_are_finite() -> None:
    z = {k: torch.zeros_like(v) for k, v in head(0).items()}
    out = merge_heads([z, z])
    assert all(torch.equal(v, torch.zeros_like(v)) for v in out.values())


def test_third_head_changes_the_result() -> None:
    a, b, c = head(0), head(1), head(2)
    assert (
        merge_heads([a, b])["linear.weight"] - merge_heads([a, b, c])["linear.weight"]
    ).abs().max() > 1e-3


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 5), st.integers(0, 10_000))
def test_equal_norm_heads_keep_their_norm(m: int, seed: int) -> None:
    heads = [head(seed + i) for i in range(m)]
    heads = [{k: v / v.norm() for k, v in h.items()} for h in heads]
    out = merge_heads(heads)
    for v in out.values():
        assert abs(v.norm().item() - 1.0) < 1e-9


def test_mismatch_is_named() -> None:
    a = head(0)
    with pytest.raises(ValueError, match="keys"):
        merge_heads([a, {"linear.weight": a["linear.weight"]}])
    with pytest.raises(ValueError, match=r"'linear\.bias' has shape"):
        merge_heads([a, {**a, "linear.bias": torch.zeros(5, dtype=torch.float64)}])
    with pytest.raises(ValueError, match="at least one"):
        merge_heads([])


def test_weighted_endpoints_are_exact_and_half_is_slerp() -> None:
    a, b = head(0), head(1, scale=2.0)
    for k in a:
        assert torch.equal(merge_heads([a, b], weights=[1.0, 0.0])[k], a[k])
        assert torch.equal(merge_heads([a, b], weights=[0.0, 3.0])[k], b[k])
        assert_close(merge_heads([a, b], weights=[2.0, 2.0])[k], slerp(a[k], b[k], 0.5))


def test_bad_weights_are_named() -> None:
    with pytest.raises(ValueError, match="weights must be 2"):
        merge_heads([head(0), head(1)], weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="weights must be 2"):
        merge_heads([head(0), head(1)], weights=[0.0, 0.0])
