"""report.json as dataclasses: the keys and their order are pinned (bench/simulate_seeds.py,
bench/results_tables.py and docs/results/*.json read them), every report and summary over seeds
comes back from its JSON as it was, and the sections a run without references lacks stay out."""

from __future__ import annotations

import json
from dataclasses import replace

from simulate.evidence import (
    BaselineRow,
    CandidateRow,
    CeilingChoice,
    CeilingInfo,
    CurvePoint,
    FedAvgInfo,
    LocalInfo,
    ReferenceRow,
    RoundPoint,
    ValidationSummary,
)
from simulate.measurements import (
    ComparisonRow,
    KindRow,
    SiteResult,
    SummaryRow,
)
from simulate.reportfile import (
    BlockRow,
    Centralized,
    CommunicationRow,
    FuseNotStored,
    FuseStored,
    MergeSection,
    Recommended,
    Report,
    SiteRow,
    Traffic,
)
from simulate.seedsfile import SeedRow, SeedRun, SeedSite, SeedsSummary, SiteKindRow

TOP = [
    "scenario",
    "description",
    "synthetic",
    "metric",
    "metric_scope",
    "task",
    "seed",
    "engine",
    "folds",
    "test_fold",
    "test_folds",
    "placement",
    "sites",
    "test_patients",
    "blocks",
    "merge",
    "fuse",
    "recommended",
    "validation",
    "rounds",
    "epochs",
]
COMPARED = ["summary", "comparisons", "per_site", "references", "centralized"]
TAIL = ["baselines", "communication", "phases_s", "peak_rss_mb", "checks", "round_bytes"]


def comparison(b: str, diff: float | None = 0.01) -> ComparisonRow:
    return ComparisonRow("recommended", b, diff, None if diff is None else diff - 0.02, 0.05, 90, 1)


def a_report(seed: int = 0, compared: bool = True, fused: bool = True) -> Report:
    """A report with every section filled in as a run fills it."""
    curve = (RoundPoint(1, 0.6), RoundPoint(2, 0.62))
    fedavg = FedAvgInfo(("hosp-a", "hosp-b"), 2, 0.62, curve, 12)
    report = Report(
        scenario="two-sites",
        description="two hospitals",
        synthetic=False,
        metric="c-index",
        metric_scope="within-site (patients are compared only within their hospital)",
        task="t1",
        seed=seed,
        engine="processes",
        folds=5,
        test_fold=f"{seed % 5 + 1} of 5",
        test_folds=5,
        placement={},
        sites=(
            SiteRow("hosp-a", ("genes",), False, 100, 40, 25),
            SiteRow("hosp-b", ("genes", "clinical"), True, 80, None, 20),
        ),
        test_patients=45,
        blocks=(BlockRow("hosp-a", "genes", "0123456789ab", 80, 0.6, None, 0.58),),
        merge=MergeSection("t1-v1", "merge", {"evaluated": True, "chosen": "size"}),
        fuse=FuseStored("t1-v2", {"kept_round": 2}, {"reason": "round 2"})
        if fused
        else FuseNotStored("no round beat the parent", (None, {"diff": 0.01})),
        recommended=Recommended("t1-v2", 0.63, "the best") if fused else None,
        validation=ValidationSummary(
            "5-fold cross-fitting over every patient",
            (CandidateRow("uniform", "uniform merge", 0.6, 0.01, 0.0, 0.0, 180, 90),),
            "size",
            ("hosp-a", "hosp-b"),
            (),
            (),
            {"hosp-a": 100, "hosp-b": 80},
            (CurvePoint(0.61, 0.6, 0.01, 0.005),),
        ),
        rounds=6,
        epochs=1,
        baselines={"baseline": BaselineRow(fedavg, 4, 1000)},
        communication={
            "hosp-a": CommunicationRow(10, 20, 0, 1, 2, {"baseline": Traffic(4000, 4000, 4)}),
            "hosp-b": CommunicationRow(30, 40, 2, 3, 4, {"baseline": Traffic(4000, 4000, 4)}),
        },
        phases_s={"setup": 1.5},
        peak_rss_mb={"coordinator": 300.0},
        checks={"every site has a block": True},
    )
    if not compared:
        return report
    local = LocalInfo({"genes block": 0.6}, "genes block", "out of fold")
    return replace(
        report,
        summary=(SummaryRow("fuse", "t1-v2", 45, 0.63, 0.63, 0.0, (seed,)),),
        comparisons=(comparison("fuse"), comparison("local", None)),
        per_site=(
            SiteResult(
                "hosp-a",
                ("genes",),
                25,
                (KindRow("fuse", "t1-v2", 25, 0.6),),
                (comparison("local"),),
                local,
            ),
            SiteResult("hosp-b", ("genes", "clinical"), 20, (), (), None),
        ),
        references={
            "baseline": ReferenceRow("FedAvg from scratch", fedavg),
            "ceiling-fuse": ReferenceRow("pooled LegoFuse", CeilingInfo(0.64, 3)),
            "ceiling-classical": ReferenceRow("elastic-net Cox", CeilingInfo(0.61)),
            "ceiling": ReferenceRow("ceiling-fuse", CeilingChoice("ceiling-fuse", {"a": 0.64})),
        },
        centralized=Centralized("hosp-a", True, 0.62),
    )


