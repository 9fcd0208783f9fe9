"""Recipes: the kinds in a registry by name, each making its model of the blocks and checking a
version's own weights; the default operators named once; a fuse keeps its parent's head."""

from __future__ import annotations

import pytest
import torch

from common.lego import LegoBlock, LegoEnsemble, LegoFuse, LegoMerge, ModalityInput
from common.lego.legomerge import merged_head
from common.lego.merge import HEAD_MERGES, LATENT_MERGES
from common.lego.recipe import BLOCK_KINDS, RECIPE_KINDS, Recipe
from common.recipe_defaults import DEFAULT_HEAD_MERGE, DEFAULT_LATENT_MERGE
from tests.factories import distinct_blocks as blocks

IDS = ("ab" * 32, "cd" * 32)


def heads(bs: list[LegoBlock]) -> list[dict[str, torch.Tensor]]:
    return [b.head.state_dict() for b in bs]


def test_kinds_are_a_registry_whose_unknown_names_list_the_known_ones() -> None:
    assert RECIPE_KINDS.names() == ["ensemble", "fuse", "merge"]
    assert BLOCK_KINDS == ("merge", "ensemble")
    assert [RECIPE_KINDS.get(k).trained for k in RECIPE_KINDS.names()] == [False, True, False]
    with pytest.raises(
        ValueError, match="unknown recipe kind 'soup'; known: ensemble, fuse, merge"
    ):
        Recipe("soup").make(blocks())
    with pytest.raises(ValueError, match="already registered"):
        RECIPE_KINDS.register("merge")(RECIPE_KINDS.get("merge"))


def test_the_defaults_are_registered_operators_and_what_a_recipe_names_by_default() -> None:
    LATENT_MERGES.get(DEFAULT_LATENT_MERGE), HEAD_MERGES.get(DEFAULT_HEAD_MERGE)
    r = Recipe("merge")
    assert (r.latent_merge, r.head_merge) == (DEFAULT_LATENT_MERGE, DEFAULT_HEAD_MERGE)
    model = r.make(blocks())
    assert isinstance(model, LegoMerge) and model.latent_merge == DEFAULT_LATENT_MERGE


def test_each_kind_makes_its_model_with_the_recipes_operators_and_weights() -> None:
    bs = blocks()
    merge = Recipe("merge", IDS, (3.0, 1.0), "arithmetic", "linear").make(bs)
    assert isinstance(merge, LegoMerge) and not merge.training
    assert (merge.latent_merge, merge.head_merge, merge.weights) == ("arithmetic", "linear", (3, 1))
    ensemble = Recipe("ensemble", IDS, (3.0, 1.0)).make(bs)
    assert isinstance(ensemble, LegoEnsemble) and ensemble.weights == (3.0, 1.0)
    fused = Recipe("fuse", IDS, (3.0, 1.0), head_merge="linear").make(bs, "weave")
    assert isinstance(fused, LegoFuse) and fused.mode == "weave"
    want = merged_head(bs, "linear", (3.0, 1.0)).state_dict()
    assert all(torch.equal(v, want[k]) for k, v in fused.head.state_dict().items())


def test_a_recipe_checks_its_weights_and_blocks_against_each_other() -> None:
    with pytest.raises(ValueError, match="recipe has 1 weights for 2 blocks"):
        Recipe("merge", IDS, (1.0,))
    with pytest.raises(ValueError, match="recipe covers 2 blocks, got 1"):
        Recipe("merge", IDS).make(blocks()[:1])


def test_operators_a_kind_does_not_use_hold_their_defaults_so_equal_models_are_equal() -> None:
    assert Recipe("ensemble", IDS, (), "arithmetic", "linear") == Recipe("ensemble", IDS)
    assert Recipe("fuse", IDS, (), "arithmetic", "linear").latent_merge == DEFAULT_LATENT_MERGE
    assert Recipe("merge", IDS, (), "arithmetic", "linear") != Recipe("merge", IDS)
    assert Recipe("soup", IDS, (), "x", "y").head_merge == "y"  # an unknown kind: as read


def test_the_fuse_of_a_recipe_keeps_blocks_weights_and_head_merge_only() -> None:
    parent = Recipe("merge", IDS, (2.0, 1.0), "arithmetic", "linear")
    assert parent.fused() == Recipe("fuse", IDS, (2.0, 1.0), DEFAULT_LATENT_MERGE, "linear")
    assert parent.fused().fused() == parent.fused()
    assert Recipe("ensemble", IDS).fused().head_merge == DEFAULT_HEAD_MERGE


@pytest.mark.parametrize("weights", [(), (3.0, 1.0)])
def test_a_merges_own_weights_from_heads_alone_restore_the_model_of_its_blocks(
    weights: tuple[float, ...],
) -> None:
    bs = blocks()
    recipe = Recipe("merge", IDS, weights, head_merge="spherical")
    state = recipe.method.own_state(recipe, heads(bs))
    assert sorted(state) == sorted(f"head.{k}" for k in bs[0].head.state_dict())
    model = recipe.make(bs)
    assert recipe.method.restore(model, state) is model
    x = {"a": ModalityInput(torch.randn(4, 5)), "b": ModalityInput(torch.randn(4, 5))}
    assert model(x).shape == (4, 4)
    state[sorted(state)[0]] += 1e-6
    with pytest.raises(ValueError, match="merged head differs from the merge of its blocks"):
        recipe.method.restore(model, state)
    other = Recipe("merge", IDS, (1.0, 9.0))  # other weights: another head
    with pytest.raises(ValueError, match="merged head differs"):
        recipe.method.restore(model, other.method.own_state(other, heads(bs)))


def test_an_ensembles_own_weights_are_its_weights_in_float64() -> None:
    bs = blocks()
    equal, weighted = Recipe("ensemble", IDS), Recipe("ensemble", IDS, (3.0, 1.0))
    assert torch.equal(
        equal.method.own_state(equal, heads(bs))["ensemble.weights"],
        torch.tensor([1.0, 1.0], dtype=torch.float64),
    )
    state = weighted.method.own_state(weighted, heads(bs))
    assert state["ensemble.weights"].dtype == torch.float64
    assert weighted.method.restore(weighted.make(bs), state) is not None
    with pytest.raises(ValueError, match="does not match its recipe"):
        weighted.method.restore(equal.make(bs), state)
    with pytest.raises(ValueError, match="does not match its recipe"):  # same values, float32
        weighted.method.restore(weighted.make(bs), {"ensemble.weights": torch.tensor([3.0, 1.0])})


def test_a_fuse_has_no_weights_of_its_blocks_alone_and_keeps_their_frozen_tensors() -> None:
    bs = blocks()
    recipe = Recipe("fuse", IDS)
    with pytest.raises(ValueError, match="come from training"):
        recipe.method.own_state(recipe, heads(bs))
    trained = recipe.make(bs)
    with torch.no_grad():
        trained.latent.add_(0.5)
    state = {k: v.clone() for k, v in trained.state_dict().items()}
    restored = recipe.method.restore(recipe.make(bs), state)
    assert torch.equal(restored.state_dict()["latent"], state["latent"]) and not restored.training
    frozen = next(k for k in state if k not in dict(trained.named_parameters()))
    state[frozen] = state[frozen] + 1.0
    with pytest.raises(ValueError, match="changed frozen tensors"):
        recipe.method.restore(recipe.make(bs), state)
    with pytest.raises(ValueError, match="do not fit the LegoFuse"):
        recipe.method.restore(recipe.make(bs), {"latent": state["latent"]})
