"""Choosing what to publish on the consortium's validation data, robustly to its noise.

Validation sets here are tens of patients per site; a choice that follows their noise makes the
model worse (a greedy forward selection over the blocks raised the validation metric every time
and lowered the test metric in two of three scenarios). So the rule is conservative:

- a *small, fixed* family of candidates, each built from every block (so each scores the same
  patients as the uniform merge): the uniform merge (the reference), the ensemble, the
  modality-balanced merge and ensemble (when modalities have different numbers of blocks), a
  merge weighted by the blocks' training patients, shrunk half-way toward equal weights, and the
  bounded recipes: the ensemble and merge of each modality's PER_MODALITY largest blocks, and the
  hierarchical merge and ensemble (each modality's blocks, its SOUP_UP_TO largest at most,
  averaged into one modality block first); beyond FLAT_UP_TO blocks the bounded recipes replace
  the flat ones, the ensemble of the largest blocks the reference (chosen on development seeds:
  docs/RESULTS.md section 11b). (A second job weighting blocks by their own consortium
  validation metric, :func:`quality_candidates`, was measured by bench/selection.py and is not
  used by ``coordinator merge``: it added almost nothing for a second round of queries.)
- a candidate replaces the uniform merge only when its gain over it exceeds ``z`` standard errors
  of that gain (the sites' jackknife variances of the paired difference, combined): the
  candidate with the largest lower bound ``gain - z * se`` wins if that bound is above zero.

The family is bounded whatever the number of blocks (a few dozen candidates at most), so every
site can score it within its query budget at hundreds of blocks: stacked candidates (weights
fitted on out-of-fold predictions, coordinator.stacking) join it, and every block alone only up
to MAX_ALONE blocks (beyond, each modality's blocks alone). A subset of the blocks is published
for the whole consortium when it covers every modality and the evidence says so
(:func:`publishable`); one that covers fewer modalities (a block alone) serves only some sites'
patients, and is published for a site whose own out-of-fold evidence says so
(coordinator.merging).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..lego.soup import modality_groups
from .candidates import Candidate
from .scores import CandidateScore, Consortium

Z = 1.0  # standard errors a gain must exceed before the uniform merge is left
SHRINK = 0.5  # data-derived weights: w = (1 - SHRINK) * 1 + SHRINK * w / mean(w)


@dataclass(frozen=True)
class BlockInfo:
    """What the coordinator knows of a block before anyone scores it."""

    block_id: str
    site: str
    modality: str
    # from the block's manifest (withheld below the site's minimum cell size)
    n_train: int | None = None


def _mean_one(w: Sequence[float]) -> tuple[float, ...]:
    mean = sum(w) / len(w)
    return tuple(round(x / mean, 6) for x in w)


def shrunk(w: Sequence[float], amount: float = SHRINK) -> tuple[float, ...]:
    """``w`` rescaled to mean 1 and pulled ``1 - amount`` of the way back to equal weights."""
    return _mean_one([(1 - amount) + amount * x for x in _mean_one(w)])


MAX_ALONE = 12  # up to this many blocks, each is also a candidate alone
# up to this many blocks, the flat recipes are candidates; beyond, only hierarchical ones (each
# modality's blocks averaged into one modality block first: common.lego.soup), so that what a
# site rebuilds and runs per candidate depends on the modalities, not on the blocks
FLAT_UP_TO = 64
# a bounded alternative to averaging a modality's blocks: the ensemble (and merge) of its largest
# blocks, at most this many per modality (a site runs M x PER_MODALITY blocks whatever N is; on
# development seeds the ensemble's lead over the flat merge grew with the blocks it kept, 4, 8, 16
# per modality up to all of a 50-site consortium's 25-30: docs/RESULTS.md section 11b)
PER_MODALITY = 32
# a modality block averages at most this many of its modality's blocks, its largest: beyond, every
# scoring site would download and verify every block of the consortium to make one (1,010 at
# 1,000 sites: the merge's first job closed at its deadline; docs/RESULTS.md section 11b)
SOUP_UP_TO = 64


# which recipes a merge considers: "auto" (both up to FLAT_UP_TO blocks, hierarchical beyond),
# "flat" (every block a block of the model), "modality" (hierarchical only)
HIERARCHIES = ("auto", "flat", "modality")
HIERARCHY_HELP = (
    "auto (flat and bounded recipes up to 64 blocks, bounded only beyond), flat, or modality "
    "(bounded only: each modality's blocks, its 64 largest at most, averaged into one modality "
    "block, or its 32 largest blocks)."
)


def check_hierarchy(name: str) -> str:
    """``name`` if it is one of HIERARCHIES (empty: auto); ValueError naming them."""
    if (name or "auto") not in HIERARCHIES:
        raise ValueError(f"unknown hierarchy {name!r}; known: {', '.join(HIERARCHIES)}")
    return name or "auto"


def hierarchy(blocks: Sequence[BlockInfo], name: str = "auto") -> tuple[int, ...]:
    """The modality groups of ``blocks`` the hierarchical recipes use (hierarchical Lego), or ()
    when there are none: no modality has two blocks (nothing to average), or ``name`` is flat."""
    groups = modality_groups([b.modality for b in blocks])
    return groups if len(set(groups)) < len(groups) and check_hierarchy(name) != "flat" else ()


def flat_allowed(blocks: Sequence[BlockInfo], name: str = "auto") -> bool:
    """Whether the flat recipes over every block are candidates: asked for, or (auto) few
    blocks; and whenever there is nothing to average."""
    if not hierarchy(blocks, name):
        return True
    return check_hierarchy(name) == "auto" and len(blocks) <= FLAT_UP_TO


def panel(sites: Mapping[str, tuple[frozenset[str], int]], n: int) -> tuple[str, ...]:
    """At most ``n`` of ``sites`` (name -> the task's modalities it holds, its patients), sorted:
    stratified by the modalities held, each stratum's share in proportion to its sites (largest
    remainders; every stratum one at least while ``n`` allows), the largest sites of a stratum
    first (ties by name). Empty (every site) when ``n`` is 0 or at least their number."""
    if not n or n >= len(sites):
        return ()
    strata: dict[frozenset[str], list[str]] = {}
    for name, (mods, _) in sorted(sites.items()):
        strata.setdefault(mods, []).append(name)
    for names in strata.values():
        names.sort(key=lambda s: (-sites[s][1], s))
    order = sorted(strata, key=lambda m: (-len(strata[m]), sorted(m)))
    quota = {m: 0 for m in order}
    for m in order[:n]:  # one per stratum first, the largest strata first
        quota[m] = 1
    left = n - sum(quota.values())
    if left > 0:
        share = {m: left * len(strata[m]) / len(sites) for m in order}
        for m in order:
            quota[m] += int(share[m])
        rest = n - sum(quota.values())
        for m in sorted(order, key=lambda m: -(share[m] - int(share[m])))[:rest]:
            quota[m] += 1
    chosen = [s for m in order for s in strata[m][: min(quota[m], len(strata[m]))]]
    spare = [s for m in order for s in strata[m][quota[m] :]]
    return tuple(sorted(chosen + spare[: n - len(chosen)]))


def largest_of(blocks: Sequence[BlockInfo], most: int) -> list[BlockInfo]:
    """At most ``most`` blocks of each modality of ``blocks``: its largest (by training patients;
    unknown counts last, ties by site), modality by modality in name order."""
    return [
        b
        for m in sorted({b.modality for b in blocks})
        for b in sorted(
            (b for b in blocks if b.modality == m), key=lambda b: (-(b.n_train or 0), b.site)
        )[:most]
    ]


def largest_candidates(blocks: Sequence[BlockInfo], flat: bool = False) -> list[Candidate]:
    """The ensemble (first) and the merge of the PER_MODALITY largest blocks of each modality;
    none when they are every block and the flat recipes (``flat``) hold them already."""
    mine = tuple(b.block_id for b in largest_of(blocks, PER_MODALITY))
    every = len(mine) == len(blocks)
    if every and flat:
        return []
    label = (
        f"every block ({PER_MODALITY} or fewer of each modality)"
        if every
        else f"the {PER_MODALITY} largest blocks of each modality"
    )
    return [
        Candidate("largest-ensemble", "ensemble", f"ensemble of {label}", mine),
        Candidate("largest", "merge", f"merge of {label}", mine),
    ]


def soup_blocks(blocks: Sequence[BlockInfo]) -> list[BlockInfo]:
    """The blocks the modality blocks of a bounded recipe average: every block, or beyond
    SOUP_UP_TO of one modality its SOUP_UP_TO largest (what a scoring site downloads, verifies and
    averages stays bounded whatever the number of blocks)."""
    counts = [sum(b.modality == m for b in blocks) for m in {b.modality for b in blocks}]
    return list(blocks) if max(counts, default=0) <= SOUP_UP_TO else largest_of(blocks, SOUP_UP_TO)


def _by_size(blocks: Sequence[BlockInfo]) -> tuple[float, ...] | None:
    """Weights by the blocks' training patients (square root, shrunk half-way to equal), or None
    when a count is unknown or all are equal."""
    sizes = [b.n_train for b in blocks]
    if all(n is not None and n > 0 for n in sizes) and len(set(sizes)) > 1:
        return shrunk([math.sqrt(float(n)) for n in sizes])  # type: ignore[arg-type]
    return None


def first_candidates(
    blocks: Sequence[BlockInfo], stacked: Sequence[Candidate] = (), layout: str = "auto"
) -> list[Candidate]:
    """The merge's job, bounded whatever the number of blocks. Flat (up to FLAT_UP_TO blocks):
    the uniform merge (the reference), the ensemble, the balanced and size-weighted variants
    where they differ from uniform. Bounded (where a modality has several blocks): the ensemble
    and the merge of the PER_MODALITY largest blocks of each modality (the ensemble is the
    reference when the flat ones are left out), the merge and the ensemble of the modality blocks
    (hierarchical Lego), and their size-weighted variant. Then the ``stacked`` candidates
    (coordinator.stacking), each modality's blocks alone (when there are several modalities), and
    every block alone (up to MAX_ALONE blocks). ``layout``: one of HIERARCHIES."""
    ids = tuple(b.block_id for b in blocks)
    groups, flat = hierarchy(blocks, layout), flat_allowed(blocks, layout)
    per_modality = {m: sum(b.modality == m for b in blocks) for m in {b.modality for b in blocks}}
    out = []
    if flat:
        out += [
            Candidate("uniform", "merge", "uniform merge", ids),
            Candidate("ensemble", "ensemble", "ensemble", ids),
        ]
        if len(set(per_modality.values())) > 1:
            balanced = _mean_one([1.0 / per_modality[b.modality] for b in blocks])
            out += [
                Candidate("balanced", "merge", "modality-balanced merge", ids, balanced),
                Candidate(
                    "balanced-ensemble", "ensemble", "modality-balanced ensemble", ids, balanced
                ),
            ]
        by_size = _by_size(blocks)
        if by_size is not None:
            out.append(
                Candidate("size", "merge", "merge weighted by training patients", ids, by_size)
            )
    soup = soup_blocks(blocks) if groups else list(blocks)
    if groups:  # the bounded family: what a site runs depends on M, not on N
        out += largest_candidates(blocks, flat)
        of = f" (each modality's {SOUP_UP_TO} largest)" if len(soup) < len(blocks) else ""
        mine, grouped = tuple(b.block_id for b in soup), hierarchy(soup, layout)
        out += [
            Candidate("modality", "merge", f"merge of modality blocks{of}", mine, groups=grouped),
            Candidate(
                "modality-ensemble",
                "ensemble",
                f"ensemble of modality blocks{of}",
                mine,
                groups=grouped,
            ),
        ]
        by_size = _by_size(soup)
        if by_size is not None:
            out.append(
                Candidate(
                    "modality-size",
                    "merge",
                    f"merge of modality blocks{of} weighted by training patients",
                    mine,
                    by_size,
                    groups=grouped,
                )
            )
    out += list(stacked)
    modalities = sorted(per_modality)
    if len(modalities) > 1:
        for m in modalities:
            mine = tuple(b.block_id for b in (blocks if flat else soup) if b.modality == m)
            if len(mine) > 1 or len(blocks) > MAX_ALONE:
                one = () if flat or len(mine) == 1 else (0,) * len(mine)
                out.append(Candidate(f"only-{m}", "merge", f"{m} blocks only", mine, groups=one))
    if 1 < len(blocks) <= MAX_ALONE:
        out += [
            Candidate(f"alone-{i}", "merge", f"{b.site}/{b.modality} alone", (b.block_id,))
            for i, b in enumerate(blocks)
        ]
    return out


def quality_candidates(
    blocks: Sequence[BlockInfo], alone: Mapping[str, Consortium]
) -> list[Candidate]:
    """The second job: merge and ensemble weighted by each block's consortium validation metric
    above chance (``alone``: block id -> the block scored alone), shrunk toward equal weights. A
    block no site could score gets the median weight. Empty when no block is above chance."""
    edge = {
        b.block_id: alone[b.block_id].value - 0.5
        for b in blocks
        if b.block_id in alone and math.isfinite(alone[b.block_id].value)
    }
    if not edge or max(edge.values()) <= 0 or len(blocks) < 2:
        return []
    known = sorted(max(0.0, v) for v in edge.values())
    median = known[len(known) // 2]
    raw = [max(0.0, edge.get(b.block_id, median)) for b in blocks]
    if sum(raw) <= 0:
        return []
    w = shrunk(raw)
    ids = tuple(b.block_id for b in blocks)
    return [
        Candidate("uniform", "merge", "uniform merge", ids),
        Candidate("quality", "merge", "merge weighted by validation", ids, w),
        Candidate("quality-ensemble", "ensemble", "ensemble weighted by validation", ids, w),
    ]


def publishable(c: Candidate, blocks: Sequence[BlockInfo]) -> bool:
    """A merge may publish a recipe that serves every patient the uniform merge of every block
    serves: one that covers every modality of the blocks, over all of them or a subset (a
    modality's blocks left out but one). A subset that covers fewer modalities (one block, one
    modality's blocks) serves only the patients of those: it is scored for comparison, and may
    be published for the sites it serves (coordinator.merging, per site)."""
    if not c.is_recipe:
        return False
    modality = {b.block_id: b.modality for b in blocks}
    if any(i not in modality for i in c.block_ids):
        return False
    return {modality[i] for i in c.block_ids} == set(modality.values())


def site_bound(mine: CandidateScore, base: CandidateScore, same_job: bool, z: float = Z) -> float:
    """One site's evidence that ``mine`` beats ``base`` on its own patients: the difference of
    their metrics less ``z`` standard errors (-inf when it cannot be told). Scored in one job,
    the standard error of the difference is at most the sum of each one's against the job's
    reference; scored in different jobs, the two are taken as independent (a larger error for
    positively correlated models: conservative either way)."""
    diff = mine.metric - base.metric
    if same_job:
        se = math.sqrt(mine.var_diff) + math.sqrt(base.var_diff)
    else:
        se = math.sqrt(mine.var_metric + base.var_metric)
    bound = diff - z * se
    return bound if math.isfinite(bound) else float("-inf")


def site_choices(
    candidates: Sequence[Candidate],
    scores: Mapping[str, Mapping[str, CandidateScore]],
    chosen: Candidate,
    z: float = Z,
) -> dict[str, Candidate]:
    """Per site, the recipe its own out-of-fold evidence favours over the consortium's choice
    (a gain of more than ``z`` standard errors on all the patients the choice serves there),
    for the sites where one does; a block alone or a modality's blocks qualify where they serve
    every one of the site's patients."""
    out = {}
    for site, base in scores.get(chosen.candidate_id, {}).items():
        best, best_bound = None, 0.0
        for c in candidates:
            mine = scores.get(c.candidate_id, {}).get(site)
            if not c.is_recipe or c == chosen or mine is None or mine.patients != base.patients:
                continue
            bound = site_bound(mine, base, True, z)
            if bound > best_bound:
                best, best_bound = c, bound
        if best is not None:
            out[site] = best
    return out


@dataclass(frozen=True)
class Choice:
    candidate: Candidate
    reason: str
    bound: float = float(
        "nan"
    )  # gain - z * se of the chosen candidate (nan: the uniform merge by default)


def choose(
    candidates: Sequence[Candidate], results: Mapping[str, Consortium], z: float = Z
) -> Choice:
    """The candidate with the largest ``diff - z * se_diff`` over the reference (the first), if
    that is above zero; else the reference. ``results`` maps candidate id -> its consortium
    result (with ``diff`` against the reference of its job)."""
    reference = candidates[0]
    scored = [(c, results[c.candidate_id]) for c in candidates[1:] if c.candidate_id in results]
    scored = [(c, r) for c, r in scored if math.isfinite(r.diff) and math.isfinite(r.se_diff)]
    if reference.candidate_id not in results or not scored:
        return Choice(
            reference, f"{reference.label}: no site reported scores to compare candidates on"
        )
    bounds = [(r.diff - z * r.se_diff, c, r) for c, r in scored]
    bound, best, r = max(bounds, key=lambda x: x[0])
    if bound > 0:
        return Choice(
            best,
            f"{best.label}: {r.diff:+.4f} over the {reference.label} on consortium validation, "
            f"standard error {r.se_diff:.4f} (a gain of more than {z:g} standard errors)",
            bound,
        )
    top_c, top_r = max(scored, key=lambda x: x[1].diff)
    return Choice(
        reference,
        f"{reference.label}: no candidate gained more than {z:g} standard errors over it "
        f"(largest gain: {top_c.label} {top_r.diff:+.4f}, standard error {top_r.se_diff:.4f})",
    )
