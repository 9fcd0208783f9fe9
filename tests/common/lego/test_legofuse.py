"""LegoFuse: both modes train every parameter; the source blocks stay intact."""

import pytest
import torch

from common.lego import LegoFuse
from tests.factories import bag, block, tabular


def blocks() -> list:
    return [block("a", seed=1), block("b", kind="bag", in_features=4, seed=2)]


@pytest.mark.parametrize("mode", ["stack", "weave"])
def test_every_parameter_gets_a_gradient(mode: str) -> None:
    fused = LegoFuse(blocks(), mode=mode).train()
    fused({"a": tabular(), "b": bag()}).pow(2).sum().backward()
    for name, p in fused.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("mode", ["stack", "weave"])
def test_training_leaves_the_blocks_intact(mode: str) -> None:
    src = blocks()
    before = [{k: v.clone() for k, v in b.state_dict().items()} for b in src]
    fused = LegoFuse(src, mode=mode).train()
    opt = torch.optim.SGD(fused.parameters(), lr=0.5)
    for _ in range(2):
        opt.zero_grad()
        fused({"a": tabular(), "b": bag()}).pow(2).sum().backward()
        opt.step()
    for b, ref in zip(src, before, strict=True):
        assert all(torch.equal(ref[k], v) for k, v in b.state_dict().items())
    assert not torch.equal(fused.latent.detach(), src[0].latent.detach()) or mode == "weave"


def test_schedules() -> None:
    src = blocks()
    assert LegoFuse(src, "stack").schedule() == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert LegoFuse(src, "weave").schedule() == [(0, 0), (1, 0), (0, 1), (1, 1)]
    assert LegoFuse(src, "stack", order=[1, 0]).schedule() == [(1, 0), (1, 1), (0, 0), (0, 1)]


def test_stack_starts_from_first_blocks_latent() -> None:
    src = blocks()
    assert torch.equal(LegoFuse(src, "stack", order=[1, 0]).latent.detach(), src[1].latent.detach())


@pytest.mark.parametrize("mode", ["stack", "weave"])
def test_missing_modality_skips_that_block(mode: str) -> None:
    fused = LegoFuse(blocks(), mode=mode).eval()
    present = torch.tensor([True, False, True, False, True])
    full = fused({"a": tabular(), "b": bag(present=present)})
    a_only = fused({"a": tabular()})
    assert torch.allclose(full[~present], a_only[~present], atol=1e-6)
    assert not torch.allclose(full[present], a_only[present], atol=1e-4)
    poisoned = bag(present=present)
    poisoned.x[~present] = 1e6
    assert torch.allclose(
        fused({"a": tabular(), "b": poisoned})[~present], a_only[~present], atol=1e-6
    )


def test_bad_mode_and_order() -> None:
    with pytest.raises(ValueError, match="known: stack, weave"):
        LegoFuse(blocks(), mode="braid")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="permutation"):
        LegoFuse(blocks(), order=[0, 0])


@pytest.mark.parametrize("kind", ["tabular", "bag"])
def test_fused_single_block_sees_the_blocks_input_scaling(kind: str) -> None:
    src = block("a", kind=kind, in_features=4, seed=3)
    src.set_input_scaling(torch.tensor([1.0, -2.0, 0.5, 3.0]), torch.tensor([2.0, 0.5, 1.0, 4.0]))
    item = tabular(f=4) if kind == "tabular" else bag()
    fused = LegoFuse([src], "stack").eval()
    assert torch.allclose(fused({"a": item}), src(item.x, item.mask), atol=1e-5)
