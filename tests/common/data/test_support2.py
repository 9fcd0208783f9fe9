"""The SUPPORT2 built-in dataset (needs the datasets extra): three filled tabular modalities, no
prognosis or outcome column among the inputs, five disease-group hospitals, public ranges."""

import numpy as np
import pytest

from common.data import BUILTIN, load_builtin
from common.data.builtin import DEFAULT_BENCH
from common.data.builtin.ranges import public_ranges
from common.data.builtin.support2 import INDICATED, NORMAL
from common.data.dataset import MultimodalDataset

MODALITIES = ("physiology", "labs", "history")


@pytest.fixture(scope="module")
def data() -> MultimodalDataset:
    return load_builtin("support2")


def test_shape_targets_and_ids(data: MultimodalDataset) -> None:
    assert len(data) == 9105 and data.task == "survival"
    assert data.time.dtype == np.float64 and data.event.dtype == np.bool_
    assert 0.67 < data.event.mean() < 0.69
    assert data.ids[0] == "support2-0" and len(set(data.ids)) == len(data)
    assert data.meta == {
        "source": "survset (support2)",
        "licence": "GPL-3",
        "group": "disease group",
    }


def test_modalities_have_the_expected_features(data: MultimodalDataset) -> None:
    assert tuple(data.modalities) == MODALITIES
    assert data.modalities["physiology"].features == [
        "meanbp",
        "wblc",
        "hrt",
        "resp",
        "temp",
        "pafi",
        "scoma",
        "wblc_missing",
        "pafi_missing",
    ]
    assert data.modalities["labs"].features == [
        "alb",
        "bili",
        "crea",
        "sod",
        "ph",
        "glucose",
        "bun",
        "urine",
        "alb_missing",
        "bili_missing",
        "ph_missing",
        "glucose_missing",
        "bun_missing",
        "urine_missing",
    ]
    history = data.modalities["history"].features
    assert history[:8] == [
        "age",
        "num_co",
        "edu",
        "adlp",
        "adls",
        "edu_missing",
        "adlp_missing",
        "adls_missing",
    ]
    assert {f.split("=")[0] for f in history[8:]} == {
        "sex",
        "race",
        "income",
        "diabetes",
        "dementia",
        "ca",
        "dzgroup",
    }
    assert len(history) == 36


def test_every_value_finite_and_every_modality_present(data: MultimodalDataset) -> None:
    for mod in data.modalities.values():
        assert np.isfinite(mod.x.numpy()).all() and bool(mod.present.all())


def test_missing_values_filled_with_normals_and_flagged(data: MultimodalDataset) -> None:
    labs = data.modalities["labs"]
    missing = labs.x[:, labs.features.index("alb_missing")].numpy() == 1
    assert missing.sum() == 3372
    assert np.allclose(labs.x[missing, labs.features.index("alb")].numpy(), NORMAL["alb"])
    assert "crea_missing" not in labs.features  # 67 missing: under 1 %, filled without an indicator
    indicators = {
        f.removesuffix("_missing")
        for m in data.modalities.values()
        for f in m.features
        if f.endswith("_missing")
    }
    assert indicators == INDICATED


def test_indicators_are_the_filled_columns_over_one_percent_missing() -> None:
    from SurvSet.data import SurvLoader

    raw = SurvLoader().load_dataset(ds_name="support2")["df"]
    share = {c: raw[f"num_{c}"].isna().mean() for c in NORMAL}
    assert set(NORMAL) == {
        c for c, s in share.items() if s > 0
    }  # every column with a gap has a normal value
    assert {c for c, s in share.items() if s > 0.01} == INDICATED


def test_no_prognosis_or_outcome_among_the_inputs(data: MultimodalDataset) -> None:
    leaked = ("surv2m", "surv6m", "sps", "sfdm2", "dnr", "hday", "dzclass")
    names = [f for m in data.modalities.values() for f in m.features]
    assert not [f for f in names if any(bad in f for bad in leaked)]


def test_disease_groups_are_the_hospitals(data: MultimodalDataset) -> None:
    names, sizes = np.unique(data.groups, return_counts=True)
    assert dict(zip(names.tolist(), sizes.tolist(), strict=True)) == {
        "sepsis": 3515,
        "cardiopulmonary": 2354,
        "oncology": 2132,
        "liver": 508,
        "coma": 596,
    }


def test_public_ranges_cover_every_feature(data: MultimodalDataset) -> None:
    ranges = public_ranges("support2", MODALITIES)
    assert set(ranges) == set(MODALITIES)
    for name, mod in data.modalities.items():
        means, stds = ranges[name].scaling(name, mod.features)
        assert len(means) == mod.n_features and min(stds) > 0


def test_registered_but_not_in_the_default_bench() -> None:
    entry = BUILTIN["support2"]
    assert (entry.package, entry.licence) == ("survset", "GPL-3") and "9,105" in entry.description
    assert "support2" not in DEFAULT_BENCH
