"""Scenario files and how a scenario splits the data: every hospital holds out its own test fold
of the seed (never trained on, never chosen with), the seeds of one block of ``test_folds`` test
disjoint patients that together are every patient, groups and shares go where the file says,
overlap means shared patients (never tested), and a bad file gets one message naming what is
wrong."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from common.tomlconfig import ConfigError
from simulate.scenario import builtin_names, load_scenario, partition, scale_scenario


def ids(data: object) -> set[str]:
    return set(data.ids)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["ovarian-4", "nki70-3", "pbc-3"])
def test_every_hospital_holds_out_its_own_test_patients_and_seeds_test_every_patient_once(
    name: str,
) -> None:
    scn = load_scenario(name)
    tested: list[set[str]] = []
    for seed in range(scn.spec.test_folds):
        part = partition(scn.with_seed(seed))
        held: set[str] = set()
        for site in scn.spec.sites:
            data, test = part.sites[site.name], part.test[part.test_of[site.name]]
            assert ids(test) and not ids(data) & ids(test), (
                f"{site.name} holds its own test patients"
            )
            assert not ids(data) & held, "a patient went to two sites"
            held |= ids(data) | ids(test)
            assert sorted(data.modalities) == sorted(site.modalities) and data.holdout is None
            assert sorted(test.modalities) == sorted(
                {m for s in scn.spec.sites for m in s.modalities}
            )  # every modality
        every = set().union(*(ids(t) for t in part.test))
        assert not any(every & earlier for earlier in tested), (
            f"seed {seed} tests patients an earlier seed tested"
        )
        tested.append(every)
        if seed == 0:
            first = {s: ids(d) | ids(part.test[part.test_of[s]]) for s, d in part.sites.items()}
    assert set().union(*tested) == held  # seeds 0-4: every patient tested once
    again = partition(
        scn.with_seed(scn.spec.test_folds)
    )  # the next block of seeds deals the patients anew
    dealt = {s: ids(d) | ids(again.test[again.test_of[s]]) for s, d in again.sites.items()}
    assert (dealt != first) == (
        name != "ovarian-4"
    )  # ovarian's hospitals are its studies, whatever the seed
    assert sum(s.paired for s in scn.spec.sites) == 1 and len(scn.spec.sites) == int(name[-1])
    assert (
        "ovarian-4" in builtin_names()
        and "support2-5" in builtin_names()
        and "scale" in builtin_names()
    )


def test_ovarian_sites_are_the_four_studies() -> None:
    scn = load_scenario("ovarian-4")
    part = partition(scn)
    for site in scn.spec.sites:
        assert set(part.sites[site.name].groups) == {site.group}  # type: ignore[arg-type]
    sizes = {s.name: len(part.sites[s.name]) for s in scn.spec.sites}
    assert (
        sizes["hosp-16"] > sizes["hosp-13"] > sizes["hosp-4"] > sizes["hosp-9"]
    )  # 510 / 260 / 84 / 58 patients before the split


def test_the_large_scenario_is_five_hospitals_of_support2_with_different_case_mix() -> None:
    scn = load_scenario("support2-5")
    part = partition(scn)
    sizes = {s: len(d) + len(part.test[part.test_of[s]]) for s, d in part.sites.items()}
    assert (
        sum(sizes.values()) == 9105 and min(sizes.values()) >= 500 and max(sizes.values()) >= 3000
    )
    rates = {s: float(np.mean(d.event)) for s, d in part.sites.items()}  # type: ignore[arg-type]
    assert (
        max(rates.values()) - min(rates.values()) > 0.2
    )  # case mix: oncology and coma die far more often
    coverage = {s: sorted(d.modalities) for s, d in part.sites.items()}
    assert len({tuple(c) for c in coverage.values()}) >= 4


def test_overlap_is_a_pool_of_patients_every_site_holds_and_none_tests_or_validates(
    tmp_path: Path,
) -> None:
    text = Path(load_scenario("nki70-3").source).read_text()  # type: ignore[arg-type]
    for overlap in (0.0, 0.3):
        f = tmp_path / f"o{overlap}.toml"
        f.write_text(
            text.replace('dataset = "nki70"', f'dataset = "nki70"\noverlap = {overlap}\nfolds = 0')
        )
        part = partition(load_scenario(str(f)))
        sets = [ids(d) for d in part.sites.values()]
        common = sets[0] & sets[1] & sets[2]
        assert len(common) == round(overlap * 144)
        assert (
            not (sets[0] & sets[1]) - common
        )  # beyond the shared pool, sites hold different patients
        assert not common & set().union(*(ids(t) for t in part.test))
        for d in (
            part.sites.values()
        ):  # a shared patient is every site's training patient, never its validation patient
            assert (d.holdout is None) == (overlap == 0)
            if d.holdout is not None:
                assert (
                    d.holdout.any()
                    and not {p for p, h in zip(d.ids, d.holdout, strict=True) if h} & common
                )
        assert len(part.pooled()) == len(
            set().union(*sets)
        )  # the central analyst has each patient once
    f = tmp_path / "cross.toml"
    f.write_text(text.replace('dataset = "nki70"', 'dataset = "nki70"\noverlap = 0.2'))
    with pytest.raises(ConfigError, match="overlap > 0 needs folds = 0"):
        load_scenario(str(f))


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda t: t.replace('name = "hosp-clinic"', 'name = "hosp-omics"'), "same name"),
        (
            lambda t: t.replace(
                'share = 1.0\n\n[[sites]]\nname = "hosp-clinic"',
                'share = 1.0\ngroup = "x"\n\n[[sites]]\nname = "hosp-clinic"',
            ),
            "exactly one of group, share or data",
        ),
        (
            lambda t: t.replace('modalities = ["genes"]', 'modalities = ["slides"]'),
            "no modality slides",
        ),
        (lambda t: t.replace("share = 1.0", 'group = "study99"', 1), "no group 'study99'"),
        (lambda t: t.replace("rounds = 2", "rounds = -1"), "rounds"),
        (lambda t: t.replace('name = "hosp-omics"', 'name = "../etc"'), "site"),
        (lambda t: t + "\ncolour = 3\n", "colour"),
        (lambda t: t.replace('dataset = "nki70"', ""), "name one dataset"),
        (lambda t: t.replace("seed = 0", "seed = 0\nblock_epsilon = 0.0"), "block_epsilon"),
        (
            lambda t: (
                t.replace('dataset = "nki70"', "block_epsilon = 3.0") + "\n[slides]\nslides = 40\n"
            ),
            "DP training of slide blocks",
        ),
    ],
)
def test_a_bad_scenario_file_is_refused_with_a_message_naming_the_problem(
    tmp_path: Path, change: object, message: str
) -> None:
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
    (tmp_path / "s.toml").write_text(
        'name = "own"\n[[sites]]\nname = "hosp-a"\nmodalities = ["genes"]\ndata = "a"\n'
        '[[sites]]\nname = "hosp-b"\nmodalities = ["genes", "clinical"]\ndata = "b"\n'
    )
    part = partition(load_scenario(str(tmp_path / "s.toml")))
    assert len(part.test) == 2
    for i, site in enumerate(("hosp-a", "hosp-b")):
        data = part.sites[site]
        assert ids(part.test[i]) and not ids(data) & ids(part.test[i]) and part.test_of[site] == i
        assert (
            len(data) + len(part.test[i]) == 72 and 12 <= len(part.test[i]) <= 16
        )  # a fifth of its patients
    assert sorted(part.sites["hosp-b"].modalities) == ["clinical", "genes"]


def test_cross_fitting_needs_two_folds_or_none(tmp_path: Path) -> None:
    f = tmp_path / "one.toml"
    f.write_text(
        Path(load_scenario("nki70-3").source).read_text().replace("seed = 0", "seed = 0\nfolds = 1")
    )  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="folds = 1 cannot cross-fit"):
        load_scenario(str(f))


def test_set_changes_top_level_settings_and_fuse_sites_all_takes_every_site() -> None:
    scn = load_scenario("ovarian-folders")
    assert scn.spec.fuse_sites == "paired" and [s.name for s in scn.fuse_sites()] == ["hosp-13"]
    changed = scn.with_settings({"fuse_sites": "all", "proximal_mu": "0.01", "rounds": "3"})
    assert (changed.spec.fuse_sites, changed.spec.proximal_mu, changed.spec.rounds) == (
        "all",
        0.01,
        3,
    )
    assert [s.name for s in changed.fuse_sites()] == ["hosp-16", "hosp-13", "hosp-4"]
    assert changed.with_settings({"fuse_sites": '"paired"'}).spec.fuse_sites == "paired"  # TOML
    for bad, message in (
        ({"fuse_sites": "every"}, "--set: fuse_sites: Input should be 'paired' or 'all'"),
        ({"proximal_mu": "-1"}, "--set: proximal_mu: Input should be greater than or equal to 0"),
        ({"sites": "[]"}, "--set: unknown scenario setting"),
        ({"folds": "1"}, "folds = 1 cannot cross-fit"),  # the whole scenario is checked again
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            scn.with_settings(bad)
