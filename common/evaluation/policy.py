"""How a merge chooses the recipe it publishes (``merge --recipe uniform|ensemble|auto``): a
policy by name names the candidates the sites are asked to score, and picks one of them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import ClassVar

from ..lego.recipe import EnsembleRecipe, MergeRecipe, Recipe
from ..recipe_defaults import DEFAULT_POLICY
from .candidates import Candidate
from .scores import Consortium
from .selection import (
    BlockInfo,
    Choice,
    choose,
    first_candidates,
    flat_allowed,
    hierarchy,
    publishable,
)


class MergePolicy(ABC):
    """Which candidates a merge asks the sites to score, and which one it publishes."""

    name: ClassVar[str]
    # fit stacked weights with the sites first (coordinator.stacking)
    stacks: ClassVar[bool] = False
    # also publish, for a site, what its own out-of-fold evidence favours over the choice
    per_site: ClassVar[bool] = False

    @abstractmethod
    def candidates(
        self,
        blocks: Sequence[BlockInfo],
        latent_merge: str,
        head_merge: str,
        stacked: Sequence[Candidate] = (),
        layout: str = "auto",
    ) -> list[Candidate]:
        """The candidates of the merge's job, the reference first (``stacked``: the stack's;
        ``layout``: flat, hierarchical or both, selection.HIERARCHIES)."""

    def choose(
        self,
        candidates: Sequence[Candidate],
        blocks: Sequence[BlockInfo],
        results: Mapping[str, Consortium],
        z: float,
        unanswered: bool,
    ) -> Choice:
        """The candidate to publish (``unanswered``: the sites were asked and none scored)."""
        first = candidates[0]
        suffix = "; no site reported scores" if unanswered else ""
        return Choice(first, f"{first.label}: the recipe asked for{suffix}")


class Uniform(MergePolicy):
    """The uniform LegoMerge of every block, with the operators asked for."""

    name = DEFAULT_POLICY

    def candidates(
        self,
        blocks: Sequence[BlockInfo],
        latent_merge: str,
        head_merge: str,
        stacked: Sequence[Candidate] = (),
        layout: str = "auto",
    ) -> list[Candidate]:
        ids = tuple(b.block_id for b in blocks)
        groups = () if flat_allowed(blocks, layout) else hierarchy(blocks, layout)
        recipe = Recipe(MergeRecipe.name, ids, (), latent_merge, head_merge, groups)
        return [Candidate.of("uniform", "uniform merge", recipe)]


class Ensemble(MergePolicy):
    """The (equal-weight) ensemble of every block."""

    name = "ensemble"

    def candidates(
        self,
        blocks: Sequence[BlockInfo],
        latent_merge: str,
        head_merge: str,
        stacked: Sequence[Candidate] = (),
        layout: str = "auto",
    ) -> list[Candidate]:
        groups = () if flat_allowed(blocks, layout) else hierarchy(blocks, layout)
        recipe = Recipe(EnsembleRecipe.name, tuple(b.block_id for b in blocks), groups=groups)
        return [Candidate.of("ensemble", "ensemble", recipe)]


class Auto(MergePolicy):
    """The bounded family of :func:`first_candidates` with the stacked candidates; the one the
    sites' out-of-fold evidence supports (:func:`choose`) among those that serve every patient,
    else the uniform merge."""

    name = "auto"
    stacks = True
    per_site = True

    def candidates(
        self,
        blocks: Sequence[BlockInfo],
        latent_merge: str,
        head_merge: str,
        stacked: Sequence[Candidate] = (),
        layout: str = "auto",
    ) -> list[Candidate]:
        return [
            replace(c, latent_merge=latent_merge, head_merge=head_merge)
            for c in first_candidates(blocks, stacked, layout)
        ]

    def choose(
        self,
        candidates: Sequence[Candidate],
        blocks: Sequence[BlockInfo],
        results: Mapping[str, Consortium],
        z: float,
        unanswered: bool,
    ) -> Choice:
        return choose([c for c in candidates if publishable(c, blocks)], results, z)


MERGE_POLICIES: dict[str, MergePolicy] = {p.name: p for p in (Uniform(), Ensemble(), Auto())}


def merge_policy(name: str) -> MergePolicy:
    """The policy ``name``; ValueError naming the known ones (in the order the CLI lists them)."""
    if name not in MERGE_POLICIES:
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(MERGE_POLICIES)}")
    return MERGE_POLICIES[name]
