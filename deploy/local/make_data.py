"""Demo data for deploy/local/run.sh: the ovarian cancer cohort (survset dataOvarian1, a real,
public dataset of four studies) as three hospitals' site data folders, and the task an operator
would define for it. A real site brings its own folder (see README "Bring your own data"); this
only stands in for three hospitals on one machine. The hospitals are large enough to hold at least
5 validation events each, so they score model versions (federated evaluation) instead of declining.

    python deploy/local/make_data.py OUT      # writes OUT/hosp-a, OUT/hosp-b, OUT/hosp-c, OUT/task.toml
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from common.data import load_builtin
from common.data.export import export_site_folder
from common.tasks import survival_bins


def main(out: Path) -> None:
    data = load_builtin("ovarian")
    assert data.groups is not None and data.time is not None and data.event is not None
    a, b, c = (np.flatnonzero(data.groups == g) for g in ("study16", "study4", "study13"))
    export_site_folder(data.subset(a).select_modalities(["genes"]), out / "hosp-a")  # gene expression only
    export_site_folder(data.subset(b).select_modalities(["genes"]), out / "hosp-b")
    export_site_folder(data.subset(c), out / "hosp-c")  # genes and clinical for the same patients (paired)
    edges = survival_bins(data.time[a], data.event[a], 4)  # the operator's choice of time bins
    (out / "task.toml").write_text(f'id = "ovarian"\nkind = "survival"\nn_bins = 4\nbin_edges = {list(edges)}\n'
                                   'modalities = ["genes", "clinical"]\nlatent_rows = 8\nlatent_dim = 16\nfuse_mode = "stack"\n')


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python deploy/local/make_data.py OUT")
    main(Path(sys.argv[1]))
