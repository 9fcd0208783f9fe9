"""LegoMerge: missing modalities per sample, N blocks, compatibility checks."""

import pytest
import torch
from torch.testing import assert_close

from common.lego import LegoMerge, merge_heads, merge_latents
from common.tasks import TaskSpec
from tests.factories import bag, block, tabular


def two_blocks() -> tuple:
    return block("a", seed=1), block("b", kind="bag", in_features=4, seed=2)


def test_sample_missing_b_equals_block_a() -> None:
    a, b = two_blocks()
    present_b = torch.tensor([True, False, True, False, True])
    inputs = {"a": tabular(), "b": bag(present=present_b)}
    out = LegoMerge([a, b]).eval()(inputs)
    alone = a(inputs["a"].x)
    assert_close(out[~present_b], alone[~present_b], rtol=1e-6, atol=1e-6)
    assert (out[present_b] - alone[present_b]).abs().max() > 1e-4  # others really merge


def test_sample_missing_a_equals_block_b_and_absent_modality_key() -> None:
    a, b = two_blocks()
    inputs = {"b": bag()}
    assert_close(
        LegoMerge([a, b])(inputs), b(inputs["b"].x, inputs["b"].mask), rtol=1e-6, atol=1e-6
    )


def test_all_present_is_head_of_merged_latent() -> None:
    a, b = two_blocks()
    inputs = {"a": tabular(), "b": bag()}
    model = LegoMerge([a, b])
    z = merge_latents(
        [a.frequency_latent(inputs["a"].x), b.frequency_latent(inputs["b"].x, inputs["b"].mask)]
    )
    head = merge_heads([a.head.state_dict(), b.head.state_dict()])
    assert all(torch.equal(model.head.state_dict()[k], head[k]) for k in head)
    assert_close(model(inputs), model.head(z), rtol=1e-5, atol=1e-6)


def test_three_blocks_use_subset_heads() -> None:
    a, b, c = (
        block("a", seed=1),
        block("b", kind="bag", in_features=4, seed=2),
        block("c", seed=3, in_features=3),
    )
    present_c = torch.tensor([True, True, False, False, True])
    inputs = {"a": tabular(), "b": bag(), "c": tabular(f=3, present=present_c)}
    model = LegoMerge([a, b, c])
    out = model(inputs)
    ab_only = LegoMerge([a, b])({"a": inputs["a"], "b": inputs["b"]})
    assert_close(out[~present_c], ab_only[~present_c], rtol=1e-5, atol=1e-6)
    assert (out[present_c] - ab_only[present_c]).abs().max() > 1e-4


def test_blocks_of_one_modality_from_two_sites() -> None:
    a1, a2 = block("a", seed=1), block("a", seed=2)
    x = {"a": tabular()}
    out = LegoMerge([a1, a2])(x)
    assert out.shape == (5, 4) and torch.isfinite(out).all()


def test_incompatible_blocks_are_refused_with_reason() -> None:
    a = block("a")
    other_task = block("b", task=TaskSpec("classification", n_classes=3))
    with pytest.raises(ValueError, match="task"):
        LegoMerge([a, other_task])
    with pytest.raises(ValueError, match="fourier mode"):
        LegoMerge([a, block("b", fourier="1d")])
    with pytest.raises(ValueError, match="unknown latent merge 'x'; known: arithmetic, harmonic"):
        LegoMerge([a], latent_merge="x")


def test_merge_does_not_train_or_change_blocks() -> None:
    a, b = two_blocks()
    before = {k: v.clone() for k, v in a.state_dict().items()}
    LegoMerge([a, b])({"a": tabular(), "b": bag()})
    assert all(torch.equal(before[k], v) for k, v in a.state_dict().items())
