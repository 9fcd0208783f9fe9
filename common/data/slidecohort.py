"""A synthetic whole-slide-image cohort, written as a site data folder (SYNTHETIC: no patient's
data): per-slide HDF5 feature files laid out as CLAM / TRIDENT write them (``features`` (N, F)
float16, ``coords`` (N, 2) int32, chunks of 32 rows), a slides table, labels and optionally a
gene-expression table. For benchmarks and the ``slides-3`` simulate scenario.

Instance counts are lognormal (median ``median_instances``, clipped to ``max_instances``; TCGA
diagnostic slides at 20x give thousands to tens of thousands of 256-px patches). A few patients
have two slides. The survival signal is carried by a minority of each slide's instances
(``signal_share``, "tumour" patches that also share a tag direction an attention pooling can
find); the other instances are noise. The genes table has a linear signal of its own."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

SYNTHETIC_NOTE = "SYNTHETIC data made by mmlego (common/data/slidecohort.py): no patient's data"


@dataclass(frozen=True)
class SlideCohort:
    slides: int = 1000
    features: int = 1024
    median_instances: int = 6000
    max_instances: int = 25000
    min_instances: int = 100
    sigma: float = 0.45  # of log instance counts: median 6,000 -> 99.9 % of slides under ~25,000
    two_slides: float = 0.07  # share of patients with two slides (TCGA BRCA: 62 of 956)
    signal_share: float = 0.1  # share of a slide's instances that carry the survival signal
    signal: float = 2.0  # size of the signal direction on those instances, times the patient's risk
    tag: float = 3.0  # size of the direction every signal instance shares
    genes: int = 32  # features of a genes table with its own linear signal (0: no table)
    seed: int = 0

    @property
    def patients(self) -> int:
        return max(1, round(self.slides / (1 + self.two_slides)))


def instance_counts(c: SlideCohort, rng: np.random.Generator) -> np.ndarray:
    n = np.exp(rng.normal(np.log(c.median_instances), c.sigma, size=c.slides))
    return np.clip(np.round(n), c.min_instances, c.max_instances).astype(np.int64)


def write_slide_cohort(
    folder: str | Path, c: SlideCohort = SlideCohort(), train_instances: int | None = None
) -> Path:
    """Write the cohort into ``folder`` (created); returns it. Deterministic in ``c.seed``.
    ``train_instances``: the slides entry's ``max_instances`` (default: data.toml's default)."""
    import h5py
    import pandas as pd

    root = Path(folder)
    (root / "features").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(c.seed)
    p = c.patients
    ids = [f"SYN-{i:05d}" for i in range(p)]
    owner = np.concatenate(
        [np.arange(p), np.arange(c.slides - p)]
    )  # the first patients get a second slide
    counts = instance_counts(c, rng)
    direction = rng.normal(size=c.features).astype(np.float32)
    direction /= np.linalg.norm(direction)
    tag = rng.normal(size=c.features).astype(np.float32)
    tag /= np.linalg.norm(tag)
    risk_slides = rng.normal(size=p)
    slide_ids = []
    for k in range(c.slides):
        sid = f"{ids[owner[k]]}-DX{1 + int(k >= p)}"
        slide_ids.append(sid)
        n = int(counts[k])
        x = rng.standard_normal(size=(n, c.features), dtype=np.float32)
        hit = rng.random(n) < c.signal_share
        x[hit] += c.signal * float(risk_slides[owner[k]]) * direction + c.tag * tag
        coords = np.stack([np.arange(n) % 200, np.arange(n) // 200], axis=1).astype(np.int32) * 256
        with h5py.File(root / "features" / f"{sid}.h5", "w") as h5:
            h5.create_dataset(
                "features", data=x.astype(np.float16), chunks=(min(32, n), c.features)
            )
            h5.create_dataset("coords", data=coords)
    risk = risk_slides.copy()
    tables = {}
    if c.genes:
        g = rng.normal(size=(p, c.genes)).astype(np.float32)
        w = rng.normal(size=c.genes) / np.sqrt(c.genes)
        risk_genes = g @ w
        risk = risk + risk_genes / max(float(np.std(risk_genes)), 1e-6)
        tables["genes"] = pd.DataFrame(g, columns=[f"g{j}" for j in range(c.genes)]).assign(
            patient_id=ids
        )
    t_event = rng.exponential(np.exp(-0.8 * risk))
    t_censor = rng.exponential(np.median(t_event) * 1.5, size=p)
    labels = pd.DataFrame(
        {
            "patient_id": ids,
            "time": np.round(np.minimum(t_event, t_censor) + 1e-3, 4),
            "event": (t_event <= t_censor).astype(int),
        }
    )
    labels.to_csv(root / "labels.csv", index=False)
    pd.DataFrame({"slide_id": slide_ids, "patient_id": [ids[o] for o in owner]}).to_csv(
        root / "slides.csv", index=False
    )
    lines = [
        f"# {SYNTHETIC_NOTE}.",
        f"# generated with {asdict(c)}",
        'name = "synthetic-slides"',
        'task = "survival"',
        "",
        "[labels]",
        'file = "labels.csv"',
        'id = "patient_id"',
        'time = "time"',
        'event = "event"',
        "",
        "[modalities.slides]",
        'kind = "bag"',
        'files = "features/{slide_id}.h5"',
        'slides = "slides.csv"',
        'slide_id = "slide_id"',
        'id = "patient_id"',
    ]
    if train_instances is not None:
        lines.append(f"max_instances = {train_instances}")
    if "genes" in tables:
        cols = ["patient_id", *[f"g{j}" for j in range(c.genes)]]
        tables["genes"][cols].to_csv(root / "genes.csv", index=False, float_format="%.6g")
        lines += [
            "",
            "[modalities.genes]",
            'kind = "tabular"',
            'file = "genes.csv"',
            'id = "patient_id"',
        ]
    (root / "data.toml").write_text("\n".join(lines) + "\n")
    (root / "SYNTHETIC.txt").write_text(SYNTHETIC_NOTE + "\n")
    return root