def test_a_report_keeps_its_keys_in_order() -> None:
    full = a_report().to_json()
    assert list(full) == TOP + COMPARED + TAIL
    assert list(a_report(compared=False).to_json()) == TOP + TAIL
    assert list(full["sites"][1]) == [
        "name",
        "modalities",
        "paired",
        "patients",
        "events",
        "test_patients",
    ]
    assert list(full["blocks"][0]) == [
        "site",
        "modality",
        "block",
        "n_train",
        "val_metric",
        "dp_epsilon",
        "test",
    ]
    assert list(full["summary"][0]) == [
        "kind",
        "model",
        "patients",
        "value",
        "mean",
        "std",
        "seeds",
    ]
    assert list(full["comparisons"][0]) == ["a", "b", "diff", "low", "high", "patients", "seeds"]
    assert list(full["per_site"][0]) == [
        "site",
        "modalities",
        "patients",
        "rows",
        "comparisons",
        "local",
    ]
    assert full["per_site"][1]["local"] == {}  # a hospital without a block chose nothing alone
    refs = full["references"]
    assert list(refs["baseline"]) == ["name", "sites", "rounds_chosen", "val", "curve", "budget"]
    assert list(refs["ceiling-fuse"]) == ["name", "epochs", "val"]
    assert list(refs["ceiling-classical"]) == ["name", "val"]
    assert list(refs["ceiling"]) == ["name", "chosen", "val"]
    assert list(full["baselines"]["baseline"]) == [
        "sites",
        "rounds_chosen",
        "val",
        "curve",
        "budget",
        "rounds_run",
        "model_bytes",
    ]
    assert list(full["communication"]["hosp-a"]) == [
        "mmlego_up",
        "mmlego_down",
        "mmlego_rounds",
        "evaluation_up",
        "evaluation_down",
        "baseline_up",
        "baseline_down",
        "baseline_rounds",
    ]
    assert list(full["fuse"]) == ["model", "card", "validation"]
    unfused = a_report(fused=False).to_json()
    assert list(unfused["fuse"]) == ["not_stored", "curve"] and unfused["recommended"] == {}
    assert list(full["validation"]) == [
        "how",
        "candidates",
        "chosen",
        "scored_by",
        "declined_by",
        "silent",
        "site_patients",
        "fuse_rounds",
    ]


def test_every_report_comes_back_from_its_json() -> None:
    for compared in (True, False):
        for fused in (True, False):
            report = a_report(3, compared, fused)
            text = json.dumps(report.to_json(), indent=1, default=float)
            back = Report.from_json(json.loads(text))
            assert back == report
            assert json.dumps(back.to_json(), indent=1, default=float) == text


def test_a_summary_over_seeds_keeps_its_keys_and_comes_back_from_its_json() -> None:
    report = a_report()
    summary = SeedsSummary(
        scenario="two-sites",
        metric="c-index",
        metric_scope=report.metric_scope,
        folds=5,
        seeds=(0, 1),
        summary=(SeedRow("LegoFuse", "fuse", 90, 0.6, 0.01, (0, 1), (0.59, 0.61), ("a", "b")),),
        comparisons=(comparison("fuse"),),
        comparison_seeds=2,
        per_site=(SeedSite("hosp-a", 50, (SiteKindRow("fuse", 0.6, 0.0, 2),), ()),),
        runs=(SeedRun(0, "size", ("hosp-a",), (), "t1-v2", None, report.validation),),
    )
    doc = summary.to_json()
    assert list(doc) == [
        "scenario",
        "metric",
        "metric_scope",
        "folds",
        "seeds",
        "summary",
        "comparisons",
        "comparison_seeds",
        "per_site",
        "runs",
    ]
    assert list(doc["summary"][0]) == [
        "model",
        "kind",
        "patients",
        "mean",
        "std",
        "seeds",
        "values",
        "picked",
    ]
    assert list(doc["runs"][0]) == [
        "seed",
        "merge",
        "scored_by",
        "declined_by",
        "fuse",
        "recommended",
        "for_sites",
        "validation",
    ]
    assert list(doc["per_site"][0]["rows"][0]) == ["kind", "mean", "std", "seeds"]
    assert SeedsSummary.from_json(json.loads(json.dumps(doc))) == summary
