"""Ovarian cancer, four studies (survset ``dataOvarian1``, GPL-3): 158 genes | clinical; the study
is kept as the group of each patient, so that the four studies can act as four hospitals."""

from __future__ import annotations

from ..dataset import MultimodalDataset
from ..frames import tabular_from_frame
from .errors import DatasetUnavailable


def load_ovarian() -> MultimodalDataset:
    try:
        from SurvSet.data import SurvLoader
    except ImportError as exc:
        raise DatasetUnavailable("ovarian", "survset", "SurvSet") from exc
    df = SurvLoader().load_dataset(ds_name="dataOvarian1")["df"].reset_index(drop=True)
    genes = [c for c in df.columns if c.startswith("num_")]
    return MultimodalDataset(
        name="ovarian",
        task="survival",
        ids=[f"ovarian-{p}" for p in df["pid"]],
        modalities={
            "genes": tabular_from_frame(df, genes),
            "clinical": tabular_from_frame(df, [], ["fac_debulk"]),
        },
        time=df["time"].to_numpy(dtype=float),
        event=df["event"].to_numpy(dtype=bool),
        groups=df["fac_group"].astype(str).map(lambda g: f"study{g}").to_numpy(),
        meta={"source": "survset (dataOvarian1)", "licence": "GPL-3", "group": "study"},
    )
