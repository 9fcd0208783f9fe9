"""Bring-your-own data: a site folder described by ``data.toml`` (format in the README).

A label table (patient id; ``time`` + ``event``, or ``label``) and one entry per modality:
``tabular`` (CSV or Parquet, one row per patient), ``sequence`` (long format, CSV or Parquet:
one row per patient and step/instance, ordered by an ``order`` column), or ``bag`` (one feature
file per slide, e.g. CLAM / TRIDENT HDF5; a patient's slides form its bag; read lazily, see
:mod:`.bags`). Patients are joined by id; a patient may lack any modality, but every modality row
must belong to a labelled patient. All checks run before anything is returned (for bags: every
file's header, not its values): a bad folder raises :class:`DataError` naming the file, the
column and the row, or the slide.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..tomlconfig import ConfigError, read_toml
from .bags import BagData, patient_key
from .dataset import Modality, ModalityData, MultimodalDataset
from .errors import DataError
from .slidefiles import SlideFile, probe

if TYPE_CHECKING:
    import pandas as pd

CONFIG_NAME = "data.toml"
MIN_PATIENTS = 10
MIN_EVENTS = 5


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LabelsSpec(_Strict):
    file: str
    id: str = "patient_id"
    time: str | None = None  # survival
    event: str | None = None  # survival: 1 = event, 0 = censored
    label: str | None = None  # classification: integer class 0..K-1
    group: str | None = None  # optional site/study column, kept for multi-site scenarios
    # optional: "train" or "validation" per patient. Validation patients are never trained on: the
    # site's blocks stop early on them and the site scores model versions on them (federated
    # evaluation). Without it the site draws its validation patients at random
    # ([train] val_fraction).
    split: str | None = None


class ModalitySpec(_Strict):
    kind: Literal["tabular", "sequence", "bag"]
    file: str | None = None  # tabular, sequence: the table
    id: str = "patient_id"
    columns: list[str] | None = None  # default: every column but id (and order)
    categorical: list[str] = Field(default_factory=list)  # tabular: one-hot encoded
    order: str | None = None  # sequence: column that orders a patient's rows
    max_length: int | None = Field(default=None, ge=1)  # sequence: keep the last N rows
    # bag: one feature file per slide; "{slide_id}" is replaced by each slide's id (relative to the
    # folder)
    files: str | None = None
    # bag: a table of slide_id and patient id (default: one slide per patient, named by its id)
    slides: str | None = None
    slide_id: str = "slide_id"  # bag: the slides table's slide column
    dataset: str = "features"  # bag: the array's name in an HDF5 or safetensors file
    max_instances: int = Field(
        default=2048, ge=0
    )  # bag: instances per bag while training, a fresh random subset per epoch (0 = all)
    eval_max_instances: int = Field(
        default=0, ge=0
    )  # bag: in evaluation and prediction (0 = all; else a fixed seeded subset)

    def problem(self, name: str) -> str | None:
        """What is missing or does not belong for this kind."""
        if self.kind == "bag":
            if self.files is None:
                return (
                    f'[modalities.{name}] is a bag and needs files = "folder/{{slide_id}}.h5" '
                    '(one file per slide; a long table of instances is kind = "sequence")'
                )
            if (
                "{slide_id}" not in self.files
                or self.files.count("{") != 1
                or self.files.count("}") != 1
            ):
                return (
                    f"[modalities.{name}] files must contain {{slide_id}} once "
                    f"(and no other braces), got {self.files!r}"
                )
            if (
                self.file is not None
                or self.columns is not None
                or self.categorical
                or self.order
                or self.max_length
            ):
                return (
                    f"[modalities.{name}] is a bag: "
                    "file, columns, categorical, order and max_length do not apply"
                )
            return None
        if self.file is None:
            return f"[modalities.{name}] needs a file"
        if self.files is not None or self.slides is not None:
            return f'[modalities.{name}] is {self.kind}: files and slides are for kind = "bag"'
        if self.kind == "sequence" and self.order is None:
            return f"[modalities.{name}] is a sequence and needs an 'order' column"
        return None


class DataSpec(_Strict):
    name: str = "site-data"
    task: Literal["survival", "classification"]
    n_classes: int | None = Field(default=None, ge=2)  # classification; default: max label + 1
    labels: LabelsSpec
    modalities: dict[str, ModalitySpec]

    def outcome_problem(self) -> str | None:
        """Why the outcome columns cannot be read (training needs them; prediction does not)."""
        if self.task == "survival" and (self.labels.time is None or self.labels.event is None):
            return "labels: a survival task needs [labels] time and event columns"
        if self.task == "classification" and self.labels.label is None:
            return "labels: a classification task needs a [labels] label column"
        return None

    @model_validator(mode="after")
    def _check(self) -> DataSpec:
        if not self.modalities:
            raise ValueError("at least one [modalities.NAME] entry is needed")
        for name, mod in self.modalities.items():
            problem = mod.problem(name)
            if problem:
                raise ValueError(problem)
        return self


def read_spec(folder: Path) -> DataSpec:
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise DataError(str(path), "not found: a site data folder needs a data.toml")
    try:
        return read_toml(path, DataSpec)
    except ConfigError as exc:
        raise DataError(str(path), str(exc).removeprefix(f"{path}: ")) from exc


def read_table(path: Path, id_column: str) -> pd.DataFrame:
    import pandas as pd

    if not path.is_file():
        raise DataError(str(path), "file not found")
    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        if path.suffix.lower() in (".csv", ".txt"):
            return pd.read_csv(path, dtype={id_column: str}, low_memory=False)
    except Exception as exc:  # pandas/pyarrow raise many types for unreadable files
        raise DataError(
            str(path), f"cannot be read as a table: {str(exc).splitlines()[0]}"
        ) from exc
    raise DataError(str(path), "unsupported file type; use .csv or .parquet")


def _require(df: pd.DataFrame, path: Path, columns: list[str]) -> None:
    for col in columns:
        if col not in df.columns:
            raise DataError(
                str(path),
                f"column missing (has: {', '.join(map(str, df.columns[:12]))})",
                column=col,
            )


def _ids(df: pd.DataFrame, path: Path, col: str, unique: bool) -> list[str]:
    ids = df[col]
    bad = ids.isna() | (ids.astype(str).str.strip() == "")
    if bad.any():
        raise DataError(
            str(path),
            "empty patient id",
            column=col,
            row=int(np.flatnonzero(bad.to_numpy())[0]) + 1,
        )
    out = ids.astype(str).str.strip().tolist()
    if unique:
        seen: dict[str, int] = {}
        for i, pid in enumerate(out):
            if pid in seen:
                raise DataError(
                    str(path),
                    f"duplicate patient id (first at row {seen[pid] + 1})",
                    column=col,
                    row=i + 1,
                    patient=pid,
                )
            seen[pid] = i
    return out


def _labelled_ids(
    df: pd.DataFrame, path: Path, col: str, index: dict[str, int], unique: bool
) -> list[str]:
    """The id column of a modality file; every id must be a patient of the label table."""
    ids = _ids(df, path, col, unique)
    unknown = [i for i, p in enumerate(ids) if p not in index]
    if unknown:
        raise DataError(
            str(path),
            "patient has no row in the label table",
            column=col,
            row=unknown[0] + 1,
            patient=ids[unknown[0]],
        )
    return ids


def _numeric(df: pd.DataFrame, path: Path, columns: list[str], ids: list[str]) -> np.ndarray:
    """Columns as float; the first non-number or non-finite cell is reported (row = file line)."""
    import pandas as pd

    out = np.empty((len(df), len(columns)), dtype=np.float64)
    for j, col in enumerate(columns):
        values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(
                str(path),
                f"value {df[col].iloc[i]!r} is not a finite number",
                column=col,
                row=i + 1,
                patient=ids[i],
            )
        out[:, j] = values
    return out


def _tabular(spec: ModalitySpec, folder: Path, index: dict[str, int]) -> ModalityData:
    assert spec.file is not None
    path = folder / spec.file
    df = read_table(path, spec.id)
    _require(df, path, [spec.id])
    columns = spec.columns if spec.columns is not None else [c for c in df.columns if c != spec.id]
    _require(df, path, columns + spec.categorical)
    ids = _labelled_ids(df, path, spec.id, index, unique=True)
    numeric = [c for c in columns if c not in spec.categorical]
    parts, names = [_numeric(df, path, numeric, ids)], list(numeric)
    for col in spec.categorical:
        values = df[col]
        if values.isna().any():
            i = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise DataError(str(path), "missing category", column=col, row=i + 1, patient=ids[i])
        levels = sorted(values.astype(str).unique())
        onehot = [(values.astype(str) == lv).to_numpy(dtype=np.float64) for lv in levels]
        parts.append(
            np.stack(onehot, axis=1) if onehot else np.zeros((len(df), 0))
        )  # a file with no rows
        names += [f"{col}={lv}" for lv in levels]
    if not names:
        raise DataError(str(path), "no feature columns")
    table = np.concatenate(parts, axis=1)
    x = np.zeros((len(index), table.shape[1]), dtype=np.float32)
    present = np.zeros(len(index), dtype=bool)
    rows = [index[p] for p in ids]
    x[rows] = table
    present[rows] = True
    return ModalityData("tabular", torch.from_numpy(x), torch.from_numpy(present), names)


def _sequence(spec: ModalitySpec, folder: Path, index: dict[str, int]) -> ModalityData:
    assert spec.file is not None
    path = folder / spec.file
    df = read_table(path, spec.id)
    assert spec.order is not None
    _require(df, path, [spec.id, spec.order])
    columns = (
        spec.columns
        if spec.columns is not None
        else [c for c in df.columns if c not in (spec.id, spec.order)]
    )
    _require(df, path, columns)
    if not columns:
        raise DataError(str(path), "no feature columns")
    ids = _labelled_ids(df, path, spec.id, index, unique=False)
    order = _numeric(df, path, [spec.order], ids)[:, 0]
    values = _numeric(df, path, columns, ids)
    rows_of: dict[int, list[int]] = {}
    for i, p in enumerate(ids):
        rows_of.setdefault(index[p], []).append(i)
    for r in rows_of.values():
        r.sort(key=lambda i: order[i])
        for a, b in pairwise(r):
            if order[a] == order[b]:
                raise DataError(
                    str(path),
                    f"two rows of one patient share the order value {order[a]:g} "
                    f"(first at row {a + 1})",
                    column=spec.order,
                    row=b + 1,
                    patient=ids[b],
                )
    length = max(len(r) for r in rows_of.values())
    if spec.max_length is not None:
        length = min(length, spec.max_length)
    x = np.zeros((len(index), length, len(columns)), dtype=np.float32)
    mask = np.zeros((len(index), length), dtype=bool)
    for patient, r in rows_of.items():
        r = r[-length:]  # the most recent steps when truncating
        x[patient, : len(r)] = values[r]
        mask[patient, : len(r)] = True
    present = mask.any(axis=1)
    return ModalityData(
        "sequence",
        torch.from_numpy(x),
        torch.from_numpy(present),
        list(columns),
        torch.from_numpy(mask),
    )


SLIDE_ID_BAD = ("/", "\\", "\x00")


def _slide_table(
    spec: ModalitySpec, folder: Path, index: dict[str, int]
) -> list[tuple[str, str, int]]:
    """(slide id, patient id, row) of every slide: from the slides table, or one per labelled
    patient whose file exists (named by the patient's id)."""
    assert spec.files is not None
    if spec.slides is None:
        return [(p, p, 0) for p in index if _slide_path(spec, folder, p).exists()]
    path = folder / spec.slides
    df = read_table(path, spec.id)
    _require(df, path, [spec.slide_id, spec.id])
    patients = _labelled_ids(df, path, spec.id, index, unique=False)
    slides = df[spec.slide_id]
    seen: dict[str, int] = {}
    out = []
    for i, (raw, pid) in enumerate(zip(slides.tolist(), patients, strict=True)):
        sid = "" if raw is None or (isinstance(raw, float) and np.isnan(raw)) else str(raw).strip()
        if not sid or sid in (".", "..") or any(c in sid for c in SLIDE_ID_BAD):
            raise DataError(
                str(path),
                f"slide id {raw!r} cannot name a file",
                column=spec.slide_id,
                row=i + 1,
                patient=pid,
            )
        if sid in seen:
            raise DataError(
                str(path),
                f"slide listed twice (first at row {seen[sid] + 1})",
                column=spec.slide_id,
                row=i + 1,
                patient=pid,
            )
        seen[sid] = i
        out.append((sid, pid, i + 1))
    return out


def _slide_path(spec: ModalitySpec, folder: Path, slide_id: str) -> Path:
    assert spec.files is not None
    return folder / spec.files.replace("{slide_id}", slide_id)


def _bag(spec: ModalitySpec, folder: Path, index: dict[str, int]) -> BagData:
    """A bag modality: every slide file's header is read (shape, dtype); no feature value is."""
    table = _slide_table(spec, folder, index)
    if not table:
        where = folder / (spec.slides or str(spec.files))
        raise DataError(
            str(where), f"no slide files found for any labelled patient (files = {spec.files!r})"
        )
    bags: list[list[SlideFile]] = [[] for _ in index]
    width: tuple[int, str] | None = None
    for sid, pid, _ in table:
        slide = probe(_slide_path(spec, folder, sid), sid, spec.dataset)
        if width is None:
            width = (slide.features, sid)
        elif slide.features != width[0]:
            raise DataError(
                slide.path,
                f"slide {sid!r} has {slide.features} features per instance; slide {width[1]!r} has "
                f"{width[0]} (one width per modality)",
            )
        bags[index[pid]].append(slide)
    ids = list(index)
    for i, bag in enumerate(bags):
        if bag and sum(s.instances for s in bag) == 0:
            raise DataError(
                bag[0].path,
                f"patient {ids[i]!r}: an empty bag (its slides have no instances); "
                "leave the patient's slides out to mark the modality absent",
            )
    assert width is not None
    return BagData(
        [tuple(b) for b in bags],
        np.array([patient_key(p) for p in ids], dtype=np.int64),
        [f"f{j}" for j in range(width[0])],
        max_instances=spec.max_instances,
        eval_max_instances=spec.eval_max_instances,
        dataset=spec.dataset,
    )


LOADERS: dict[str, Callable[[ModalitySpec, Path, dict[str, int]], Modality]] = {
    "tabular": _tabular,
    "sequence": _sequence,
    "bag": _bag,
}


def load_site_folder(folder: str | Path, outcomes: bool = True) -> MultimodalDataset:
    """Load and validate a site data folder; raises :class:`DataError` on the first problem.
    ``outcomes=False`` (prediction): only patient ids are read from the label table, outcome
    columns may be absent, and the returned outcomes are placeholders (``meta["outcomes"]``)."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(str(root), "not a folder")
    spec = read_spec(root)
    problem = spec.outcome_problem()
    if outcomes and problem:
        raise DataError(str(root / CONFIG_NAME), problem)
    lpath = root / spec.labels.file
    labels = read_table(lpath, spec.labels.id)
    outcome_cols = (spec.labels.time, spec.labels.event, spec.labels.label) if outcomes else ()
    cols = [c for c in (spec.labels.id, *outcome_cols, spec.labels.group, spec.labels.split) if c]
    _require(labels, lpath, cols)
    ids = _ids(labels, lpath, spec.labels.id, unique=True)
    if outcomes and len(ids) < MIN_PATIENTS:
        raise DataError(str(lpath), f"only {len(ids)} patients; at least {MIN_PATIENTS} are needed")
    index = {p: i for i, p in enumerate(ids)}
    time = event = label = None
    n_classes = 0
    if not outcomes:
        n = len(ids)
        time, event, label, n_classes = (
            np.zeros(n),
            np.zeros(n, dtype=bool),
            np.zeros(n, dtype=np.int64),
            2,
        )
    elif spec.task == "survival":
        assert spec.labels.time and spec.labels.event
        tv = _numeric(labels, lpath, [spec.labels.time, spec.labels.event], ids)
        time, ev = tv[:, 0], tv[:, 1]
        if (time < 0).any():
            i = int(np.flatnonzero(time < 0)[0])
            raise DataError(
                str(lpath), "negative time", column=spec.labels.time, row=i + 1, patient=ids[i]
            )
        if not np.isin(ev, (0, 1)).all():
            i = int(np.flatnonzero(~np.isin(ev, (0, 1)))[0])
            raise DataError(
                str(lpath),
                f"event must be 0 or 1, got {ev[i]:g}",
                column=spec.labels.event,
                row=i + 1,
                patient=ids[i],
            )
        event = ev.astype(bool)
        if event.sum() < MIN_EVENTS:
            raise DataError(
                str(lpath),
                f"only {int(event.sum())} events; at least {MIN_EVENTS} are needed",
                column=spec.labels.event,
            )
    else:
        assert spec.labels.label
        lv = _numeric(labels, lpath, [spec.labels.label], ids)[:, 0]
        bad = (lv < 0) | (lv != np.round(lv))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(
                str(lpath),
                f"class label must be an integer >= 0, got {lv[i]:g}",
                column=spec.labels.label,
                row=i + 1,
                patient=ids[i],
            )
        label = lv.astype(np.int64)
        n_classes = spec.n_classes or int(label.max()) + 1
        if label.max() >= n_classes:
            i = int(np.argmax(label))
            raise DataError(
                str(lpath),
                f"class {label[i]} but n_classes = {n_classes}",
                column=spec.labels.label,
                row=i + 1,
                patient=ids[i],
            )
        if np.unique(label).size < 2:
            raise DataError(str(lpath), "only one class occurs", column=spec.labels.label)
    modalities: dict[str, Modality] = {}
    for name, mspec in spec.modalities.items():
        modalities[name] = LOADERS[mspec.kind](mspec, root, index)
    groups = labels[spec.labels.group].astype(str).to_numpy() if spec.labels.group else None
    holdout = _split(labels, lpath, spec.labels.split, ids) if spec.labels.split else None
    meta = {"source": str(root)} | (
        {} if outcomes else {"outcomes": "placeholders (loaded for prediction)"}
    )
    return MultimodalDataset(
        name=spec.name,
        task=spec.task,
        ids=ids,
        modalities=modalities,
        time=time,
        event=event,
        label=label,
        n_classes=n_classes,
        groups=groups,
        meta=meta,
        holdout=holdout,
    )


SPLIT_VALUES = {"train": False, "validation": True, "val": True}


def _split(labels: pd.DataFrame, path: Path, col: str, ids: list[str]) -> np.ndarray:
    """The split column as a bool array: True = a validation patient."""
    values = labels[col].astype(str).str.strip().str.lower()
    bad = ~values.isin(list(SPLIT_VALUES))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            str(path),
            f"split must be 'train' or 'validation', got {labels[col].iloc[i]!r}",
            column=col,
            row=i + 1,
            patient=ids[i],
        )
    return values.map(SPLIT_VALUES).to_numpy(dtype=bool)
