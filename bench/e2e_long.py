"""End-to-end runs too long for `make test`, each with the checks its test made (moved here with
it, or imported from the test it extends), the result printed; exit status 1 if a check failed.

    .venv/bin/python bench/e2e_long.py                          # all three, about 15 minutes
    .venv/bin/python bench/e2e_long.py ray-seeds ray-cluster dp  # or some of them

``ray-seeds``: ovarian-4 --quick --seeds 2 --engine ray: the summary over two seeds (every kind's
mean over seeds 0 and 1, paired comparisons over both, each seed's report, the Ray instance
stopped); `make test` runs it with one seed (tests/simulate/test_ray_engine.py).
``ray-cluster``: nki70-3 --quick attached to a two-node Ray cluster on this machine (one CPU per
node): the run names both nodes, each trained sites, the report shows the placement, the run
started no Ray instance and left the cluster running.
``dp``: nki70-3 --quick with ``block_epsilon = 3``: every site trains DP blocks, report.json's
blocks carry the epsilon each spent (at most 3), the merged version's card has a Privacy section,
report.md says the references are not comparable. DP training, accounting, the card and the
coordinator's ``max_block_epsilon`` are also tested piece by piece in `make test`
(tests/common/train/test_dp.py, tests/coordinator/test_registry.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests package of this checkout
from coordinator.launch import free_port
from tests.simulate.test_ray_engine import OVARIAN_4, RAY, RAY_TEMP, check_ray_run
from tests.simulate.test_simulate_run import MMLEGO, processes_mentioning

ROOT = Path(__file__).resolve().parents[1]


def ray_seeds(folder: Path) -> None:
    out = folder / "ray"
    args = ["--scenario", "ovarian-4", "--quick", "--seeds", "2", "--engine", "ray"]
    done = subprocess.run(
        [*MMLEGO, "simulate", *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (out / "stdout.txt").write_text(done.stdout)
    check_ray_run(out, seeds=2, expected=OVARIAN_4)


@contextmanager
def two_nodes() -> Iterator[str]:
    """A Ray cluster of two nodes on this machine: a head and a worker, one CPU and a name each."""
    temp = tempfile.mkdtemp(prefix="mmlt-")  # Ray's socket paths must stay short
    port = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    common = [
        "--block",
        "--num-cpus",
        "1",
        "--object-store-memory",
        str(100 * 1024**2),
        "--disable-usage-stats",
    ]
    procs = [
        subprocess.Popen(
            [
                RAY,
                "start",
                "--head",
                "--port",
                str(port),
                "--node-ip-address",
                "127.0.0.1",
                "--node-name",
                "head-node",
                "--include-dashboard=false",
                f"--ray-client-server-port={free_port()}",
                f"--dashboard-port={free_port()}",
                "--temp-dir",
                temp,
                *common,
            ],
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    try:
        time.sleep(3)
        procs.append(
            subprocess.Popen(
                [
                    RAY,
                    "start",
                    "--address",
                    f"127.0.0.1:{port}",
                    "--node-ip-address",
                    "127.0.0.1",
                    "--node-name",
                    "worker-node",
                    *common,
                ],
                env=env,
                start_new_session=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        deadline = time.monotonic() + 90
        while len(processes_mentioning("raylet/raylet")) < 2:
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), (
                "the two Ray nodes did not start"
            )
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        for p in reversed(procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


def ray_cluster(folder: Path) -> None:
    """A run attached to a two-node Ray cluster says which node trained which site, starts no Ray
    instance of its own and leaves the cluster running."""
    with two_nodes() as address:
        attached(address, folder / "run")


def attached(two_nodes: str, out: Path) -> None:
    done = subprocess.run(
        [
            *MMLEGO,
            "simulate",
            "--scenario",
            "nki70-3",
            "--quick",
            "--engine",
            "ray",
            "--ray-address",
            two_nodes,
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (
        f"attached to the cluster at {two_nodes}: 2 node(s) (head-node, worker-node), 2 CPUs"
        in done.stdout
    )
    report = json.loads((out / "report.json").read_text())
    assert set(report["placement"]) == {"hosp-omics", "hosp-clinic", "hosp-both"}
    assert set(report["placement"].values()) == {
        "head-node",
        "worker-node",
    }  # one CPU each: both nodes trained sites
    text = (out / "report.md").read_text()
    assert all(f"| {node} |" in text for node in ("head-node", "worker-node"))
    assert processes_mentioning(RAY_TEMP) == []  # the run started no Ray instance of its own
    assert (
        len(processes_mentioning("raylet/raylet")) == 2
    )  # and left the cluster it attached to running


def dp(folder: Path) -> None:
    scenario = folder / "nki70-dp.toml"
    scenario.write_text(
        (ROOT / "simulate/scenarios/nki70-3.toml")
        .read_text()
        .replace('name = "nki70-3"', 'name = "nki70-dp"\nblock_epsilon = 3.0')
    )
    out = folder / "run"
    done = subprocess.run(
        [*MMLEGO, "simulate", "--scenario", str(scenario), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert len(report["blocks"]) == 4 and all(0 < b["dp_epsilon"] <= 3.0 for b in report["blocks"])
    assert report["checks"]["every block spent at most epsilon 3"] and all(
        report["checks"].values()
    )
    card = (out / "models" / report["merge"]["model"] / "card.md").read_text()
    assert "## Privacy" in card and "| hosp-both | " in card
    assert "not comparable (DP blocks" in (out / "report.md").read_text()


RUNS: dict[str, Callable[[Path], None]] = {
    "ray-seeds": ray_seeds,
    "ray-cluster": ray_cluster,
    "dp": dp,
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="*", default=list(RUNS), choices=list(RUNS))
    args = ap.parse_args()
    failed = 0
    for name in args.runs:
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="mmlego-e2e-") as tmp:
            try:
                RUNS[name](Path(tmp))
                verdict = "every check passed"
            except AssertionError as exc:
                failed += 1
                verdict = f"FAILED: {str(exc)[-2000:]}"
        print(f"{name}: {verdict} ({time.monotonic() - t0:.0f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
