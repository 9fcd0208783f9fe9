"""Write a dataset as a site data folder (``data.toml`` + CSV files, and a bag modality's slide
files, hard-linked or copied) that loads back identically."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np

from .bags import BagData
from .dataset import MultimodalDataset
from .sitefolder import CONFIG_NAME

FLOAT32_DIGITS = "%.9g"  # enough significant digits to round-trip float32 exactly


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(_toml_str(i) for i in items) + "]"


def export_site_folder(data: MultimodalDataset, out: str | Path) -> Path:
    """Write ``data`` into folder ``out``: labels.csv, one CSV per modality, data.toml."""
    import pandas as pd

    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    labels = pd.DataFrame({"patient_id": data.ids})
    lines = [f"name = {_toml_str(data.name)}", f"task = {_toml_str(data.task)}"]
    if data.task == "survival":
        assert data.time is not None and data.event is not None
        labels["time"] = data.time.astype(np.float64)
        labels["event"] = data.event.astype(int)
        label_cols = 'time = "time"\nevent = "event"'
    else:
        assert data.label is not None
        labels["label"] = data.label.astype(int)
        lines.append(f"n_classes = {data.n_classes}")
        label_cols = 'label = "label"'
    if data.groups is not None:
        labels["group"] = data.groups.astype(str)
        label_cols += '\ngroup = "group"'
    if data.holdout is not None:
        labels["split"] = np.where(data.holdout, "validation", "train")
        label_cols += '\nsplit = "split"'
    labels.to_csv(root / "labels.csv", index=False)
    lines += ["", "[labels]", 'file = "labels.csv"', 'id = "patient_id"', label_cols]
    for name, mod in data.modalities.items():
        fname = re.sub(r"[^A-Za-z0-9_.-]", "_", name) + ".csv"
        if isinstance(mod, BagData):
            lines += _export_bags(mod, data.ids, root, name, fname)
            continue
        present = mod.present.numpy()
        x = mod.x.numpy().astype(np.float64)
        if mod.kind == "tabular":
            frame = pd.DataFrame(x[present], columns=mod.features)
            frame.insert(0, "patient_id", [p for p, k in zip(data.ids, present, strict=True) if k])
            extra = ""
        else:
            assert mod.mask is not None
            mask = mod.mask.numpy()
            pid, step = np.nonzero(mask)
            frame = pd.DataFrame(x[pid, step], columns=mod.features)
            frame.insert(0, "step", step)
            frame.insert(0, "patient_id", [data.ids[i] for i in pid])
            extra = '\norder = "step"'
        frame.to_csv(root / fname, index=False, float_format=FLOAT32_DIGITS)
        lines += [
            "",
            f"[modalities.{_toml_str(name)}]",
            f"kind = {_toml_str(mod.kind)}",
            f"file = {_toml_str(fname)}",
            'id = "patient_id"',
            f"columns = {_toml_list(mod.features)}" + extra,
        ]
    (root / CONFIG_NAME).write_text("\n".join(lines) + "\n")
    return root


def _export_bags(mod: BagData, ids: list[str], root: Path, name: str, fname: str) -> list[str]:
    """A bag modality's slides table and its slide files (hard links where the file system allows,
    else copies) under ``<name>/``; returns its data.toml lines."""
    import pandas as pd

    if mod.scale is not None:
        raise ValueError(
            f"modality {name}: standardised bags cannot be exported "
            "(their files hold the raw features)"
        )
    slides = [(s, pid) for bag, pid in zip(mod.bags, ids, strict=True) for s in bag]
    suffixes = {Path(s.path).suffix.lower() for s, _ in slides}
    if len(suffixes) > 1:
        raise ValueError(
            f"modality {name}: slides stored as {sorted(suffixes)} cannot share one files pattern"
        )
    names = [s.slide_id for s, _ in slides]
    if len(set(names)) != len(names):
        raise ValueError(
            f"modality {name}: a slide id occurs twice; slide ids name files and must be unique"
        )
    folder = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    suffix = suffixes.pop() if suffixes else ".h5"
    (root / folder).mkdir(parents=True, exist_ok=True)
    for s, _ in slides:
        target = root / folder / f"{s.slide_id}{suffix}"
        if target.exists():
            target.unlink()
        try:
            os.link(s.path, target)
        except OSError:
            shutil.copyfile(s.path, target)
    pd.DataFrame({"slide_id": names, "patient_id": [pid for _, pid in slides]}).to_csv(
        root / fname, index=False
    )
    return [
        "",
        f"[modalities.{_toml_str(name)}]",
        'kind = "bag"',
        f"files = {_toml_str(folder + '/{slide_id}' + suffix)}",
        f"slides = {_toml_str(fname)}",
        'slide_id = "slide_id"',
        'id = "patient_id"',
        f"dataset = {_toml_str(mod.dataset)}",
        f"max_instances = {mod.max_instances}",
        f"eval_max_instances = {mod.eval_max_instances}",
    ]


def export_by_group(data: MultimodalDataset, out: str | Path) -> list[Path]:
    """One site folder per value of the dataset's group column (e.g. the study of a patient)."""
    if data.groups is None:
        raise ValueError(f"dataset {data.name!r} has no group column to split by")
    folders = []
    for g in sorted(set(data.groups.tolist())):
        idx = np.flatnonzero(data.groups == g)
        part = data.subset(idx)
        part.name = f"{data.name}-{g}"
        folders.append(
            export_site_folder(part, Path(out) / re.sub(r"[^A-Za-z0-9_.-]", "_", str(g)))
        )
    return folders
