"""The configuration files the simulator writes: the schemas' defaults but for the simulation's
own settings, through the one writer of each file."""

from __future__ import annotations

from pathlib import Path

from common.sitetoml import EvaluationSection as SiteEvaluation
from common.sitetoml import FlowerSection as SiteFlower
from common.sitetoml import SiteFile
from common.tomlconfig import read_toml
from common.train.siteblock import SitePrivacy
from coordinator.config import (
    CoordinatorFile,
    EvaluationSection,
    FlowerSection,
    ServerSection,
    ServerTLSSection,
    load_config,
)
from simulate.run import block_training, coordinator_toml, site_toml
from simulate.scenario import load_scenario


def test_the_simulated_coordinator_differs_from_the_defaults_only_where_the_run_needs(
    tmp_path: Path,
) -> None:
    scn = load_scenario("nki70-3")
    path = tmp_path / "coordinator.toml"
    path.write_text(coordinator_toml("127.0.0.1:5000", "127.0.0.1:5001", 2, scn, True))
    assert read_toml(path, CoordinatorFile) == CoordinatorFile(
        server=ServerSection(listen="127.0.0.1:5000"),
        tls=ServerTLSSection(crl="../ca/crl.pem"),
        evaluation=EvaluationSection(deadline_s=scn.spec.eval_deadline_s),
        flower=FlowerSection(
            superlink="127.0.0.1:5001", discovery_timeout_s=300.0, expect_sites=2, simulation=True
        ),
    )
    assert load_config(path).flower.simulation


def test_a_simulated_site_differs_from_the_defaults_only_where_the_scenario_says(
    tmp_path: Path,
) -> None:
    scn = load_scenario("nki70-3")
    path = tmp_path / "site.toml"
    path.write_text(
        site_toml("hosp-a", ["genes"], True, "127.0.0.1:5000", "t1", "127.0.0.1:5001", 5002, scn)
    )
    assert read_toml(path, SiteFile) == SiteFile(
        site="hosp-a",
        modalities=["genes"],
        paired=True,
        coordinator="127.0.0.1:5000",
        task="t1",
        flower=SiteFlower(superlink="127.0.0.1:5001", port=5002),
        train=block_training(scn),
        privacy=SitePrivacy(
            min_cell_size=scn.spec.min_cell_size, block_epsilon=scn.spec.block_epsilon
        ),
        evaluation=SiteEvaluation(poll_s=2.0, folds=scn.spec.folds),
    )

    unpaired = tmp_path / "unpaired.toml"  # a site without pairs that trains in a run over all
    unpaired.write_text(
        site_toml(
            "hosp-b",
            ["clinical"],
            False,
            "127.0.0.1:5000",
            "t1",
            "127.0.0.1:5001",
            5003,
            scn,
            supernode=True,
        )
    )
    assert read_toml(unpaired, SiteFile).flower == SiteFlower(
        superlink="127.0.0.1:5001", port=5003, supernode=True
    )


def test_evaluators_start_scoring_sites_first_and_a_switched_off_site_until_it_declined() -> None:
    from common.client import TLSFiles
    from common.evaluation.candidates import Candidate, EvaluationJob, JobStatus
    from common.records import TaskRecord
    from simulate.engine import Services
    from simulate.run import to_start

    svc = Services(
        "127.0.0.1:1",
        TLSFiles(Path("c"), Path("k"), Path("ca")),
        Path("x"),
        TaskRecord.__new__(TaskRecord),
        {},
        False,
        switched_off=frozenset({"a-off", "b-off"}),
    )
    job = EvaluationJob("t-e1", "t", "merge", (Candidate("c0", "merge", "u", ("0" * 64,)),))
    sites = ["a-off", "b-off", "c-on", "d-on"]
    tries: dict[tuple[str, str], int] = {}
    first = to_start(svc, sites, [JobStatus(job, "open")], set(), tries, 2)
    assert first == ["c-on", "d-on"]  # the scoring sites first, two at a time
    assert to_start(svc, sites, [JobStatus(job, "open")], {"c-on", "d-on"}, tries, 3) == ["a-off"]
    answered = JobStatus(job, "open", reported=("c-on", "d-on"), declined=("a-off",))
    assert to_start(svc, sites, [answered], set(), tries, 2) == ["b-off"]
    assert svc.told == {"a-off"}
    # a later job: the switched-off site that declined is not started again; each site twice at most
    job2 = EvaluationJob("t-e2", "t", "merge", job.candidates)
    assert to_start(svc, sites, [JobStatus(job2, "open")], set(), tries, 8) == [
        "c-on",
        "d-on",
        "b-off",
    ]
    assert to_start(svc, sites, [JobStatus(job2, "open")], set(), tries, 8) == [
        "c-on",
        "d-on",
        "b-off",
    ]
    assert to_start(svc, sites, [JobStatus(job2, "open")], set(), tries, 8) == []
