"""The one TOML writer: whatever a configuration model holds, the written file reads back as it,
every setting named, an unset one commented out, each with its description."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import Field

from common.tomlconfig import ConfigError, Strict, read_toml, render_toml


class Section(Strict):
    name: str = "x"
    count: int = Field(default=3, description="how many")
    ratio: float = 0.5
    on: bool = True
    words: list[str] = Field(default_factory=list)
    limit: float | None = Field(default=None, description="unset: no limit", examples=[2.5])
    other: float | None = None


class File(Strict):
    who: str
    tags: list[str] = Field(default_factory=list)
    section: Section = Field(default_factory=Section)


TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
FLOATS = st.floats(allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(
    who=TEXT,
    tags=st.lists(TEXT, max_size=3),
    name=TEXT,
    count=st.integers(-(2**63), 2**63 - 1),
    ratio=FLOATS,
    on=st.booleans(),
    words=st.lists(TEXT, max_size=3),
    limit=st.none() | FLOATS,
)
def test_what_is_written_reads_back_as_the_model(
    tmp_path_factory: pytest.TempPathFactory,
    who: str,
    tags: list[str],
    name: str,
    count: int,
    ratio: float,
    on: bool,
    words: list[str],
    limit: float | None,
) -> None:
    f = File(
        who=who,
        tags=tags,
        section=Section(name=name, count=count, ratio=ratio, on=on, words=words, limit=limit),
    )
    path = tmp_path_factory.mktemp("toml") / "f.toml"
    path.write_text(render_toml(f, "a header\nof two lines"))
    assert read_toml(path, File) == f


def test_every_setting_is_named_with_its_description_and_an_unset_one_commented_out(
    tmp_path: Path,
) -> None:
    text = render_toml(File(who="a"), "header")
    assert text.splitlines() == [
        "# header",
        'who = "a"',
        "tags = []",
        "",
        "[section]",
        'name = "x"',
        "count = 3  # how many",
        "ratio = 0.5",
        "on = true",
        "words = []",
        "# limit = 2.5  # unset: no limit",
        "# other =",
    ]
    (tmp_path / "f.toml").write_text(text.replace("# limit = 2.5", "limit = inf"))
    assert math.isinf(read_toml(tmp_path / "f.toml", File).section.limit or 0.0)
    (tmp_path / "f.toml").write_text(text.replace("count = 3", "count = 3\ncuont = 4"))
    with pytest.raises(ConfigError, match=r"section\.cuont"):
        read_toml(tmp_path / "f.toml", File)


def test_a_value_toml_cannot_hold_is_refused_when_written() -> None:
    class Odd(Strict):
        table: dict[str, int] = Field(default_factory=lambda: {"a": 1})

    with pytest.raises(TypeError, match="no TOML form"):
        render_toml(Odd())
