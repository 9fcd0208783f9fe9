"""A recipe (how a model is made of trained blocks) and its kinds, in a registry by name.

One value from the command line to the model card: a merge policy chooses a recipe, the model
file records it (common.artifacts.recipefile), and every site rebuilds the model from the recipe
and the blocks it verified. A recipe kind (a small class keyed by name, like the merge operators
in common.lego.merge) makes the model and the version's own weights, and checks those weights
when a version is loaded.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

import torch

from ..recipe_defaults import DEFAULT_HEAD_MERGE, DEFAULT_LATENT_MERGE
from .block import LegoBlock
from .ensemble import LegoEnsemble
from .legofuse import FUSE_MODES, LegoFuse
from .legomerge import LegoMerge
from .merge import HEAD_MERGES, Registry
from .soup import check_groups, group_weights, grouped_heads, members, soup

RecipeModel = LegoMerge | LegoEnsemble | LegoFuse
# a grouped recipe's modality block of the blocks at these positions, averaged with these shares
ModalityBlock = Callable[[Sequence[int], Sequence[float]], LegoBlock]
State = dict[str, torch.Tensor]
# The operators a recipe names, and what they hold in a recipe whose kind does not use them.
UNUSED_DEFAULTS = {"latent_merge": DEFAULT_LATENT_MERGE, "head_merge": DEFAULT_HEAD_MERGE}


@dataclass(frozen=True)
class Recipe:
    """How a model is made of blocks: the kind (a name in :data:`RECIPE_KINDS`), the blocks it
    covers (by id, in order; empty for blocks in memory that have none), their weights, and the
    latent and head merge operators. A kind uses the operators it needs (an ensemble neither, a
    fuse the head merge of its starting head); the others hold their defaults, so two recipes
    that make the same model are equal, and a recipe equals what its model file records.

    ``groups`` (hierarchical Lego, common.lego.soup): one index per block; the blocks of a group
    (one modality) are first averaged into one modality block (within the group, by their
    weights), and the kind makes its model of the modality blocks, each weighing the mean of its
    blocks' weights. Empty: flat, every block a block of the model."""

    kind: str
    block_ids: tuple[str, ...] = ()
    weights: tuple[float, ...] = ()  # one > 0 per block; empty: equal
    latent_merge: str = DEFAULT_LATENT_MERGE
    head_merge: str = DEFAULT_HEAD_MERGE
    groups: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.weights and self.block_ids and len(self.weights) != len(self.block_ids):
            raise ValueError(
                f"recipe has {len(self.weights)} weights for {len(self.block_ids)} blocks"
            )
        if self.groups:
            n = len(self.block_ids) or len(self.weights) or len(self.groups)
            problem = check_groups(self.groups, n)
            if problem:
                raise ValueError(f"recipe groups: {problem}")
        if self.kind in RECIPE_KINDS.names():  # a kind this code does not know: kept as read
            used = RECIPE_KINDS.get(self.kind).records
            for name, default in UNUSED_DEFAULTS.items():
                if name not in used:
                    object.__setattr__(self, name, default)

    @property
    def method(self) -> RecipeKind:
        """The kind's implementation; ValueError naming the known kinds for an unknown one."""
        return RECIPE_KINDS.get(self.kind)

    @property
    def block_weights(self) -> tuple[float, ...] | None:
        """The weights as the models take them: None for equal."""
        return self.weights or None

    def fused(self) -> Recipe:
        """The recipe of a LegoFuse run that starts from this one: its blocks, weights and head
        merge (the latent merge plays no part in LegoFuse)."""
        return Recipe(
            FuseRecipe.name,
            self.block_ids,
            self.weights,
            head_merge=self.head_merge,
            groups=self.groups,
        )

    def over_groups(self, weights: tuple[float, ...] | None) -> Recipe:
        """The flat recipe the kind applies to the modality blocks (``weights``: theirs)."""
        return replace(self, block_ids=(), weights=weights or (), groups=())

    def make(self, blocks: Sequence[LegoBlock], mode: str = FUSE_MODES[0]) -> RecipeModel:
        """The model this recipe makes of ``blocks`` (a fuse: untrained, in fuse ``mode``); with
        groups, of their modality blocks (the model's ``members`` are ``blocks``)."""
        if self.block_ids and len(self.block_ids) != len(blocks):
            raise ValueError(f"recipe covers {len(self.block_ids)} blocks, got {len(blocks)}")
        if not self.groups:
            return self.method.model(self, blocks, mode)
        model = self.make_of(lambda idx, share: soup([blocks[i] for i in idx], share), mode)
        model.members = list(blocks)
        return model

    def make_of(self, modality_block: ModalityBlock, mode: str = FUSE_MODES[0]) -> RecipeModel:
        """A grouped recipe's model of the modality blocks ``modality_block(positions, shares)``
        makes (a site that keeps them between jobs: site_client.evaluate); ``members`` stays
        empty."""
        if not self.groups:
            raise ValueError("a flat recipe is made of its blocks")
        inner, weights = group_weights(self.groups, self.block_weights)
        soups = [
            modality_block(idx, share)
            for idx, share in zip(members(self.groups), inner, strict=True)
        ]
        model = self.method.model(self.over_groups(weights), soups, mode)
        model.members = []
        return model

    def own_state(self, heads: Sequence[Mapping[str, torch.Tensor]]) -> State:
        """The version's own weights from its blocks' heads alone (with groups: of the modality
        blocks' heads, as :meth:`make` makes them)."""
        if not self.groups:
            return self.method.own_state(self, heads)
        soups, weights = grouped_heads(heads, self.groups, self.block_weights)
        return self.method.own_state(self.over_groups(weights), soups)


