"""The round history's records: the JSON they are stored as keeps its keys (the console, the
model card and the simulator read it), every record comes back from it as it was, and a stored
round of an older or hand-written record takes the defaults the registry has always read."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from common.fuse.history import (
    RoundRecord,
    RoundValidation,
    curve_to_json,
    history_from_json,
    history_to_json,
)

names = st.text(alphabet="abcdefgh-", min_size=1, max_size=6)
scores = st.one_of(st.none(), st.floats(-1, 1))
validations = st.builds(
    RoundValidation,
    job_id=st.text(max_size=12),
    value=scores,
    parent=scores,
    diff=scores,
    se_diff=scores,
    sites=st.lists(names, max_size=3).map(tuple),
    per_site=st.dictionaries(names, st.floats(0, 1), max_size=3),
)
rounds = st.builds(
    RoundRecord,
    round=st.integers(1, 100),
    sites=st.lists(names, max_size=4).map(tuple),
    num_examples=st.integers(0, 10**6),
    train_loss=st.floats(allow_nan=False),
    failed=st.lists(names, max_size=2).map(tuple),
    errors=st.dictionaries(names, st.text(max_size=20), max_size=2),
    no_answer=st.lists(names, max_size=2).map(tuple),
    seconds=st.floats(0, 1e5),
    validation=st.one_of(st.none(), validations),
    site_examples=st.dictionaries(names, st.integers(1, 10**5), max_size=4),
)


def test_a_round_is_stored_under_the_keys_its_readers_know() -> None:
    verdict = RoundValidation("t1-e3", 0.61, 0.6, 0.01, 0.005, ("a", "b"), {"a": 0.6, "b": 0.62})
    judged = RoundRecord(
        2, ("a", "b"), 80, 0.5, ("c",), {"c": "timeout"}, ("d",), 1.5, verdict, {"b": 50, "a": 30}
    )
    assert judged.to_json() == {
        "round": 2,
        "sites": ["a", "b"],
        "num-examples": 80,
        "site-examples": {"a": 30, "b": 50},
        "train_loss": 0.5,
        "failed": ["c"],
        "errors": {"c": "timeout"},
        "no_answer": ["d"],
        "seconds": 1.5,
        "validation": {
            "job_id": "t1-e3",
            "value": 0.61,
            "parent": 0.6,
            "diff": 0.01,
            "se_diff": 0.005,
            "sites": ["a", "b"],
            "per_site": {"a": 0.6, "b": 0.62},
        },
    }
    unjudged = RoundRecord(1, ("a",), 40, 0.7)
    assert "validation" not in unjudged.to_json()  # an unjudged round has no verdict at all
    assert curve_to_json([unjudged, judged]) == [None, judged.to_json()["validation"]]


@settings(max_examples=100, deadline=None)
@given(history=st.lists(rounds, max_size=4))
def test_every_round_comes_back_from_its_stored_json(history: list[RoundRecord]) -> None:
    stored = json.dumps(history_to_json(history), sort_keys=True)  # as the run's record keeps it
    assert history_from_json(json.loads(stored)) == history


def test_an_older_round_takes_the_defaults_and_reports_who_was_asked() -> None:
    old = {
        "round": 3,
        "sites": ["a"],
        "failed": ["b"],
        "no_answer": ["c"],
        "validation": {"value": 0.6, "parent": 0.62, "diff": -0.02, "se_diff": None},
    }
    r = RoundRecord.from_json(old)
    assert r.errors == {} and r.num_examples == 0 and r.seconds == 0.0 and r.site_examples == {}
    assert r.validation is not None and r.validation.job_id == "" and r.validation.sites == ()
    shown = r.fuse_round()
    assert (shown.round, shown.asked, shown.answered) == (3, 3, ("a",))
    assert (shown.value, shown.parent, shown.diff) == (0.6, 0.62, -0.02)
    assert math.isnan(shown.se_diff) and math.isnan(shown.train_loss)
    bare = RoundRecord.from_json({"round": 1, "validation": {}}).fuse_round()
    assert bare.asked == 0 and math.isnan(bare.value)
