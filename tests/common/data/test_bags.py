"""Bag modalities of per-slide feature files: HDF5, safetensors and .npy in float16 / bfloat16 /
float32 read alike; a patient's slides form one bag; headers only at load; every bad input named
(file and slide); training draws a fresh seeded subset per epoch, evaluation reads every instance
(or a fixed subset); the input scaling is an aggregate over patients; export round-trips."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.data.bags import BagData, Sampling
from common.data.errors import DataError
from common.data.export import export_site_folder
from common.data.sitefolder import load_site_folder
from common.data.slidecohort import SlideCohort, write_slide_cohort
from common.data.splits import Standardizer, bag_scaling

F = 6


def write_features(
    path: Path, x: np.ndarray, fmt: str | None = None, dtype: str = "float32"
) -> None:
    fmt = fmt or path.suffix.lstrip(".")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "h5":
        with h5py.File(path, "w") as h5:
            h5["features"] = x.astype(dtype)
            h5["coords"] = np.zeros((len(x), 2), dtype=np.int32)
    elif fmt == "npy":
        np.save(path, x.astype(dtype))
    else:  # safetensors, written by hand so that bfloat16 needs no torch
        if dtype == "bfloat16":
            raw, code = (x.astype(np.float32).view(np.uint32) >> 16).astype("<u2").tobytes(), "BF16"
        else:
            raw, code = x.astype(dtype).tobytes(), {"float16": "F16", "float32": "F32"}[dtype]
        header = json.dumps(
            {"features": {"dtype": code, "shape": list(x.shape), "data_offsets": [0, len(raw)]}}
        ).encode()
        path.write_bytes(struct.pack("<Q", len(header)) + header + raw)


def bag_folder(
    root: Path,
    sizes: dict[str, list[int]],
    suffix: str = ".h5",
    slides_table: bool = True,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """A site folder with a bag modality; ``sizes``: patient -> instances of each of its slides.
    Returns slide id -> its features (float32, as written)."""
    rng = np.random.default_rng(seed)
    ids = [f"P{i:03d}" for i in range(12)]
    pd.DataFrame(
        {"patient_id": ids, "time": np.arange(1, 13, dtype=float), "event": [1, 0] * 6}
    ).to_csv(root / "labels.csv", index=False)
    written, rows = {}, []
    for pid, counts in sizes.items():
        for k, n in enumerate(counts):
            sid = pid if not slides_table else f"{pid}-S{k}"
            x = rng.normal(size=(n, F)).astype(np.float32)
            write_features(root / "features" / f"{sid}{suffix}", x)
            written[sid] = x
            rows.append((sid, pid))
    lines = [
        'name = "bags"',
        'task = "survival"',
        "[labels]",
        'file = "labels.csv"',
        'time = "time"',
        'event = "event"',
        "[modalities.slides]",
        'kind = "bag"',
        f'files = "features/{{slide_id}}{suffix}"',
        "max_instances = 4",
    ]
    if slides_table:
        pd.DataFrame(rows, columns=["slide_id", "patient_id"]).to_csv(
            root / "slides.csv", index=False
        )
        lines.append('slides = "slides.csv"')
    (root / "data.toml").write_text("\n".join(lines) + "\n")
    return written


def test_a_patients_slides_form_one_bag_read_whole_for_evaluation(tmp_path: Path) -> None:
    written = bag_folder(tmp_path, {"P000": [5, 3], "P001": [7], "P004": [2]})
    data = load_site_folder(tmp_path)
    mod = data.modalities["slides"]
    assert isinstance(mod, BagData) and mod.n_features == F
    assert mod.sizes().tolist() == [8, 7, 0, 0, 2] + [0] * 7
    assert mod.present.tolist() == [True, True, False, False, True] + [False] * 7
    np.testing.assert_array_equal(
        mod.read(0), np.concatenate([written["P000-S0"], written["P000-S1"]])
    )
    batch = data.inputs(torch.tensor([4, 2, 0]))["slides"]
    assert batch.offsets is not None and batch.offsets.tolist() == [0, 2, 2, 10]
    assert batch.present is not None and batch.present.tolist() == [True, False, True]
    np.testing.assert_array_equal(batch.x[2:].numpy(), mod.read(0))


@pytest.mark.parametrize(
    ("suffix", "dtype", "tol"),
    [
        (".h5", "float16", 1e-3),
        (".h5", "float32", 0),
        (".npy", "float16", 1e-3),
        (".npy", "float32", 0),
        (".safetensors", "float16", 1e-3),
        (".safetensors", "bfloat16", 1e-2),
        (".safetensors", "float32", 0),
    ],
)
def test_every_format_and_dtype_reads_as_float32(
    tmp_path: Path, suffix: str, dtype: str, tol: float
) -> None:
    x = np.random.default_rng(1).normal(size=(9, F)).astype(np.float32)
    path = tmp_path / f"s{suffix}"
    write_features(path, x, dtype=dtype)
    from common.data.slidefiles import probe, read_rows

    slide = probe(path, "s")
    assert (slide.instances, slide.features, slide.dtype) == (9, F, dtype)
    got = read_rows(slide)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, x, rtol=tol, atol=tol)
    np.testing.assert_array_equal(read_rows(slide, np.array([1, 4, 8])), got[[1, 4, 8]])


def test_without_a_slides_table_each_patient_has_the_file_named_by_its_id(tmp_path: Path) -> None:
    bag_folder(tmp_path, {"P002": [4], "P007": [6]}, suffix=".npy", slides_table=False)
    mod = load_site_folder(tmp_path).modalities["slides"]
    assert isinstance(mod, BagData)
    assert np.flatnonzero(mod.sizes()).tolist() == [2, 7]


def expect(folder: Path, *parts: str) -> None:
    with pytest.raises(DataError) as info:
        load_site_folder(folder)
    for p in parts:
        assert p in str(info.value), str(info.value)


def test_bad_slide_files_are_named_with_their_slide(tmp_path: Path) -> None:
    bag_folder(tmp_path, {"P000": [3], "P001": [4]})
    (tmp_path / "features" / "P001-S0.h5").unlink()
    expect(tmp_path, "P001-S0.h5", "slide 'P001-S0'", "not found")
    write_features(tmp_path / "features" / "P001-S0.h5", np.zeros((4, F + 1), dtype=np.float32))
    expect(tmp_path, "P001-S0.h5", "7 features per instance", "'P000-S0' has 6")
    write_features(tmp_path / "features" / "P001-S0.h5", np.zeros((0, F), dtype=np.float32))
    expect(tmp_path, "patient 'P001'", "an empty bag")
    with h5py.File(tmp_path / "features" / "P001-S0.h5", "w") as h5:
        h5["feats"] = np.zeros((4, F), dtype=np.float32)
    expect(tmp_path, "no dataset 'features'", "feats")
    with h5py.File(tmp_path / "features" / "P001-S0.h5", "w") as h5:
        h5["features"] = np.zeros((4, F), dtype=np.int64)
    expect(tmp_path, "float16, bfloat16 or float32", "int64")
    (tmp_path / "features" / "P001-S0.h5").write_bytes(b"not hdf5 at all")
    expect(tmp_path, "slide 'P001-S0'", "not a readable HDF5 file")


def test_pickled_feature_files_are_refused_with_how_to_convert(tmp_path: Path) -> None:
    bag_folder(tmp_path, {"P000": [3]})
    (tmp_path / "features" / "P000-S0.pt").write_bytes(b"\x80\x02}q\x00.")
    toml = (tmp_path / "data.toml").read_text().replace("{slide_id}.h5", "{slide_id}.pt")
    (tmp_path / "data.toml").write_text(toml)
    expect(tmp_path, "P000-S0.pt", "pickles and are refused", "h5py.File")


def test_the_slides_table_is_checked(tmp_path: Path) -> None:
    bag_folder(tmp_path, {"P000": [3], "P001": [4]})
    table = pd.read_csv(tmp_path / "slides.csv")
    pd.concat([table, table.iloc[:1]]).to_csv(tmp_path / "slides.csv", index=False)
    expect(tmp_path, "slides.csv", "row 3", "slide listed twice")
    table.assign(slide_id=["../../etc/passwd", "P001-S0"]).to_csv(
        tmp_path / "slides.csv", index=False
    )
    expect(tmp_path, "slides.csv", "row 1", "cannot name a file")
    table.assign(patient_id=["P000", "NOBODY"]).to_csv(tmp_path / "slides.csv", index=False)
    expect(tmp_path, "slides.csv", "row 2", "no row in the label table")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('files = "features/slide.h5"', "must contain {slide_id}"),
        ('file = "x.csv"', "do not apply"),
    ],
)
def test_a_bad_bag_entry_in_data_toml_is_named(tmp_path: Path, line: str, message: str) -> None:
    bag_folder(tmp_path, {"P000": [3]})
    toml = (tmp_path / "data.toml").read_text()
    if line.startswith("files"):
        toml = toml.replace('files = "features/{slide_id}.h5"', line)
    else:
        toml += line + "\n"
    (tmp_path / "data.toml").write_text(toml)
    expect(tmp_path, "data.toml", message)


def test_a_non_finite_value_is_named_when_read(tmp_path: Path) -> None:
    bag_folder(tmp_path, {"P000": [3], "P001": [5]})
    x = np.ones((5, F), dtype=np.float32)
    x[3, 2] = np.nan
    write_features(tmp_path / "features" / "P001-S0.h5", x)
    mod = load_site_folder(tmp_path).modalities["slides"]  # headers only: loads
    assert isinstance(mod, BagData)
    with pytest.raises(
        DataError, match=r"P001-S0.h5: slide 'P001-S0': instance 3 holds a non-finite value"
    ):
        mod.read(1)


def test_training_draws_a_fresh_seeded_subset_every_epoch_evaluation_reads_every_instance(
    tmp_path: Path,
) -> None:
    bag_folder(tmp_path, {"P000": [6, 5], "P001": [3]})  # max_instances = 4
    mod = load_site_folder(tmp_path).modalities["slides"]
    assert isinstance(mod, BagData)
    whole = mod.read(0)
    rows = {
        tuple(map(tuple, mod.read(0, Sampling(train=True, seed=0, epoch=e)))) for e in range(1, 6)
    }
    assert len(rows) > 1  # different epochs, different subsets
    e1 = mod.read(0, Sampling(train=True, seed=0, epoch=1))
    assert e1.shape == (4, F)
    assert all(
        any(np.array_equal(r, w) for w in whole) for r in e1
    )  # rows of the bag, in order, no repeats
    np.testing.assert_array_equal(mod.read(0, Sampling(train=True, seed=0, epoch=1)), e1)  # seeded
    np.testing.assert_array_equal(
        mod.subset([1, 0]).read(1, Sampling(train=True, seed=0, epoch=1)), e1
    )  # by patient, not row
    assert not np.array_equal(mod.read(0, Sampling(train=True, seed=1, epoch=1)), e1)
    assert mod.read(1, Sampling(train=True, seed=0, epoch=1)).shape == (
        3,
        F,
    )  # a small bag is read whole
    assert mod.read(0).shape == (11, F)
    capped = BagData(mod.bags, mod.keys, mod.features, eval_max_instances=7)
    np.testing.assert_array_equal(capped.read(0), capped.read(0))
    assert capped.read(0).shape == (7, F)


def test_bag_scaling_weighs_every_patient_once_and_folds_what_few_patients_show(
    tmp_path: Path,
) -> None:
    written = bag_folder(tmp_path, {f"P{i:03d}": [3 + i] for i in range(8)}, seed=3)
    for pid in (
        "P000",
        "P001",
        "P002",
        "P003",
        "P004",
        "P005",
        "P006",
    ):  # feature 0: zero in every bag but P007's
        x = written[f"{pid}-S0"]
        x[:, 0] = 0.0
        write_features(tmp_path / "features" / f"{pid}-S0.h5", x)
    mod = load_site_folder(tmp_path).modalities["slides"]
    assert isinstance(mod, BagData)
    mean, std = bag_scaling(mod, per_bag=0)  # every instance: the by-hand value
    bags = [mod.read(i).astype(np.float64) for i in range(8)]
    m = np.mean([b.mean(axis=0) for b in bags], axis=0)
    sq = np.mean([(b * b).mean(axis=0) for b in bags], axis=0)
    np.testing.assert_allclose(mean.numpy(), m, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std.numpy(), np.sqrt(sq - m**2), rtol=1e-4, atol=1e-6)
    assert mean[0] != 0
    folded_mean, folded_std = bag_scaling(mod, min_cell=5, per_bag=0)
    assert (
        folded_mean[0] == 0 and folded_std[0] == 1.0
    )  # one patient's values do not reach the statistics
    np.testing.assert_allclose(folded_mean[1:].numpy(), m[1:], rtol=1e-5, atol=1e-6)
    sample_mean, _ = bag_scaling(mod, bags=4, per_bag=2)  # a seeded sample: repeatable
    assert torch.equal(sample_mean, bag_scaling(mod, bags=4, per_bag=2)[0])
    scaled = (
        Standardizer.fit(load_site_folder(tmp_path), seed=0)
        .apply(load_site_folder(tmp_path))
        .modalities["slides"]
    )
    assert isinstance(scaled, BagData) and scaled.scale is not None


def test_a_bag_folder_exports_and_loads_back(tmp_path: Path) -> None:
    write_slide_cohort(
        tmp_path / "cohort",
        SlideCohort(
            slides=24, features=8, median_instances=20, min_instances=5, max_instances=60, genes=4
        ),
    )
    data = load_site_folder(tmp_path / "cohort")
    part = data.subset(np.arange(3, 18))
    back = load_site_folder(export_site_folder(part, tmp_path / "out"))
    assert back.ids == part.ids
    a, b = part.modalities["slides"], back.modalities["slides"]
    assert isinstance(a, BagData) and isinstance(b, BagData)
    assert [[s.slide_id for s in bag] for bag in a.bags] == [
        [s.slide_id for s in bag] for bag in b.bags
    ]
    for i in range(len(part)):
        np.testing.assert_array_equal(a.read(i), b.read(i))
    assert (tmp_path / "cohort" / "SYNTHETIC.txt").is_file()


def test_a_leading_axis_of_one_is_dropped(tmp_path: Path) -> None:
    x = np.random.default_rng(2).normal(size=(1, 5, F)).astype(np.float32)
    from common.data.slidefiles import probe, read_rows

    for suffix in (".h5", ".npy", ".safetensors"):
        write_features(tmp_path / f"s{suffix}", x, dtype="float32")
        slide = probe(tmp_path / f"s{suffix}", "s")
        assert (slide.instances, slide.features) == (5, F)
        np.testing.assert_array_equal(read_rows(slide), x[0])


FUZZ_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ_SETTINGS
@given(
    suffix=st.sampled_from([".h5", ".npy", ".safetensors"]),
    which=st.integers(0, 2),
    edits=st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 5000), st.integers(0, 255)),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_slide_files_load_and_read_or_fail_naming_the_file(
    tmp_path_factory: pytest.TempPathFactory,
    suffix: str,
    which: int,
    edits: list[tuple[int, int, int]],
) -> None:
    """Flipped, inserted, truncated bytes in a slide file: loading (headers) and reading every bag
    either work or raise one DataError that names a file of the folder; nothing else escapes."""
    from tests.factories import mutate_bytes

    root = tmp_path_factory.mktemp("fuzz")
    bag_folder(root, {"P000": [4], "P001": [6], "P002": [3]}, suffix=suffix)
    target = sorted((root / "features").iterdir())[which]
    target.write_bytes(mutate_bytes(target.read_bytes(), edits))
    try:
        mod = load_site_folder(root).modalities["slides"]
        assert isinstance(mod, BagData)
        for i in range(len(mod.bags)):
            mod.read(i)
    except DataError as exc:
        assert exc.file.startswith(str(root)), exc
