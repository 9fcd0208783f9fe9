"""What sites are asked to score: candidates, and the jobs that carry them.

A candidate is never a set of arbitrary weights: it is a *recipe* over accepted, signed blocks
(``merge``: a weighted LegoMerge; ``ensemble``: the weighted mean of the blocks' predictions), a
stored model ``version``, or the global model of a LegoFuse run's round (``fuse-round``: the
trainable tensors of the LegoFuse of a stored version's blocks; the frozen parts the site takes
from the blocks it verified). A site counts every distinct candidate it scores (:meth:`digest`)
against its query budget.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field

from ..lego.recipe import BLOCK_KINDS, Recipe
from ..lego.soup import check_groups
from ..recipe_defaults import DEFAULT_HEAD_MERGE, DEFAULT_LATENT_MERGE
from .scores import CandidateScore
from .stacking import MAX_COMPONENTS, MAX_POINTS, StackStats

KINDS = (*BLOCK_KINDS, "version", "fuse-round")  # a recipe over blocks, a version, a fuse round
PURPOSES = ("merge", "fuse", "versions", "stack")
# the decline of a site whose evaluation is switched off ([evaluation] enabled = false): until it
# answers again, the coordinator waits for it in no job of the task
SWITCHED_OFF = "disabled"
HEX = set("0123456789abcdef")
MAX_FOLDS = 50  # fold runs of a fuse-round candidate, at most


@dataclass(frozen=True)
class Candidate:
    candidate_id: str  # unique within its job
    kind: str  # one of KINDS: a recipe kind of BLOCK_KINDS, "version" or "fuse-round"
    label: str = ""  # for people: "uniform", "ensemble", "hosp-a/genes alone", "round 3"
    block_ids: tuple[str, ...] = ()  # merge / ensemble: the blocks, by id
    weights: tuple[float, ...] = ()  # merge / ensemble: one > 0 per block; empty = equal
    latent_merge: str = DEFAULT_LATENT_MERGE
    head_merge: str = DEFAULT_HEAD_MERGE
    model_id: str = ""  # version: the version; fuse-round: the version the run started from
    # fuse-round: the round's packed trainable tensors (fetched by the site)
    weights_sha256: str = ""
    weights_size: int = 0
    fuse_mode: str = ""  # fuse-round: "stack" or "weave"
    layout: str = ""  # fuse-round: digest of the tensors' names, shapes and dtypes
    # fuse-round: fold runs whose weights follow the full run's (sites score out of fold with them)
    folds: int = 0
    # merge / ensemble: each block's modality block (hierarchical Lego); empty: flat
    groups: tuple[int, ...] = ()

    @classmethod
    def of(cls, candidate_id: str, label: str, recipe: Recipe) -> Candidate:
        """A recipe over blocks as a candidate (its fields travel flat, as the wire has them)."""
        return cls(
            candidate_id,
            recipe.kind,
            label,
            recipe.block_ids,
            recipe.weights,
            recipe.latent_merge,
            recipe.head_merge,
            groups=recipe.groups,
        )

    @property
    def is_recipe(self) -> bool:
        """A recipe over blocks (made of them alone), not a stored version or a fuse round."""
        return self.kind in BLOCK_KINDS

    @property
    def recipe(self) -> Recipe:
        """The recipe a merge or ensemble candidate is; ValueError for another candidate."""
        if not self.is_recipe:
            raise ValueError(f"candidate {self.candidate_id!r} is a {self.kind}, not a recipe")
        return Recipe(
            self.kind, self.block_ids, self.weights, self.latent_merge, self.head_merge, self.groups
        )

    def digest(self) -> str:
        """What makes two candidates the same query: everything but the id and the label."""
        body = {k: v for k, v in asdict(self).items() if k not in ("candidate_id", "label")}
        if not self.groups:  # flat: the digest it had before groups existed
            del body["groups"]
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

    def problem(self) -> str | None:
        """Why this cannot be a candidate, or None."""
        if self.kind not in KINDS:
            return (
                f"candidate {self.candidate_id!r}: unknown kind {self.kind!r}; known: "
                f"{', '.join(KINDS)}"
            )
        if self.is_recipe:
            if not self.block_ids:
                return f"candidate {self.candidate_id!r}: a {self.kind} needs at least one block"
            if len(set(self.block_ids)) != len(self.block_ids) or any(
                len(b) != 64 or set(b) - HEX for b in self.block_ids
            ):
                return (
                    f"candidate {self.candidate_id!r}: block ids must be distinct sha256 hex "
                    "digests"
                )
            if self.weights and (
                len(self.weights) != len(self.block_ids)
                or not all(math.isfinite(w) and w > 0 for w in self.weights)
            ):
                return (
                    f"candidate {self.candidate_id!r}: weights must be {len(self.block_ids)} "
                    "finite numbers > 0"
                )
            grouping = check_groups(self.groups, len(self.block_ids)) if self.groups else None
            if grouping:
                return f"candidate {self.candidate_id!r}: groups: {grouping}"
        elif self.groups:
            return f"candidate {self.candidate_id!r}: only a merge or an ensemble has groups"
        elif not self.model_id:
            return f"candidate {self.candidate_id!r}: a {self.kind} candidate names a model version"
        if self.kind == "fuse-round" and (
            len(self.weights_sha256) != 64
            or self.fuse_mode not in ("stack", "weave")
            or self.weights_size <= 0
            or not self.layout
        ):
            return (
                f"candidate {self.candidate_id!r}: a fuse-round candidate needs its weights' "
                "sha256 and size, mode and layout"
            )
        if (
            self.folds < 0
            or self.folds == 1
            or self.folds > MAX_FOLDS
            or (self.folds and self.kind != "fuse-round")
            or self.weights_size % (4 * (1 + self.folds))
        ):
            return (
                f"candidate {self.candidate_id!r}: folds {self.folds} cannot be (a "
                f"fuse-round's fold runs: 0 or 2..{MAX_FOLDS})"
            )
        return None


@dataclass(frozen=True)
class EvaluationJob:
    """Candidates the sites are asked to score; the first is the reference that every other
    candidate's difference (and its variance) is measured against."""

    job_id: str
    task_id: str
    purpose: str  # one of PURPOSES
    candidates: tuple[Candidate, ...]
    created_at: str = ""
    deadline: str = ""  # when the coordinator stops waiting (ISO time)
    # purpose "stack": weight vectors (one weight per candidate) at which sites send their sums
    points: tuple[tuple[float, ...], ...] = ()
    # the sites asked (the coordinator's panel, [evaluation] sites_per_job); empty: every site
    sites: tuple[str, ...] = ()

    def asks(self, site: str) -> bool:
        return not self.sites or site in self.sites

    def candidate(self, candidate_id: str) -> Candidate | None:
        return next((c for c in self.candidates if c.candidate_id == candidate_id), None)

    def problem(self) -> str | None:
        """Why the job cannot be (its candidates aside), or None: a stack job's components are
        recipes over blocks, at most MAX_COMPONENTS, with 1..MAX_POINTS points of one finite
        weight each; other jobs carry no points."""
        if self.purpose != "stack":
            return "only a stack job carries points" if self.points else None
        if not 1 <= len(self.candidates) <= MAX_COMPONENTS or not all(
            c.is_recipe for c in self.candidates
        ):
            return (
                f"a stack job has 1 to {MAX_COMPONENTS} candidates, each a recipe over blocks "
                "(merge or ensemble)"
            )
        if not 1 <= len(self.points) <= MAX_POINTS or any(
            len(p) != len(self.candidates) or not all(math.isfinite(w) for w in p)
            for p in self.points
        ):
            return (
                f"a stack job has 1 to {MAX_POINTS} points of {len(self.candidates)} finite "
                "weights each"
            )
        return None


@dataclass(frozen=True)
class SiteReport:
    """One site's answer to one job: a score per candidate it could score (others are left out:
    too few of its validation patients have the modalities), its sums at a stack job's points,
    or ``declined`` with the reason's kind (too few validation patients or events, the query
    budget, evaluation switched off)."""

    job_id: str
    scores: dict[str, CandidateScore] = field(default_factory=dict)  # candidate id -> its score
    declined: str = ""
    stack: tuple[StackStats, ...] = ()  # a stack job's answer: sums at its points


@dataclass(frozen=True)
class JobStatus:
    """A job as an operator sees it: who received it and who answered."""

    job: EvaluationJob
    state: str  # "open" or "closed"
    delivered: tuple[str, ...] = ()
    reported: tuple[str, ...] = ()
    declined: tuple[str, ...] = ()
