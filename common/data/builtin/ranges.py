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
- synthetic data (simulate's ``[synthetic]`` and the slide cohort's genes): standard normal
  features, [-4, 4].
"""

from __future__ import annotations

from ...records import PublicRanges

AGE = (18.0, 95.0)
STANDARD_NORMAL = PublicRanges(all=(-4.0, 4.0))

_PBC = {"labs": PublicRanges(features={"bili": (0.0, 30.0), "albumin": (1.0, 6.0), "alk.phos": (0.0, 15000.0),
                                       "ast": (0.0, 500.0), "platelet": (0.0, 800.0), "protime": (8.0, 20.0),
                                       "years_before_landmark": (0.0, 2.0)}),
        "static": PublicRanges(features={"age": AGE})}

PUBLIC_RANGES: dict[str, dict[str, PublicRanges]] = {
    "nki70": {"genes": PublicRanges(all=(-2.0, 2.0)), "clinical": PublicRanges(features={"num_Age": AGE})},
    "gse7390": {"genes": PublicRanges(all=(0.0, 16.0)), "clinical": PublicRanges(features={"age": AGE, "size": (0.0, 10.0)})},
    "ovarian": {"genes": PublicRanges(all=(-8.0, 16.0)), "clinical": PublicRanges()},
    "pbc": _PBC,
    "pbc-survival": _PBC,
}


def public_ranges(dataset: str, modalities: tuple[str, ...] | list[str]) -> dict[str, PublicRanges]:
    """The ranges of ``dataset``'s ``modalities`` ("synthetic" / "slides": standard normal)."""
    if dataset in ("synthetic", "slides"):
        return {m: STANDARD_NORMAL for m in modalities}
    table = PUBLIC_RANGES.get(dataset, {})
    return {m: table[m] for m in modalities if m in table}
