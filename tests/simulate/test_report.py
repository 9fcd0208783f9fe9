"""The simulate report's comparisons: a run's test scores survive the file they are kept in, and
the summary over seeds combines the seeds' paired bootstrap intervals (the same as comparing the
seeds' test sets together), per hospital too."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from common.evaluation.paired import TestSet, compare_models
from simulate import reuse
from simulate.measurements import (
    SiteResult,
)
from simulate.references import Entry
from simulate.render import load_measured, save_measured, summarize
from simulate.report import Measured, comparisons
from tests.simulate.test_reportfile import a_report


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
        replace(
            a_report(s, fused=False),
            summary=(),
            comparisons=comparisons([m.summary]),
            per_site=(SiteResult("hosp-a", ("genes",), 60, (), (), None),),
        )
        for s, m in zip((0, 1), measured, strict=True)
        if m.summary is not None
    ]
    # seed 5 deals the patients anew: its test patients overlap seeds 0-4's
    later = replace(reports[0], seed=5)
    summary = summarize([*reports, later], [*measured, measured[0]])
    # intervals combine disjoint test sets only
    assert summary.comparison_seeds == 2 and summary.seeds == (0, 1, 5)
    combined = {c.b: c for c in summary.comparisons}
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
        c.seeds == 2 and c.patients == 240 for c in combined.values()
    )
    for b, c in combined.items():
        assert c.diff is not None and c.low is not None and c.high is not None
        assert abs(c.diff - direct[b].diff) < 1e-6 and abs(c.low - direct[b].low) < 1e-6
    # a much noisier local model loses, resolved by the combined interval
    assert (combined["local"].low or 0) > 0
    one = reports[0].comparisons or ()
    width = {c.b: (c.high or 0) - (c.low or 0) for c in one}
    # two seeds narrow the interval
    assert all((c.high or 0) - (c.low or 0) < width[b] for b, c in combined.items())
    (site,) = summary.per_site
    assert {c.b for c in site.comparisons} == {"ensemble", "local"}
    assert site.comparisons[0].seeds == 2


def test_references_from_another_run_are_refused_and_reused_scores_are_checked(
    tmp_path: Path,
) -> None:
    """--references-from: a run of another seed is refused before anything is read from it, and a
    reused score that differs from the earlier run's on the same patients stops the report (the
    end-to-end reuse: tests/simulate/test_simulate_run.py, the site-folder scenario)."""
    earlier = made_up(0)
    (tmp_path / "report.json").write_text(json.dumps(a_report(seed=0).to_json()))
    save_measured(Measured(earlier, {"hosp-a": made_up(1, 60)}), tmp_path)
    with pytest.raises(ValueError, match="it ran two-sites seed 0, this run is two-sites seed 1"):
        reuse.load(tmp_path, "two-sites", 1, {}, ["genes"], ["genes"], {})
    with pytest.raises(ValueError, match=r"report\.json is missing"):
        reuse.load(tmp_path / "nowhere", "two-sites", 0, {}, ["genes"], ["genes"], {})

    def never(data: object) -> np.ndarray:
        raise AssertionError("check reads scores, it does not predict")

    reused = reuse.Reused(
        tmp_path,
        [Entry("ensemble", "the ensemble", ["genes"], never)],
        {},
        {},
        {},
        {"summary": earlier},
    )
    reuse.check(reused, "summary", earlier)  # the same scores on the same patients
    scores = dict(earlier.scores)
    scores["ensemble"] = scores["ensemble"].copy()
    scores["ensemble"][7] += 1e-6
    with pytest.raises(ValueError, match="ensemble on the summary test set differs"):
        reuse.check(reused, "summary", replace(earlier, scores=scores))
    fewer = TestSet(
        "survival",
        0,
        earlier.site[1:],
        {k: v[1:] for k, v in earlier.targets.items()},
        {k: v[1:] for k, v in earlier.scores.items()},
    )
    with pytest.raises(ValueError, match="scores other patients"):
        reuse.check(reused, "summary", fewer)
