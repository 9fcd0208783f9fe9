"""Hierarchical Lego: a modality's blocks averaged into one modality block (their input scaling
folded in exactly), recipes with groups making their model of the modality blocks, their own
weights computed from heads alone bit for bit as the sites make them, and the model file and the
wire keeping the groups."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load as st_load

from common.artifacts.modelfile import version_weights
from common.artifacts.recipefile import read_recipe, write_recipe
from common.evaluation.candidates import Candidate
from common.lego import LegoFuse, LegoMerge, ModalityInput
from common.lego.block import LegoBlock
from common.lego.recipe import Recipe
from common.lego.soup import check_groups, modality_groups, raw_state, shifted, soup, soup_memo
from common.serde import candidate_from_pb, candidate_to_pb
from tests.factories import bag, block, tabular

IDS = tuple(c * 64 for c in "abcde")


def trained(modality: str = "a", kind: str = "tabular", seed: int = 0, f: int = 5) -> LegoBlock:
    """A block of the shared initialisation moved a little, as training moves it, with its own
    site's input scaling."""
    b = block(modality=modality, kind=kind, in_features=f, seed=0)  # one task: one start
    g = torch.Generator().manual_seed(100 + seed)
    with torch.no_grad():
        for p in b.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    b.set_input_scaling(torch.randn(f, generator=g), 0.5 + torch.rand(f, generator=g))
    return b.eval()


def inputs(seed: int = 1) -> dict[str, ModalityInput]:
    return {"a": tabular(b=7, f=5, seed=seed), "b": bag(b=7, f=4, seed=seed + 1)}


def as_loaded(b: LegoBlock) -> LegoBlock:
    """A block holding ``state`` (folded input scaling)."""
    out = block(
        modality=b.modality, kind=b.config.encoder.kind, in_features=b.config.encoder.in_features
    )
    out.load_state_dict(raw_state(b))
    return out.eval()


@pytest.mark.parametrize("kind,f", [("tabular", 5), ("bag", 4)])
def test_folding_the_input_scaling_into_the_first_layer_keeps_the_function(
    kind: str, f: int
) -> None:
    b = trained("a" if kind == "tabular" else "b", kind, f=f)
    x = inputs()["a" if kind == "tabular" else "b"]
    folded = as_loaded(b)
    assert torch.equal(folded.scaling.mean, torch.zeros(f))
    assert torch.allclose(folded(x.x, x.mask), b(x.x, x.mask), atol=1e-5)


def test_a_soup_of_copies_is_the_block_and_a_soup_lies_between_its_blocks() -> None:
    b = trained(seed=1)
    x = inputs()["a"]
    assert torch.allclose(soup([b, b, b])(x.x), b(x.x), atol=1e-5)
    assert soup([b]) is b
    one, two = trained(seed=1), trained(seed=2)
    mid = soup([one, two], [0.25, 0.75])
    p1, p2 = raw_state(one)["latent"], raw_state(two)["latent"]
    assert torch.allclose(mid.latent, 0.25 * p1 + 0.75 * p2, atol=1e-6)
    assert not mid.training and not any(p is q for p in mid.parameters() for q in one.parameters())


def test_blocks_that_cannot_share_a_modality_block_are_named() -> None:
    with pytest.raises(ValueError, match="blocks of one modality; block 1 is b"):
        soup([trained("a"), trained("b", "bag", f=4)])
    wide = block(modality="a", in_features=6)
    with pytest.raises(ValueError, match="another encoder, size or initialisation"):
        soup([trained("a"), wide])
    other_init = block(modality="a", init_seed=8)
    with pytest.raises(ValueError, match="another encoder, size or initialisation"):
        soup([trained("a"), other_init])


def test_groups_are_numbered_in_order_of_first_appearance() -> None:
    assert modality_groups(["b", "a", "b", "c", "a"]) == (0, 1, 0, 2, 1)
    assert check_groups((0, 1, 0), 3) is None
    assert "numbered" in str(check_groups((1, 0), 2))
    assert "3 group indices for 2 blocks" == check_groups((0, 0, 1), 2)
    with pytest.raises(ValueError, match="recipe groups"):
        Recipe("merge", IDS[:2], groups=(0, 2))


def blocks5() -> list[LegoBlock]:
    return [
        trained("a", seed=1),
        trained("b", "bag", seed=2, f=4),
        trained("a", seed=3),
        trained("a", seed=4),
        trained("b", "bag", seed=5, f=4),
    ]


