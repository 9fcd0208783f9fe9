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
