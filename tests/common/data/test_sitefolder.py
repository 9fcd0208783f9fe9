"""The site data folder: the example loads; every kind of bad input is named; nothing partial."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from common.data import load_builtin
from common.data.errors import DataError
from common.data.export import export_by_group, export_site_folder
from common.data.sitefolder import load_site_folder

EXAMPLE = Path(__file__).parents[3] / "examples" / "site-data"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    dst = tmp_path / "site"
    shutil.copytree(EXAMPLE, dst)
    return dst


def test_example_folder_loads() -> None:
    data = load_site_folder(EXAMPLE)
    assert len(data) == 40 and data.task == "survival" and int(data.event.sum()) > 5
    genes, clinical, labs = (data.modalities[m] for m in ("genes", "clinical", "labs"))
    assert genes.present.sum() == 38 and not genes.present[data.ids.index("P003")]
    assert clinical.features == ["age", "grade=high", "grade=low", "er=neg", "er=pos"]
    assert labs.kind == "sequence" and labs.mask is not None and labs.x.shape[1:] == (5, 2)
    assert not labs.present[data.ids.index("P005")]
    first = data.ids.index("P000")
    raw = pd.read_csv(EXAMPLE / "labs.csv").query("patient_id == 'P000'").sort_values("day")
    n = len(raw)
    assert labs.mask[first].sum() == n
    np.testing.assert_allclose(
        labs.x[first, :n].numpy(), raw[["bili", "albumin"]].to_numpy(), rtol=1e-6
    )
    assert set(data.groups.tolist()) == {"north", "south"}


def test_parquet_tables_load_like_csv(site: Path) -> None:
    genes = pd.read_csv(site / "genes.csv", dtype={"patient_id": str})
    pq.write_table(pa.Table.from_pandas(genes), site / "genes.parquet")  # a hard dependency
    toml = (site / "data.toml").read_text().replace('file = "genes.csv"', 'file = "genes.parquet"')
    (site / "data.toml").write_text(toml)
    a, b = load_site_folder(EXAMPLE), load_site_folder(site)
    assert torch.equal(a.modalities["genes"].x, b.modalities["genes"].x)


@pytest.mark.parametrize("name", ["nki70", "pbc", "mfeat"])
def test_builtin_export_load_round_trip_is_identical(tmp_path: Path, name: str) -> None:
    data = load_builtin(name)
    back = load_site_folder(export_site_folder(data, tmp_path / name))
    assert back.ids == data.ids and back.task == data.task
    for m, mod in data.modalities.items():
        other = back.modalities[m]
        assert other.kind == mod.kind and other.features == mod.features
        assert torch.equal(other.x, mod.x), m
        assert torch.equal(other.present, mod.present)
        assert (mod.mask is None and other.mask is None) or torch.equal(other.mask, mod.mask)
    for attr in ("time", "event", "label"):
        a, b = getattr(data, attr), getattr(back, attr)
        assert (a is None and b is None) or np.array_equal(a, b), attr


def test_export_split_by_study(tmp_path: Path) -> None:
    data = load_builtin("ovarian")
    folders = export_by_group(data, tmp_path)
    parts = [load_site_folder(f) for f in folders]
    assert sorted(len(p) for p in parts) == [58, 84, 260, 510]
    assert sum(int(p.event.sum()) for p in parts) == int(data.event.sum())


def edit(path: Path, old: str, new: str) -> None:
    """Replace the first line of ``path`` that starts with ``old`` (comments included) by
    ``new``."""
    lines = path.read_text().splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith(old))
    lines[i] = new
    path.write_text("\n".join(lines) + "\n")


def expect(site: Path, *fragments: str) -> None:
    with pytest.raises(DataError) as info:
        load_site_folder(site)
    for f in fragments:
        assert f in str(info.value), str(info.value)


def test_missing_config(tmp_path: Path) -> None:
    expect(tmp_path, "data.toml", "not found")


def test_bad_toml_and_unknown_key(site: Path) -> None:
    (site / "data.toml").write_text("task = [")
    expect(site, "data.toml", "not valid TOML")
    shutil.copy(EXAMPLE / "data.toml", site / "data.toml")
    edit(site / "data.toml", 'task = "survival"', 'task = "survival"\ncolour = "red"')
    expect(site, "data.toml", "colour", "Extra inputs")


def test_survival_without_time_column_config(site: Path) -> None:
    edit(site / "data.toml", 'time = "time"', "")
    expect(site, "data.toml", "needs [labels] time and event")


def test_missing_file(site: Path) -> None:
    (site / "genes.csv").unlink()
    expect(site, "genes.csv", "file not found")


def test_missing_column(site: Path) -> None:
    edit(site / "data.toml", 'columns = ["bili", "albumin"]', 'columns = ["bili", "ast"]')
    expect(site, "labs.csv", "column 'ast'", "missing")


def test_duplicate_patient(site: Path) -> None:
    df = pd.read_csv(site / "genes.csv", dtype={"patient_id": str})
    df.loc[5, "patient_id"] = df.loc[2, "patient_id"]
    df.to_csv(site / "genes.csv", index=False)
    expect(
        site, "genes.csv", "column 'patient_id'", "row 6", "duplicate patient id", "first at row 3"
    )


@pytest.mark.parametrize("value", ["nan", "inf", "abc", ""])
def test_non_finite_value(site: Path, value: str) -> None:
    df = pd.read_csv(site / "genes.csv", dtype={"patient_id": str}).astype({"GENE4": object})
    df.loc[7, "GENE4"] = value
    df.to_csv(site / "genes.csv", index=False)
    expect(site, "genes.csv", "column 'GENE4'", "row 8", "not a finite number")


def test_patient_not_in_label_table(site: Path) -> None:
    with open(site / "clinical.csv", "a") as f:
        f.write("X999,50,low,pos\n")
    expect(site, "clinical.csv", "X999", "no row in the label table")


def test_bad_event_and_too_few_events(site: Path) -> None:
    df = pd.read_csv(site / "labels.csv", dtype={"patient_id": str})
    df.loc[4, "event"] = 2
    df.to_csv(site / "labels.csv", index=False)
    expect(site, "labels.csv", "column 'event'", "row 5", "0 or 1")
    df["event"] = 0
    df.loc[:2, "event"] = 1
    df.to_csv(site / "labels.csv", index=False)
    expect(site, "labels.csv", "only 3 events")


def test_repeated_order_value_in_a_sequence(site: Path) -> None:
    df = pd.read_csv(site / "labs.csv", dtype={"patient_id": str})
    first = df.index[df.patient_id == "P000"]
    df.loc[first[1], "day"] = df.loc[first[0], "day"]
    df.to_csv(site / "labs.csv", index=False)
    expect(site, "labs.csv", "column 'day'", "P000", "share the order value")


def test_unreadable_file_type(site: Path) -> None:
    (site / "genes.xlsx").write_bytes(b"PK\x03\x04")
    edit(site / "data.toml", 'file = "genes.csv"', 'file = "genes.xlsx"')
    expect(site, "genes.xlsx", "unsupported file type")


def test_a_modality_file_with_a_header_only_loads_with_no_patient_present(site: Path) -> None:
    """Found by the loader fuzz: a table of categorical columns with no rows has no levels."""
    (site / "clinical.csv").write_text("patient_id,age,grade,er\n")
    data = load_site_folder(site)
    clinical = data.modalities["clinical"]
    assert (
        clinical.features == ["age"]
        and not clinical.present.any()
        and data.modalities["genes"].present.any()
    )


def test_classification_labels_checked(site: Path) -> None:
    df = pd.read_csv(site / "labels.csv", dtype={"patient_id": str})
    df["label"] = [float(i % 2) for i in range(len(df))]
    df.loc[9, "label"] = 1.5
    df.to_csv(site / "labels.csv", index=False)
    edit(site / "data.toml", 'task = "survival"', 'task = "classification"')
    edit(site / "data.toml", 'time = "time"', 'label = "label"')
    edit(site / "data.toml", 'event = "event"', "")
    expect(site, "labels.csv", "column 'label'", "row 10", "integer")


def test_a_split_column_names_the_validation_patients_and_round_trips(
    tmp_path: Path, site: Path
) -> None:
    data = load_site_folder(EXAMPLE)
    data.holdout = np.arange(len(data)) % 5 == 0
    back = load_site_folder(export_site_folder(data, tmp_path / "split"))
    assert back.holdout is not None and np.array_equal(back.holdout, data.holdout)
    labels = pd.read_csv(site / "labels.csv")
    labels["split"] = ["validation" if i % 4 == 0 else "Train" for i in range(len(labels))]
    labels.loc[7, "split"] = "test"
    labels.to_csv(site / "labels.csv", index=False)
    (site / "data.toml").write_text(
        (site / "data.toml")
        .read_text()
        .replace('group = "hospital"', 'group = "hospital"\nsplit = "split"')
    )
    with pytest.raises(
        DataError,
        match=(
            r"column 'split', row 8 \(patient 'P007'\): "
            r"split must be 'train' or 'validation', got 'test'"
        ),
    ):
        load_site_folder(site)
