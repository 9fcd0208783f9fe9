"""SUPPORT2 ICU cohort (survset ``support2``, GPL-3; 9,105 seriously ill hospitalised adults,
time in days from study entry to death, 68 % events): physiology | labs | history.

Modalities (feature names drop survset's ``num_`` / ``fac_`` prefix; categories are one-hot
"name=level"):

- ``physiology``, the bedside vital signs (SUPPORT recorded them on day 3 of the study): meanbp,
  wblc, hrt, resp, temp, pafi, scoma.
- ``labs``, the blood and urine chemistry of the same day: alb, bili, crea, sod, ph, glucose, bun,
  urine.
- ``history``, who the patient is rather than how ill today (demographics, comorbidities, daily
  function, the disease group): age, num_co, edu, adlp, adls, and one-hot sex, race, income,
  diabetes, dementia, ca, dzgroup.

Left out: sps, surv2m, surv6m (the study's own model-based prognoses: they would hand a model the
answer), sfdm2 (an outcome at 2 months), dnr (a do-not-resuscitate order, decided during the
stay), hday (day in hospital at study entry), dzclass (a coarsening of dzgroup), and survset's
``fac_num_co`` (the same count as ``num_num_co``).

Missing values are filled with fixed normal values, never with a statistic of the cohort. From
the SUPPORT documentation (F. Harrell, Vanderbilt Biostatistics, "support2" data set page):
alb 3.5 g/dl, pafi 333.3 mmHg, bili 1.01 mg/dl, crea 1.01 mg/dl, bun 6.51 mg/dl, wblc 9
(thousands), urine 2502 ml. Chosen here, on published normal scales: ph 7.4, glucose 100 mg/dl,
sod 140 mEq/l, meanbp 90 mmHg, hrt 80 /min, resp 16 /min, temp 37 C, scoma 0 (no coma), edu 12
years, adlp 0 and adls 0 (no activity of daily living impaired). Each column filled where more
than 1 % of the cohort was missing (:data:`INDICATED`) gets a 0/1 column ``<name>_missing`` in its
modality, so that a model can learn that the value was not measured; after filling every patient
has every modality. race and income keep survset's "missing" level as a category.

Groups (the hospitals of a scenario: a case-mix split) map dzgroup to five disease groups:
sepsis, cardiopulmonary (CHF, COPD), oncology (lung and colon cancer, MOSF with malignancy),
liver (cirrhosis), coma.
"""

from __future__ import annotations

from ..dataset import MultimodalDataset
from ..frames import tabular_from_frame
from .errors import DatasetUnavailable

PHYSIOLOGY = ["meanbp", "wblc", "hrt", "resp", "temp", "pafi", "scoma"]
LABS = ["alb", "bili", "crea", "sod", "ph", "glucose", "bun", "urine"]
HISTORY_NUMERIC = ["age", "num_co", "edu", "adlp", "adls"]
HISTORY_CATEGORICAL = ["sex", "race", "income", "diabetes", "dementia", "ca", "dzgroup"]

# normal values to fill a missing measurement (see the module docstring for the sources)
NORMAL = {
    # Harrell's SUPPORT2 documentation
    "alb": 3.5,
    "pafi": 333.3,
    "bili": 1.01,
    "crea": 1.01,
    "bun": 6.51,
    "wblc": 9.0,
    "urine": 2502.0,
    # published normal scales, chosen here
    "ph": 7.4,
    "glucose": 100.0,
    "sod": 140.0,
    "meanbp": 90.0,
    "hrt": 80.0,
    "resp": 16.0,
    "temp": 37.0,
    "scoma": 0.0,
    "edu": 12.0,
    "adlp": 0.0,
    "adls": 0.0,
}
# the filled columns with more than 1 % missing in the cohort: each gets a ``<name>_missing`` column
INDICATED = frozenset(
    {"wblc", "pafi", "alb", "bili", "ph", "glucose", "bun", "urine", "edu", "adlp", "adls"}
)

DISEASE_GROUP = {
    "ARF/MOSF w/Sepsis": "sepsis",
    "CHF": "cardiopulmonary",
    "COPD": "cardiopulmonary",
    "Lung Cancer": "oncology",
    "Colon Cancer": "oncology",
    "MOSF w/Malig": "oncology",
    "Cirrhosis": "liver",
    "Coma": "coma",
}


def _numeric(columns: list[str]) -> list[str]:
    """The columns, then the missing indicators of those that have one."""
    return columns + [f"{c}_missing" for c in columns if c in INDICATED]


def load_support2() -> MultimodalDataset:
    try:
        from SurvSet.data import SurvLoader
    except ImportError as exc:
        raise DatasetUnavailable("support2", "survset", "SurvSet") from exc
    raw = SurvLoader().load_dataset(ds_name="support2")["df"].reset_index(drop=True)
    df = raw[["pid", "time", "event"]].copy()
    for c in PHYSIOLOGY + LABS + HISTORY_NUMERIC:
        df[c] = raw[f"num_{c}"].astype(float)
    for c in HISTORY_CATEGORICAL:
        df[c] = raw[f"fac_{c}"].astype(str)
    for c in INDICATED:
        df[f"{c}_missing"] = df[c].isna().astype(float)
    df = df.fillna(NORMAL)
    unknown = sorted(set(raw["fac_dzgroup"].astype(str)) - set(DISEASE_GROUP))
    if unknown:
        raise ValueError(f"support2: disease groups {unknown} have no hospital group")
    return MultimodalDataset(
        name="support2",
        task="survival",
        ids=[f"support2-{p}" for p in df["pid"]],
        modalities={
            "physiology": tabular_from_frame(df, _numeric(PHYSIOLOGY)),
            "labs": tabular_from_frame(df, _numeric(LABS)),
            "history": tabular_from_frame(df, _numeric(HISTORY_NUMERIC), HISTORY_CATEGORICAL),
        },
        time=df["time"].to_numpy(dtype=float),
        event=df["event"].to_numpy(dtype=bool),
        groups=df["dzgroup"].map(DISEASE_GROUP).to_numpy(),
        meta={"source": "survset (support2)", "licence": "GPL-3", "group": "disease group"},
    )
