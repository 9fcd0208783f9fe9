"""Fuzz of the site data loader: every file of a valid site data folder (CSV, and the same tables
as Parquet) is mutated - bytes flipped, inserted, truncated, emptied, lines duplicated or swapped,
cells replaced by junk. Loading either succeeds or raises one DataError naming a file of the
folder; no other exception escapes. Each test counts its own inputs (most must be refused, or the
loader checks nothing); they follow from ``--fuzz-seed`` (0 by default, as in CI)."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from common.data.errors import DataError
from common.data.sitefolder import load_site_folder
from tests.factories import mutate_bytes

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "site-data"
EXAMPLES = 200  # per test
JUNK = [
    "",
    "nan",
    "inf",
    "-inf",
    "1e999",
    "NaN",
    "x",
    "'; DROP TABLE",
    "\x00",
    "１２",
    "1,2",
    '"',
    "-0",
    "9" * 400,
    "../..",
]


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    csv = tmp_path_factory.mktemp("csv") / "site"
    shutil.copytree(EXAMPLE, csv)
    parquet = tmp_path_factory.mktemp("parquet") / "site"
    shutil.copytree(EXAMPLE, parquet)
    toml = (parquet / "data.toml").read_text()
    for f in sorted(parquet.glob("*.csv")):
        pd.read_csv(f).to_parquet(f.with_suffix(".parquet"))
        f.unlink()
        toml = toml.replace(f'"{f.name}"', f'"{f.with_suffix(".parquet").name}"')
    (parquet / "data.toml").write_text(toml)
    assert (
        len(load_site_folder(csv)) == len(load_site_folder(parquet)) > 0
    )  # both load before they are mutated
    return {"csv": csv, "parquet": parquet}


def mutate_cells(path: Path, cells: list[tuple[int, int, str]]) -> None:
    df = (
        pd.read_csv(path, dtype=str, keep_default_na=False)
        if path.suffix == ".csv"
        else pd.read_parquet(path)
    )
    for r, c, v in cells:
        if len(df) and len(df.columns):
            col = df.columns[c % len(df.columns)]
            df[col] = df[col].astype(
                str
            )  # a Parquet column becomes text where the loader may expect numbers
            df.iat[r % len(df), c % len(df.columns)] = v
    df.to_csv(path, index=False) if path.suffix == ".csv" else df.to_parquet(path)


def load(folder: Path, tried: Counter[str]) -> None:
    tried["inputs"] += 1
    try:
        load_site_folder(folder)
        tried["loaded"] += 1
    except DataError as exc:
        assert exc.file.startswith(str(folder)), exc  # names a file of this folder


SETTINGS = settings(  # the examples follow from the test's seed alone
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def enough(tried: Counter[str], what: str, fuzz_seed: int) -> None:
    print(
        f"\nloader fuzz ({what}, seed {fuzz_seed}): {tried['inputs']} inputs, "
        f"{tried['loaded']} loaded, the rest refused with a DataError"
    )
    assert tried["inputs"] >= EXAMPLES, tried
    assert tried["loaded"] < tried["inputs"] // 2, (
        tried
    )  # most refused, or the loader checks nothing


EDITS = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 100_000), st.integers(0, 255)),
    min_size=1,
    max_size=5,
)
CELLS = st.lists(
    st.tuples(
        st.integers(0, 500), st.integers(0, 50), st.sampled_from(JUNK) | st.text(max_size=12)
    ),
    min_size=1,
    max_size=4,
)


def test_mutated_bytes_of_any_file(
    folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory, fuzz_seed: int
) -> None:
    tried: Counter[str] = Counter()

    @seed(fuzz_seed)
    @SETTINGS
    @given(kind=st.sampled_from(["csv", "parquet"]), which=st.integers(0, 10), edits=EDITS)
    def one(kind: str, which: int, edits: list[tuple[int, int, int]]) -> None:
        folder = tmp_path_factory.mktemp("m") / "site"
        shutil.copytree(folders[kind], folder)
        files = sorted(folder.iterdir())
        target = files[which % len(files)]
        target.write_bytes(mutate_bytes(target.read_bytes(), edits))
        load(folder, tried)

    one()
    enough(tried, "bytes", fuzz_seed)


def test_junk_cells_in_any_table(
    folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory, fuzz_seed: int
) -> None:
    tried: Counter[str] = Counter()

    @seed(fuzz_seed)
    @SETTINGS
    @given(kind=st.sampled_from(["csv", "parquet"]), which=st.integers(0, 10), cells=CELLS)
    def one(kind: str, which: int, cells: list[tuple[int, int, str]]) -> None:
        folder = tmp_path_factory.mktemp("c") / "site"
        shutil.copytree(folders[kind], folder)
        tables = sorted(p for p in folder.iterdir() if p.suffix in (".csv", ".parquet"))
        mutate_cells(tables[which % len(tables)], cells)
        load(folder, tried)

    one()
    enough(tried, "cells", fuzz_seed)
