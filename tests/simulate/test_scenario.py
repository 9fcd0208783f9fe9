"""Scenario files and how a scenario splits the data: the test patients are never a site's, the
validation patients are shared out to the sites marked as such (never trained on), groups and
shares go where the file says, overlap means shared patients, and a bad file gets one message
naming what is wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.tomlconfig import ConfigError
from coordinator.simulate.scenario import builtin_names, load_scenario, partition, scale_scenario


def ids(data: object) -> set[str]:
    return set(data.ids)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["ovarian-4", "nki70-3", "pbc-3"])
def test_builtin_scenarios_hold_out_patients_no_site_trains_on(name: str) -> None:
    scn = load_scenario(name)
    part = partition(scn)
    test, val = ids(part.test[0]), ids(part.val[0])
    assert not test & val
    held_by_sites: set[str] = set()
    for site in scn.spec.sites:
        data = part.sites[site.name]
        assert data.holdout is not None and data.holdout.any() and not data.holdout.all()
        training = {p for p, h in zip(data.ids, data.holdout, strict=True) if not h}
        validation = {p for p, h in zip(data.ids, data.holdout, strict=True) if h}
        assert not ids(data) & test, f"{site.name} holds test patients"
        assert not training & val and validation <= val, f"{site.name} trains on validation patients"
        assert not validation & held_by_sites, "a validation patient went to two sites"
        held_by_sites |= validation
        assert sorted(data.modalities) == sorted(site.modalities)
    assert held_by_sites == val  # every validation patient is some site's
    assert sum(s.paired for s in scn.spec.sites) == 1 and len(scn.spec.sites) == int(name[-1])
    assert "ovarian-4" in builtin_names() and "scale" in builtin_names()


def test_ovarian_sites_are_the_four_studies() -> None:
    scn = load_scenario("ovarian-4")
    part = partition(scn)
    for site in scn.spec.sites:
        assert set(part.sites[site.name].groups) == {site.group}  # type: ignore[arg-type]
    sizes = {s.name: len(part.sites[s.name]) for s in scn.spec.sites}
    assert sizes["hosp-16"] > sizes["hosp-13"] > sizes["hosp-4"] > sizes["hosp-9"]  # 510 / 260 / 84 / 58 patients before the split


def test_overlap_is_a_pool_of_patients_every_site_holds(tmp_path: Path) -> None:
    text = Path(load_scenario("nki70-3").source).read_text()  # type: ignore[arg-type]
    for overlap in (0.0, 0.3):
        f = tmp_path / f"o{overlap}.toml"
        f.write_text(text.replace('dataset = "nki70"', f'dataset = "nki70"\noverlap = {overlap}'))
        part = partition(load_scenario(str(f)))
        sets = [{p for p, h in zip(d.ids, d.holdout, strict=True) if not h} for d in part.sites.values()]
        common = sets[0] & sets[1] & sets[2]
        assert len(common) == round(overlap * len(part.train_pool))  # type: ignore[arg-type]
        assert not (sets[0] & sets[1]) - common  # beyond the shared pool, sites hold different patients


@pytest.mark.parametrize("change,message", [
    (lambda t: t.replace('name = "hosp-clinic"', 'name = "hosp-omics"'), "same name"),
    (lambda t: t.replace('share = 1.0\n\n[[sites]]\nname = "hosp-clinic"', 'share = 1.0\ngroup = "x"\n\n[[sites]]\nname = "hosp-clinic"'),
     "exactly one of group, share or data"),
    (lambda t: t.replace('modalities = ["genes"]', 'modalities = ["slides"]'), "no modality slides"),
    (lambda t: t.replace('share = 1.0', 'group = "study99"', 1), "no group 'study99'"),
    (lambda t: t.replace('rounds = 2', 'rounds = -1'), "rounds"),
    (lambda t: t.replace('name = "hosp-omics"', 'name = "../etc"'), "site"),
    (lambda t: t + "\ncolour = 3\n", "colour"),
    (lambda t: t.replace('dataset = "nki70"', ''), "name one dataset"),
    (lambda t: t.replace('seed = 0', 'seed = 0\nblock_epsilon = 0.0'), "block_epsilon"),
    (lambda t: t.replace('dataset = "nki70"', 'block_epsilon = 3.0') + "\n[slides]\nslides = 40\n", "DP training of slide blocks"),
])
def test_a_bad_scenario_file_is_refused_with_a_message_naming_the_problem(tmp_path: Path, change: object, message: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(change(Path(load_scenario("nki70-3").source).read_text()))  # type: ignore[operator, arg-type]
    with pytest.raises(ConfigError, match=message):
        partition(load_scenario(str(f)))


def test_unknown_scenarios_and_misplaced_options_are_named() -> None:
    with pytest.raises(ConfigError, match="no such scenario file or built-in scenario"):
        load_scenario("ovarian-5")
    with pytest.raises(ConfigError, match="--sites goes with --scenario scale"):
        load_scenario("nki70-3", sites=5)


def test_the_scale_scenario_is_synthetic_and_has_paired_sites() -> None:
    scn = scale_scenario(25)
    part = partition(scn)
    assert part.synthetic and len(part.sites) == 25
    assert sum(s.paired for s in scn.spec.sites) == 2 and not scn.spec.compare
    assert min(len(d) for d in part.sites.values()) >= 100


def test_a_scenario_of_site_data_folders_holds_out_part_of_every_site(tmp_path: Path) -> None:
    from common.data import load_builtin
    from common.data.export import export_site_folder

    data = load_builtin("nki70")
    export_site_folder(data.subset(np.arange(0, 72)).select_modalities(["genes"]), tmp_path / "a")
    export_site_folder(data.subset(np.arange(72, 144)), tmp_path / "b")
    (tmp_path / "s.toml").write_text('name = "own"\n[[sites]]\nname = "hosp-a"\nmodalities = ["genes"]\ndata = "a"\n'
                                     '[[sites]]\nname = "hosp-b"\nmodalities = ["genes", "clinical"]\ndata = "b"\n')
    part = partition(load_scenario(str(tmp_path / "s.toml")))
    assert part.train_pool is None and len(part.test) == len(part.val) == 2
    for i, site in enumerate(("hosp-a", "hosp-b")):
        data = part.sites[site]
        assert ids(part.test[i]) and not ids(data) & ids(part.test[i]) and part.test_of[site] == i
        assert {p for p, h in zip(data.ids, data.holdout, strict=True) if h} == ids(part.val[i])  # its own validation part
        assert len(data) + len(part.test[i]) == 72
    assert sorted(part.sites["hosp-b"].modalities) == ["clinical", "genes"]