class RecipeKind(ABC):
    """One way of making a model of blocks. ``records``: the recipe's fields a version of this
    kind writes into its model file; ``trained``: its weights come from training rounds, so it is
    not made of its blocks alone (and LegoFuse rounds do not start from it)."""

    name: ClassVar[str]
    paper: ClassVar[str]
    records: ClassVar[tuple[str, ...]]
    trained: ClassVar[bool] = False

    @abstractmethod
    def model(self, recipe: Recipe, blocks: Sequence[LegoBlock], mode: str) -> RecipeModel:
        """The model of ``blocks`` (``mode``: a fuse's; the others ignore it)."""

    def own_state(self, recipe: Recipe, heads: Sequence[Mapping[str, torch.Tensor]]) -> State:
        """The version's own weights from its blocks' heads alone (a merge service need not
        rebuild the blocks)."""
        raise ValueError(f"a {self.name} version's weights come from training, not from its blocks")

    @abstractmethod
    def restore(self, model: RecipeModel, state: State) -> RecipeModel:
        """``model`` (made of the version's blocks) with the version's own weights ``state``;
        ValueError naming what does not match."""


RECIPE_KINDS: Registry[RecipeKind] = Registry("recipe kind")


def _register(cls: type[RecipeKind]) -> type[RecipeKind]:
    RECIPE_KINDS.register(cls.name)(cls())
    return cls


@_register
class MergeRecipe(RecipeKind):
    """LegoMerge: merged latents and a merged head, no training; the version's own weights are
    the merged head (``head.*``), recomputed bit for bit by every site."""

    name = "merge"
    paper = "MM-Lego, Sec. 3.2"
    records = ("latent_merge", "head_merge", "weights", "groups")

    def model(self, recipe: Recipe, blocks: Sequence[LegoBlock], mode: str) -> RecipeModel:
        return LegoMerge(
            list(blocks), recipe.latent_merge, recipe.head_merge, recipe.block_weights
        ).eval()

    def own_state(self, recipe: Recipe, heads: Sequence[Mapping[str, torch.Tensor]]) -> State:
        merge, weights = HEAD_MERGES.get(recipe.head_merge), recipe.block_weights
        merged = merge(list(heads)) if weights is None else merge(list(heads), list(weights))
        return _head_state(merged)

    def restore(self, model: RecipeModel, state: State) -> RecipeModel:
        assert isinstance(model, LegoMerge), type(model)
        if not _same(state, _head_state(model.head.state_dict())):
            raise ValueError("the version's merged head differs from the merge of its blocks")
        return model


@_register
class EnsembleRecipe(RecipeKind):
    """The (weighted) mean of the blocks' predictions; the version's own weights are its
    per-block weights (``ensemble.weights``, float64; equal: ones)."""

    name = "ensemble"
    paper = "a baseline beside MM-Lego (docs/EVALUATION.md)"
    records = ("weights", "groups")

    def model(self, recipe: Recipe, blocks: Sequence[LegoBlock], mode: str) -> RecipeModel:
        return LegoEnsemble(list(blocks), recipe.block_weights).eval()

    def own_state(self, recipe: Recipe, heads: Sequence[Mapping[str, torch.Tensor]]) -> State:
        weights = recipe.weights or (1.0,) * len(heads)
        return {"ensemble.weights": torch.tensor(weights, dtype=torch.float64)}

    def restore(self, model: RecipeModel, state: State) -> RecipeModel:
        assert isinstance(model, LegoEnsemble), type(model)
        weights = model.weights or (1.0,) * len(model.block_list)
        if not _same(state, {"ensemble.weights": torch.tensor(weights, dtype=torch.float64)}):
            raise ValueError("the ensemble's weights file does not match its recipe")
        return model


@_register
class FuseRecipe(RecipeKind):
    """LegoFuse: the blocks stacked or woven and fine-tuned in federated rounds, from the head of
    the version it started from; the version's own weights are the whole fused model's."""

    name = "fuse"
    paper = "MM-Lego, Sec. 3.3"
    records = ("head_merge", "weights", "groups")
    trained = True

    def model(self, recipe: Recipe, blocks: Sequence[LegoBlock], mode: str) -> RecipeModel:
        return LegoFuse(
            list(blocks),
            mode=mode,  # type: ignore[arg-type]
            head_merge=recipe.head_merge,
            head_weights=recipe.block_weights,
        )

    def restore(self, model: RecipeModel, state: State) -> RecipeModel:
        trained = {name for name, _ in model.named_parameters()}  # once: a set per key was slow
        frozen = {k: v.clone() for k, v in model.state_dict().items() if k not in trained}
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ValueError(
                f"fused weights do not fit the LegoFuse of the version's blocks: {exc}"
            ) from None
        now = model.state_dict()
        changed = [k for k, v in frozen.items() if not torch.equal(v, now[k])]
        if changed:  # rounds train the parameters only; the blocks' input scaling must be theirs
            raise ValueError(
                f"the fused version changed frozen tensors of its blocks ({changed[0]}, ...)"
            )
        return model.eval()


# Kinds made of their blocks alone, in the order people read them: what a merge may publish.
BLOCK_KINDS: tuple[str, ...] = (MergeRecipe.name, EnsembleRecipe.name)


def _head_state(head: Mapping[str, torch.Tensor]) -> State:
    return {f"head.{k}": v.detach().to("cpu", torch.float32).contiguous() for k, v in head.items()}


def _same(a: State, b: State) -> bool:
    return sorted(a) == sorted(b) and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in b
    )
