"""GSE7390 breast cancer (Desmedt et al.; shipped by scikit-survival, GPL-3): 76 genes |
clinical."""

from __future__ import annotations

from ..dataset import MultimodalDataset
from ..frames import tabular_from_frame
from .errors import DatasetUnavailable


def load_gse7390() -> MultimodalDataset:
    try:
        from sksurv.datasets import load_breast_cancer
    except ImportError as exc:
        raise DatasetUnavailable("gse7390", "scikit-survival", "sksurv") from exc
    x, y = load_breast_cancer()
    x = x.reset_index(drop=True)
    genes = [c for c in x.columns if c.startswith("X")]
    return MultimodalDataset(
        name="gse7390",
        task="survival",
        ids=[f"gse7390-{i}" for i in range(len(x))],
        modalities={
            "genes": tabular_from_frame(x, genes),
            "clinical": tabular_from_frame(x, ["age", "size"], ["er", "grade"]),
        },
        time=y["t.tdm"].astype(float),
        event=y["e.tdm"].astype(bool),
        meta={
            "source": "scikit-survival load_breast_cancer (distant metastasis)",
            "licence": "GPL-3",
        },
    )
