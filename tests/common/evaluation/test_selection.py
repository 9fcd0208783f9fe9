"""The validation-informed choice: a small fixed family of candidates, every publishable one built
from every block; a candidate replaces the uniform merge only when its gain exceeds z standard
errors; nothing to compare keeps the uniform merge; weights derived from data are pulled half-way
to equal."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from common.evaluation import Consortium
from common.evaluation.candidates import Candidate
from common.evaluation.selection import (
    FLAT_UP_TO,
    PER_MODALITY,
    SOUP_UP_TO,
    BlockInfo,
    choose,
    first_candidates,
    panel,
    publishable,
    shrunk,
)


def bid(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


BLOCKS = [
    BlockInfo(bid("a"), "hosp-a", "genes", 300),
    BlockInfo(bid("b"), "hosp-b", "genes", 100),
    BlockInfo(bid("c"), "hosp-c", "clinical", 50),
]


def test_the_family_is_small_and_only_varies_where_the_blocks_differ() -> None:
    ids = [c.candidate_id for c in first_candidates(BLOCKS)]
    assert ids == [
        "uniform",
        "ensemble",
        "balanced",
        "balanced-ensemble",
        "size",
        "modality",
        "modality-ensemble",
        "modality-size",
        "only-genes",
        "alone-0",
        "alone-1",
        "alone-2",
    ]
    even = [BlockInfo(bid("a"), "a", "genes", 100), BlockInfo(bid("b"), "b", "clinical", 100)]
    assert [c.candidate_id for c in first_candidates(even)] == [
        "uniform",
        "ensemble",
        "alone-0",
        "alone-1",
    ]
    unknown = [BlockInfo(bid("a"), "a", "genes", None), BlockInfo(bid("b"), "b", "clinical", 100)]
    assert "size" not in [
        c.candidate_id for c in first_candidates(unknown)
    ]  # a withheld count: no size weights
    cands = {c.candidate_id: c for c in first_candidates(BLOCKS)}
    assert cands["balanced"].weights == (0.75, 0.75, 1.5)  # genes and clinical count equally
    publish = ("uniform", "ensemble", "balanced", "size", "modality", "modality-ensemble")
    assert all(publishable(cands[k], BLOCKS) for k in publish)
    # hierarchical: the two genes blocks make one modality block; flat: none has groups
    assert cands["modality"].groups == (0, 0, 1) and cands["modality-size"].groups == (0, 0, 1)
    assert not cands["uniform"].groups and not cands["only-genes"].groups
    assert not publishable(cands["alone-0"], BLOCKS)  # serves the patients of one modality only
    # a subset that keeps every modality serves every patient: it may be published
    assert publishable(Candidate("x", "merge", "", (bid("a"), bid("c"))), BLOCKS)
    assert not publishable(cands["only-genes"], BLOCKS)
    assert cands["uniform"].problem() is None and len({c.digest() for c in cands.values()}) == len(
        cands
    )


def test_the_family_stays_bounded_at_hundreds_of_blocks() -> None:
    many = [
        BlockInfo(bid(f"s{i}"), f"hosp-{i}", ("genes", "clinical", "slides")[i % 3], 50 + i)
        for i in range(500)
    ]
    stacked = [Candidate("stacked-modalities", "merge", "stacked", tuple(b.block_id for b in many))]
    family = first_candidates(many, stacked)
    ids = [c.candidate_id for c in family]
    assert len(ids) <= 12 and "stacked-modalities" in ids
    assert {"only-clinical", "only-genes", "only-slides"} <= set(ids)
    assert not any(i.startswith("alone-") for i in ids)
    # beyond FLAT_UP_TO blocks only bounded recipes: the reference is the ensemble of each
    # modality's PER_MODALITY largest blocks; the others have one block per modality (averaged)
    assert ids[0] == "largest-ensemble" and "uniform" not in ids and "ensemble" not in ids
    largest = family[0].block_ids
    assert len(largest) == 3 * PER_MODALITY and family[1].block_ids == largest
    genes = sorted((b for b in many if b.modality == "genes"), key=lambda b: -(b.n_train or 0))
    assert {b.block_id for b in genes[:PER_MODALITY]} <= set(largest)  # the largest of each
    assert not {b.block_id for b in genes[PER_MODALITY:]} & set(largest)
    for c in family[2:]:
        if c.candidate_id != "stacked-modalities":
            mods = {b.modality for b in many if b.block_id in c.block_ids}
            assert c.groups and len(set(c.groups)) == len(mods)
    # a modality block averages each modality's SOUP_UP_TO largest blocks: what a scoring site
    # downloads for the whole family (the stacked candidate aside) is bounded too
    soup = {c.candidate_id: c for c in family}["modality"].block_ids
    assert len(soup) == 3 * SOUP_UP_TO and set(largest) <= set(soup)
    assert {b.block_id for b in genes[:SOUP_UP_TO]} <= set(soup)
    assert not {b.block_id for b in genes[SOUP_UP_TO:]} & set(soup)
    fetched = {i for c in family if c.candidate_id != "stacked-modalities" for i in c.block_ids}
    assert fetched == set(soup)
    at_limit = many[:FLAT_UP_TO]
    assert [c.candidate_id for c in first_candidates(at_limit)][:2] == ["uniform", "ensemble"]
    # bounded only (asked for) with PER_MODALITY or fewer of each modality: the reference is the
    # ensemble of every block; with the flat recipes beside it, it is theirs and not repeated
    small = many[:60]
    bounded = first_candidates(small, layout="modality")
    assert bounded[0].candidate_id == "largest-ensemble" and set(bounded[0].block_ids) == {
        b.block_id for b in small
    }
    assert "largest-ensemble" not in [c.candidate_id for c in first_candidates(small)]
    # up to SOUP_UP_TO blocks of every modality, the modality blocks average them all
    few = many[: 3 * SOUP_UP_TO]
    assert {c.candidate_id: c for c in first_candidates(few)}["modality"].block_ids == tuple(
        b.block_id for b in few
    )


def test_data_derived_weights_are_shrunk_half_way_to_equal() -> None:
    w = shrunk([4.0, 1.0, 1.0])
    assert sum(w) / 3 == pytest.approx(1.0, abs=1e-5)
    assert w == pytest.approx((1.5, 0.75, 0.75), abs=1e-5)  # (2, 0.5, 0.5) halfway to (1, 1, 1)


def res(diff: float, se: float) -> Consortium:
    return Consortium(0.6 + diff, 0.05, ("a", "b"), 100, 40, diff, se)


def test_a_candidate_replaces_uniform_only_beyond_z_standard_errors() -> None:
    cands = [c for c in first_candidates(BLOCKS) if publishable(c, BLOCKS)]
    base = {"uniform": res(0.0, 0.0)}
    small = choose(cands, {**base, "ensemble": res(0.010, 0.012), "size": res(0.004, 0.001)})
    assert small.candidate.candidate_id == "size" and small.bound == pytest.approx(
        0.003
    )  # 0.004 - 1 x 0.001
    noisy = choose(cands, {**base, "ensemble": res(0.010, 0.012), "size": res(-0.001, 0.001)})
    assert (
        noisy.candidate.candidate_id == "uniform"
        and "largest gain: ensemble +0.0100" in noisy.reason
    )
    strict = choose(cands, {**base, "size": res(0.004, 0.001)}, z=5.0)
    assert strict.candidate.candidate_id == "uniform"
    assert (
        choose(cands, {}).candidate.candidate_id == "uniform"
        and "no site reported" in choose(cands, {}).reason
    )


def test_a_panel_is_stratified_by_modalities_held_the_largest_sites_first() -> None:
    held = {
        f"s{i:02d}": (
            frozenset({"genes", "clinical"})
            if i % 10 == 9
            else frozenset({"genes"} if i % 2 else {"clinical"}),
            100 + i,
        )
        for i in range(50)
    }  # 25 clinical, 20 genes, 5 paired
    chosen = panel(held, 10)
    strata = Counter(held[s][0] for s in chosen)
    assert len(chosen) == 10 and len(strata) == 3  # every stratum has a voice
    assert strata[frozenset({"clinical"})] >= strata[frozenset({"genes"})] >= 2
    clinical = sorted(
        (s for s in held if held[s][0] == frozenset({"clinical"})), key=lambda s: -held[s][1]
    )
    assert {s for s in chosen if held[s][0] == frozenset({"clinical"})} == set(
        clinical[: strata[frozenset({"clinical"})]]
    )
    assert panel(held, 10) == chosen == tuple(sorted(chosen))  # the same inputs, the same panel
    assert panel(held, 0) == () and panel(held, 50) == ()  # every site
    assert len(panel(held, 2)) == 2 and len(set(panel(held, 49))) == 49
