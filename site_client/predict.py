"""Predicting with a pulled model version for patients with any subset of modalities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from common.artifacts.modelfile import load_model_folder
from common.data.dataset import MultimodalDataset
from common.train import predict_scores


def predict_frame(model_dir: str | Path, data: MultimodalDataset) -> pd.DataFrame:
    """One row per patient: id, the modalities used, and the risk (survival) or class
    probabilities."""
    model, record = load_model_folder(model_dir)
    known = set(model.modalities)
    usable = [m for m in data.modalities if m in known]
    if not usable:
        raise ValueError(
            f"model {record.model_id!r} reads {sorted(known)}; "
            f"the data has {sorted(data.modalities)}"
        )
    subset = data.select_modalities(usable)
    present = np.stack([subset.modalities[m].present.numpy() for m in usable], axis=1)
    keep = np.flatnonzero(
        present.any(axis=1)
    )  # a patient with none of the model's modalities gets no prediction
    subset, present = subset.subset(keep), present[keep]
    spec = model.task
    scores = predict_scores(model, subset, spec, amp=False)
    used = ["+".join(m for m, p in zip(usable, row, strict=True) if p) for row in present]
    frame = pd.DataFrame({"patient_id": subset.ids, "modalities": used})
    if spec.kind == "survival":
        frame["risk"] = scores
    else:
        for k in range(scores.shape[1]):
            frame[f"p_{k}"] = scores[:, k]
        frame["predicted_class"] = scores.argmax(axis=1)
    frame.attrs["model_id"] = record.model_id
    return frame
