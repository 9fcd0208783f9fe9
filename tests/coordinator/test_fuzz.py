"""Property-based fuzz of every RPC of a running registry (real mutual TLS on loopback): random
bytes, mutated valid messages, path-like strings in every identifier, and upload chunk sequences
out of order, duplicated, truncated, oversized or replayed. No input may crash the coordinator
(an UNKNOWN/INTERNAL status), hang it (a deadline), or change what it stores (tasks, sites,
blocks, model versions, blobs), but for what a valid request among the inputs asked for.

Each test is whole by itself (any order, any subset, any xdist worker): it counts its own inputs
and compares the store before and after its own run, naming the rows that differ. The inputs
follow from the seed (``--fuzz-seed N``, 0 by default, as in CI); `-s` prints the counts.
The same families with 10,000 inputs each: bench/fuzz_bench.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.coordinator.conftest import Consortium
from tests.coordinator.fuzzing import (
    OK,
    Fuzzed,
    Input,
    Tally,
    fuzz,
    fuzzed_registry,
    valid,
)
from tests.coordinator.storerows import reports_kept, stored_rows, unasked_changes
from tests.factories import mutate_bytes

EXAMPLES = 300  # per family
pytestmark = pytest.mark.xdist_group("fuzz")  # one registry for the module, on one worker


@pytest.fixture(scope="module")
def fuzzed(consortium: Consortium, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    with fuzzed_registry(consortium, tmp_path_factory.mktemp("fuzz")) as f:
        yield f


def checked(tally: Tally, fuzzed: Fuzzed) -> None:
    print(f"\nfuzz {tally.line()}")
    assert tally.inputs >= EXAMPLES, f"only {tally.inputs} inputs were tried"
    assert not tally.violations, tally.violations
    assert not tally.changes, (
        f"fuzzing changed what the registry stores (--fuzz-seed {tally.seed}):\n"
        + "\n".join(tally.changes)
    )
    assert not reports_kept(fuzzed.cfg), reports_kept(fuzzed.cfg)


def test_random_bytes_to_every_rpc(fuzzed: Fuzzed, fuzz_seed: int) -> None:
    """Random bytes as the request of every RPC but UploadBlock."""
    checked(fuzz(fuzzed, "random-bytes", EXAMPLES, fuzz_seed), fuzzed)


def test_mutated_valid_requests_to_every_rpc(fuzzed: Fuzzed, fuzz_seed: int) -> None:
    """Valid requests with bytes flipped, inserted, truncated."""
    checked(fuzz(fuzzed, "mutated", EXAMPLES, fuzz_seed), fuzzed)


def test_path_like_strings_in_every_identifier(fuzzed: Fuzzed, fuzz_seed: int) -> None:
    """``../``, NUL, 5000-character and random text in every string field, extreme integers in
    every int field; Merge, WithdrawSite and CreateTask never succeed with them."""
    checked(fuzz(fuzzed, "path-like", EXAMPLES, fuzz_seed), fuzzed)


def test_chunk_sequences_out_of_order_duplicated_truncated_oversized(
    fuzzed: Fuzzed, fuzz_seed: int
) -> None:
    """UploadBlock streams out of order, duplicated, cut, oversized, at wild offsets, with a
    second header or a path-like upload id."""
    checked(fuzz(fuzzed, "chunks", EXAMPLES, fuzz_seed), fuzzed)


def test_a_mutated_create_task_that_is_a_valid_new_task_is_the_one_change_allowed(
    fuzzed: Fuzzed,
) -> None:
    """Why the store may grow during the fuzz: a flipped byte of CreateTask's ``t1`` can name a
    new, valid task ("u1"); creating it is right, and it is the only row the check lets pass."""
    tally = Tally("mutated", 0)
    before = stored_rows(fuzzed.cfg)
    inp = Input("mutated", "CreateTask", (mutate_bytes(valid("CreateTask"), [(0, 2, 0)]),))
    assert fuzzed.call(inp, tally) == OK and tally.created == {"u1"}
    after = stored_rows(fuzzed.cfg)
    assert unasked_changes(before, after, tally.created) == []
    (row,) = unasked_changes(before, after, set())  # without the request, it is a change
    assert row.startswith("+ tasks: ('u1', ")


def test_replaying_the_valid_upload_stores_nothing_new_and_the_registry_is_unchanged(
    fuzzed: Fuzzed,
) -> None:
    before = stored_rows(fuzzed.cfg)
    tally = Tally("replay", 0)
    assert fuzzed.call(Input("replay", "UploadBlock", tuple(fuzzed.upload)), tally) == OK
    assert fuzzed.call(Input("replay", "ListTasks", (b"",)), tally) == OK  # still serving
    assert unasked_changes(before, stored_rows(fuzzed.cfg), set()) == []
    assert not reports_kept(fuzzed.cfg), reports_kept(fuzzed.cfg)
