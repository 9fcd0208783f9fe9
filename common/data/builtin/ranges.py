"""Public value ranges of the built-in datasets' features, as an operator would write them into
task.toml's ``[public_ranges]`` for DP blocks: from each assay's scale and each variable's units,
not from the patients (one exception, said below). One-hot columns ("name=level") are [0, 1]
without being named. ``bench/privacy_bench.py`` reports how many values fall outside.

- nki70 genes: log10 expression ratios of a two-colour array, which the source caps at +-2.
- gse7390 genes: log2 intensities of an Affymetrix HG-U133A array, [0, 16].
- ovarian genes: curatedOvarianData's log2 scale, which mixes raw and centred studies; the range
  [-8, 16] was chosen after seeing the pooled minimum and maximum (-7.7, 13.9): the one range here
  that is not from the units alone.
- pbc labs, in the Mayo PBC study's units: bilirubin mg/dl, albumin g/dl, alkaline phosphatase U/l,
  AST U/ml, platelets 10^3/ml, prothrombin time s; years before the 2-year landmark, [0, 2].
- ages in years [18, 95]; gse7390 tumour size in cm [0, 10].
- support2, in the SUPPORT study's units: mean blood pressure mmHg [0, 250], white blood count
  10^3/ul [0, 200], heart rate /min [0, 300], respiration /min [0, 90], temperature C [30, 44],
  PaO2/FiO2 mmHg [0, 900], Glasgow-based coma score [0, 100]; albumin g/dl [0.5, 7], bilirubin
  mg/dl [0, 70], creatinine mg/dl [0, 25], sodium mEq/l [100, 190], pH [6.5, 8.0], glucose mg/dl
  [0, 1500], BUN mg/dl [0, 300], urine output ml/day [0, 12000]; comorbidities [0, 9], years of
  education [0, 31], ADL indices [0, 7]; the 0/1 ``<name>_missing`` indicators are named [0, 1]
  (they have no "=").
- synthetic data (simulate's ``[synthetic]`` and the slide cohort's genes): standard normal
  features, [-4, 4].
"""

from __future__ import annotations

from ...records import PublicRanges

AGE = (18.0, 95.0)
STANDARD_NORMAL = PublicRanges(all=(-4.0, 4.0))

_PBC = {
    "labs": PublicRanges(
        features={
            "bili": (0.0, 30.0),
            "albumin": (1.0, 6.0),
            "alk.phos": (0.0, 15000.0),
            "ast": (0.0, 500.0),
            "platelet": (0.0, 800.0),
            "protime": (8.0, 20.0),
            "years_before_landmark": (0.0, 2.0),
        }
    ),
    "static": PublicRanges(features={"age": AGE}),
}

_SUPPORT2 = {
    "physiology": {
        "meanbp": (0.0, 250.0),
        "wblc": (0.0, 200.0),
        "hrt": (0.0, 300.0),
        "resp": (0.0, 90.0),
        "temp": (30.0, 44.0),
        "pafi": (0.0, 900.0),
        "scoma": (0.0, 100.0),
    },
    "labs": {
        "alb": (0.5, 7.0),
        "bili": (0.0, 70.0),
        "crea": (0.0, 25.0),
        "sod": (100.0, 190.0),
        "ph": (6.5, 8.0),
        "glucose": (0.0, 1500.0),
        "bun": (0.0, 300.0),
        "urine": (0.0, 12000.0),
    },
    "history": {
        "age": AGE,
        "num_co": (0.0, 9.0),
        "edu": (0.0, 31.0),
        "adlp": (0.0, 7.0),
        "adls": (0.0, 7.0),
    },
}
_SUPPORT2_INDICATED = {
    "physiology": ("wblc", "pafi"),
    "labs": ("alb", "bili", "ph", "glucose", "bun", "urine"),
    "history": ("edu", "adlp", "adls"),
}  # the columns with a ``<name>_missing`` indicator

PUBLIC_RANGES: dict[str, dict[str, PublicRanges]] = {
    "nki70": {
        "genes": PublicRanges(all=(-2.0, 2.0)),
        "clinical": PublicRanges(features={"num_Age": AGE}),
    },
    "gse7390": {
        "genes": PublicRanges(all=(0.0, 16.0)),
        "clinical": PublicRanges(features={"age": AGE, "size": (0.0, 10.0)}),
    },
    "ovarian": {"genes": PublicRanges(all=(-8.0, 16.0)), "clinical": PublicRanges()},
    "pbc": _PBC,
    "pbc-survival": _PBC,
    "support2": {
        m: PublicRanges(
            features={**r, **{f"{f}_missing": (0.0, 1.0) for f in _SUPPORT2_INDICATED[m]}}
        )
        for m, r in _SUPPORT2.items()
    },
}


def public_ranges(dataset: str, modalities: tuple[str, ...] | list[str]) -> dict[str, PublicRanges]:
    """The ranges of ``dataset``'s ``modalities`` ("synthetic" / "slides": standard normal)."""
    if dataset in ("synthetic", "slides"):
        return {m: STANDARD_NORMAL for m in modalities}
    table = PUBLIC_RANGES.get(dataset, {})
    return {m: table[m] for m in modalities if m in table}
