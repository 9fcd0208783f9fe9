"""deploy/local/run.sh on loopback, as CI runs it: a coordinator, its SuperLink and three sites
as separate processes from enrolment kits, through every step of docs/OPERATIONS.md; the script
checks each step (merged versions appear, measured by the hospitals' daemons; a new site's merge
keeps the others' blocks; the fuse run stores a version or says why not; a withdrawn and a
rotated-out certificate are refused; a restored store equals the backed-up one; the metrics show
the versions and the evaluation jobs) and exits 0 only if all held."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "local" / "run.sh"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


def test_the_local_deploy_runs_every_operations_step(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "MMLEGO": str(Path(sys.executable).parent / "mmlego"),
        "PYTHON": sys.executable,
    }
    done = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path / "run")],
        env=env,
        capture_output=True,
        text=True,
        timeout=1400,
    )
    why = [line for line in done.stderr.splitlines() if "FAILED" in line or "error" in line]
    assert done.returncode == 0, "\n".join(why) + "\n" + done.stdout[-5000:] + done.stderr[-3000:]
    assert "every step passed" in done.stdout
    steps = [line for line in done.stdout.splitlines() if line.startswith("== ")]
    assert [s.split(".")[0] for s in steps] == [f"== {i}" for i in range(15)], steps
    after = json.loads((tmp_path / "run" / "status-after.json").read_text())
    models = [m["model"] for m in after["models"]]
    fused = [m["model"] for m in after["models"] if m["recipe"] == "fuse"]
    assert (  # three merges (and the versions a merge published for a hospital), a fused one
        models == [f"ovarian-v{n}" for n in range(len(models), 0, -1)]
        and len(models) >= 3 + len(fused)
        and len(fused) <= 1
    )
    assert all(
        m["val_metric"] is not None for m in after["models"]
    )  # the hospitals measured every version
    assert after["tasks"][0]["recommended"] in models
    assert {s["site"]: s["state"] for s in after["sites"]} == {
        "hosp-a": "active",
        "hosp-b": "withdrawn",
        "hosp-c": "active",
    }
    assert not list((tmp_path / "run" / "run").glob("*.pid")), "a service was left running"
