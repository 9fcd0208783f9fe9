"""The streaming check agrees with the whole-file check however the bytes are cut."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save as st_save

from common.artifacts import IntegrityError, read_block_files, save_block
from common.artifacts.streamcheck import StreamCheck
from tests.factories import block

BLOCK = block(in_features=7)


def feed(manifest: object, data: bytes, cuts: list[int]) -> None:
    check = StreamCheck(manifest)  # type: ignore[arg-type]
    pos = 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        check.feed(data[pos:cut])
        pos = cut
    check.finish()


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, bytes]:
    folder = tmp_path_factory.mktemp("b")
    save_block(BLOCK, folder)
    files = read_block_files(folder)
    return files.manifest, files.weights.read_bytes()


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=40))
def test_any_cutting_of_a_good_file_passes(saved: tuple[object, bytes], cuts: list[int]) -> None:
    manifest, data = saved
    feed(manifest, data, cuts)


@settings(max_examples=40, deadline=None)
@given(
    cuts=st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=20),
    value=st.sampled_from([float("nan"), float("inf"), float("-inf")]),
    row=st.integers(0, 5),
)
def test_a_non_finite_value_is_found_however_the_bytes_are_cut(
    saved: tuple[object, bytes], cuts: list[int], value: float, row: int
) -> None:
    manifest, _ = saved
    state = {k: v.clone() for k, v in BLOCK.state_dict().items()}
    state["latent"][row, 3] = value
    with pytest.raises(IntegrityError, match="'latent' contains NaN or infinity"):
        feed(manifest, st_save(state), cuts)


def test_truncated_padded_and_reordered_files_are_refused(
    saved: tuple[object, bytes], tmp_path: Path
) -> None:
    manifest, data = saved
    with pytest.raises(IntegrityError, match="end after"):
        feed(manifest, data[:-4], [])
    with pytest.raises(IntegrityError):
        feed(manifest, data + b"\0" * 4, [])
    other = {k: torch.zeros_like(v) for k, v in block(in_features=8).state_dict().items()}
    with pytest.raises(IntegrityError, match="shape"):
        feed(manifest, st_save(other), [])
    with pytest.raises(IntegrityError, match="header"):
        feed(manifest, b"\xff" * 64 + data, [])
