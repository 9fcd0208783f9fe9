"""Giving memory back in long-lived workers: always when asked, lazily only once the process grew
(a full collection after a step that declined a job cost most of a Ray worker's time at scale)."""

from __future__ import annotations

import gc
from typing import Any

from common.processes import GREW, give_back_memory


def full_collections(action: Any) -> int:
    seen: list[int] = []

    def note(phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and info["generation"] == 2:
            seen.append(1)

    gc.callbacks.append(note)
    try:
        action()
    finally:
        gc.callbacks.remove(note)
    return len(seen)


def test_a_lazy_give_back_collects_only_after_the_process_grew() -> None:
    give_back_memory()  # settled here
    assert full_collections(lambda: give_back_memory(lazily=True)) == 0
    assert full_collections(give_back_memory) == 1  # asked for: always
    grown = bytearray(2 * GREW)  # touched pages: resident
    grown[::4096] = b"x" * len(grown[::4096])
    assert full_collections(lambda: give_back_memory(lazily=True)) == 1
    del grown
