"""NKI-70 breast cancer (van de Vijver et al.; shipped by survset, GPL-3): 70 genes | clinical."""

from __future__ import annotations

from ..dataset import MultimodalDataset
from ..frames import tabular_from_frame
from .errors import DatasetUnavailable

CLINICAL_NUMERIC = ["num_Age"]
CLINICAL_CATEGORICAL = ["fac_Diam", "fac_N", "fac_ER", "fac_Grade"]


def load_nki70() -> MultimodalDataset:
    try:
        from SurvSet.data import SurvLoader
    except ImportError as exc:
        raise DatasetUnavailable("nki70", "survset", "SurvSet") from exc
    df = SurvLoader().load_dataset(ds_name="nki70")["df"].reset_index(drop=True)
    genes = [c for c in df.columns if c.startswith("num_") and c not in CLINICAL_NUMERIC]
    return MultimodalDataset(
        name="nki70",
        task="survival",
        ids=[str(p) for p in df["pid"]],
        modalities={
            "genes": tabular_from_frame(df, genes),
            "clinical": tabular_from_frame(df, CLINICAL_NUMERIC, CLINICAL_CATEGORICAL),
        },
        time=df["time"].to_numpy(dtype=float),
        event=df["event"].to_numpy(dtype=bool),
        meta={"source": "survset (nki70)", "licence": "GPL-3"},
    )
