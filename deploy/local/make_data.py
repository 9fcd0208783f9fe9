"""Demo data for deploy/local/run.sh: NKI-70 (a real, public dataset) split into three hospitals'
site data folders, and the task an operator would define for it. A real site brings its own
folder (see README "Bring your own data"); this only stands in for three hospitals on one machine.

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
    data = load_builtin("nki70")
    order = np.random.default_rng(0).permutation(len(data))
    a, b, c = np.array_split(order, 3)
    export_site_folder(data.subset(a).select_modalities(["genes"]), out / "hosp-a")  # gene expression only
    export_site_folder(data.subset(b).select_modalities(["genes"]), out / "hosp-b")
    export_site_folder(data.subset(c), out / "hosp-c")  # genes and clinical for the same patients (paired)
    assert data.time is not None and data.event is not None
    edges = survival_bins(data.time[a], data.event[a], 4)  # the operator's choice of time bins
    (out / "task.toml").write_text(f'id = "nki70"\nkind = "survival"\nn_bins = 4\nbin_edges = {list(edges)}\n'
                                   'modalities = ["genes", "clinical"]\nlatent_rows = 8\nlatent_dim = 16\nfuse_mode = "stack"\n')


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python deploy/local/make_data.py OUT")
    main(Path(sys.argv[1]))
