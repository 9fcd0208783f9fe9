"""Write examples/site-data: a small, synthetic site data folder (made-up patients, no real data).

Run: python examples/make_site_data.py   (the folder is committed; this script documents it)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent / "site-data"


def main(n: int = 40, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    ids = [f"P{i:03d}" for i in range(n)]
    risk = rng.normal(size=n)
    time = np.round(rng.exponential(5.0 * np.exp(-0.7 * risk)), 3)
    censor = np.round(rng.uniform(2, 12, n), 3)
    event = (time <= censor).astype(int)
    labels = pd.DataFrame({"patient_id": ids, "time": np.minimum(time, censor), "event": event,
                           "hospital": rng.choice(["north", "south"], n)})
    genes = pd.DataFrame({"patient_id": ids, **{f"GENE{j}": np.round(risk * (j % 3 == 0) + rng.normal(size=n), 4)
                                               for j in range(8)}})
    genes = genes.drop(index=[3, 17])  # two patients without expression data
    clinical = pd.DataFrame({"patient_id": ids, "age": rng.integers(35, 80, n),
                             "grade": rng.choice(["low", "high"], n), "er": rng.choice(["pos", "neg"], n)})
    rows = []
    for pid, r in zip(ids, risk, strict=True):
        for day in sorted(rng.choice(np.arange(0, 720, 30), size=rng.integers(1, 6), replace=False)):
            rows.append({"patient_id": pid, "day": int(day), "bili": round(float(np.exp(0.3 * r + rng.normal(0, 0.3))), 3),
                         "albumin": round(float(3.5 - 0.2 * r + rng.normal(0, 0.2)), 3)})
    labs = pd.DataFrame(rows)
    labs = labs[labs.patient_id != "P005"]  # one patient without lab visits
    HERE.mkdir(exist_ok=True)
    labels.to_csv(HERE / "labels.csv", index=False)
    genes.to_csv(HERE / "genes.csv", index=False)
    clinical.to_csv(HERE / "clinical.csv", index=False)
    labs.to_csv(HERE / "labs.csv", index=False)


if __name__ == "__main__":
    main()
