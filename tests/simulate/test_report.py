"""The simulate report's comparisons: a run's test scores survive the file they are kept in, and
the summary over seeds combines the seeds' paired bootstrap intervals (the same as comparing the
seeds' test sets together), per hospital too."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common.evaluation.paired import TestSet, compare_models
from simulate.render import load_measured, save_measured, summarize
from simulate.report import Measured, comparisons


def made_up(seed: int, n: int = 120) -> TestSet:
    rng = np.random.default_rng(seed)
    time = rng.exponential(size=n)
    risk = -np.log(time) + rng.normal(scale=1.0, size=n)
    scores = {
        "recommended": risk,
        "local": risk + rng.normal(scale=2.0, size=n),
        "ensemble": risk + rng.normal(scale=0.5, size=n),
    }
    site = np.where(np.arange(n) < n // 2, "hosp-a", "hosp-b")
    return TestSet("survival", 0, site, {"time": time, "event": rng.random(n) < 0.7}, scores)


def test_test_scores_survive_their_file_and_seeds_combine_into_one_interval(tmp_path: Path) -> None:
    measured = [Measured(made_up(s), {"hosp-a": made_up(10 + s, 60)}) for s in (0, 1)]
    for i, m in enumerate(measured):
        (tmp_path / str(i)).mkdir()
        back = load_measured(save_measured(m, tmp_path / str(i)))
        assert (
            back.summary is not None and m.summary is not None and set(back.per_site) == {"hosp-a"}
        )
        assert all(
            np.array_equal(back.summary.scores[k], m.summary.scores[k]) for k in m.summary.scores
        )
        assert np.array_equal(back.summary.site, m.summary.site) and back.summary.kind == "survival"
    reports = [
        {
            "seed": s,
            "scenario": "x",
            "metric": "c-index",
            "summary": [],
            "comparisons": comparisons([m.summary]),
            "per_site": [{"site": "hosp-a", "patients": 60, "rows": [], "comparisons": []}],
            "merge": {"validation": {}},
            "validation": {},
            "fuse": {},
            "recommended": {},
        }
        for s, m in zip((0, 1), measured, strict=True)
    ]
    for r in reports:
        r["test_folds"] = 5
    later = {
        **reports[0],
        "seed": 5,
    }  # seed 5 deals the patients anew: its test patients overlap seeds 0-4's
    summary = summarize([*reports, later], [*measured, measured[0]])
    assert summary["comparison_seeds"] == 2 and summary["seeds"] == [
        0,
        1,
        5,
    ]  # intervals combine disjoint test sets only
    combined = {c["b"]: c for c in summary["comparisons"]}
    direct = {
        c.b: c
        for c in compare_models(
            [m.summary for m in measured if m.summary is not None],
            "recommended",
            ["ensemble", "local"],
            replicates=2000,
        )
    }
    assert set(combined) == {"ensemble", "local"} and all(
        c["seeds"] == 2 and c["patients"] == 240 for c in combined.values()
    )
    for b, c in combined.items():
        assert abs(c["diff"] - direct[b].diff) < 1e-6 and abs(c["low"] - direct[b].low) < 1e-6
    assert (
        combined["local"]["low"] > 0
    )  # a much noisier local model loses, resolved by the combined interval
    one = reports[0]["comparisons"]
    width = {c["b"]: c["high"] - c["low"] for c in one}
    assert all(
        combined[b]["high"] - combined[b]["low"] < width[b] for b in combined
    )  # two seeds narrow the interval
    (site,) = summary["per_site"]
    assert {c["b"] for c in site["comparisons"]} == {"ensemble", "local"} and site["comparisons"][
        0
    ]["seeds"] == 2