@pytest.mark.parametrize("weights", [(), (1.0, 2.0, 3.0, 1.0, 0.5)])
def test_a_grouped_merge_is_the_merge_of_its_modality_blocks(weights: tuple[float, ...]) -> None:
    bs = blocks5()
    groups = modality_groups([b.modality for b in bs])
    r = Recipe("merge", IDS, weights, groups=groups)
    model = r.make(bs)
    assert isinstance(model, LegoMerge) and len(model.block_list) == 2 and model.members == bs
    w = list(weights) or [1.0] * 5
    a = soup([bs[0], bs[2], bs[3]], [w[i] / (w[0] + w[2] + w[3]) for i in (0, 2, 3)])
    b = soup([bs[1], bs[4]], [w[i] / (w[1] + w[4]) for i in (1, 4)])
    outer = None if not weights else ((w[0] + w[2] + w[3]) / 3, (w[1] + w[4]) / 2)
    want = LegoMerge([a, b], weights=outer)
    x = inputs()
    assert torch.allclose(model(x), want(x), atol=1e-6)
    # the coordinator's own weights from heads alone: bit for bit the head every site makes
    own = st_load(version_weights(r, [b.head.state_dict() for b in bs]))
    assert all(torch.equal(own[f"head.{k}"], v) for k, v in model.head.state_dict().items())
    assert r.make(bs).head.state_dict().keys() == model.head.state_dict().keys()


def test_a_grouped_fuse_trains_the_modality_blocks_only() -> None:
    bs = blocks5()
    r = Recipe("merge", IDS, groups=modality_groups([b.modality for b in bs]))
    fused = r.fused().make(bs, "stack")
    assert isinstance(fused, LegoFuse) and len(fused.encoders) == 2 and fused.members == bs
    flat = Recipe("merge", IDS).fused().make(bs, "stack")
    assert sum(p.numel() for p in fused.parameters()) * 2 < sum(
        p.numel() for p in flat.parameters()
    )
    assert r.fused().groups == r.groups


def test_the_model_file_and_the_wire_keep_the_groups() -> None:
    r = Recipe("ensemble", IDS, (1.0, 2.0, 1.0, 1.0, 1.0), groups=(0, 1, 0, 0, 1))
    params = write_recipe(r, {"candidate": "x"})
    assert params["groups"] == "[0, 1, 0, 0, 1]"
    assert read_recipe("ensemble", IDS, params) == (r, {"candidate": "x"})
    flat = write_recipe(Recipe("merge", IDS), {})
    assert "groups" not in flat  # a flat recipe's file is what it was before groups existed
    with pytest.raises(ValueError, match="not a JSON list of integers"):
        read_recipe("merge", IDS, {"groups": "[0, 1.5]"})
    c = Candidate.of(
        "soup", "uniform merge of modality blocks", Recipe("merge", IDS, groups=(0, 1, 0, 0, 1))
    )
    assert candidate_from_pb(candidate_to_pb(c)) == c and c.recipe.groups == (0, 1, 0, 0, 1)
    assert c.digest() != Candidate.of("flat", "", Recipe("merge", IDS)).digest()
    bad = Candidate("x", "merge", "", IDS[:2], groups=(1, 0))
    with pytest.raises(ValueError, match="groups: group indices"):
        candidate_from_pb(candidate_to_pb(bad))


def test_a_jobs_candidates_share_their_modality_blocks() -> None:
    bs = blocks5()
    r = Recipe("merge", IDS, groups=modality_groups([b.modality for b in bs]))
    with soup_memo():
        one, two = r.make(bs), Recipe("ensemble", IDS, groups=r.groups).make(bs)
        assert one.block_list[0] is two.block_list[0]
    assert r.make(bs).block_list[0] is not one.block_list[0]


def test_a_block_shifted_into_a_modality_block_is_the_average_made_afresh() -> None:
    """A site's fold copy replaces its released block in a kept modality block linearly: the same
    weights (to float precision) and outputs as the average of the copy and the other blocks."""
    a, b, c, copy = (trained(seed=s) for s in (0, 1, 2, 3))
    share = (0.5, 0.3, 0.2)
    got = shifted(soup([a, b, c], share), share[1], b, copy)
    want = soup([a, copy, c], share)
    for name, w in want.state_dict().items():
        assert torch.allclose(got.state_dict()[name], w, atol=1e-6), name
    x = inputs()["a"]
    assert torch.allclose(got(x.x), want(x.x), atol=1e-5)
