"""`mmlego simulate --engine ray`: the sites' work as Ray tasks and LegoFuse on Flower's simulation
engine. The same scenario and seed give the processes engine's blocks and merge bit for bit (and
its LegoFuse rounds within 0.02); a site whose Ray worker dies is run again once on another worker
and the run completes (a second loss ends it, naming the site); an unreachable cluster and Ctrl-C
each end the run with one message, a non-zero exit and no Ray process left that the run started.
Two seeds, and a run attached to a two-node Ray cluster that says which node trained which site:
bench/e2e_long.py ray-seeds ray-cluster."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from safetensors.numpy import load_file

from coordinator.launch import free_port
from simulate.fleet import LARGEST_WORKER, RAY_WORKER
from site_client.fuse_client import node_settings
from tests.simulate.test_simulate_run import MMLEGO, gone, interrupted, processes_mentioning

RAY = str(Path(sys.executable).parent / "ray")
RAY_TEMP = "mmlego-ray-"  # the prefix of the temp folder of a Ray instance that a run starts
# one Ray test at a time: each checks that no Ray process is left on the machine (timeout: beside
# other tests under xdist a run takes longer)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200), pytest.mark.xdist_group("ray")]


@dataclass(frozen=True)
class Expected:
    """What a run of a scenario must show: its sites, a paired and an unpaired one, its blocks."""

    scenario: str
    sites: frozenset[str]
    paired: str
    unpaired: str
    blocks: int


NKI70_3 = Expected(
    "nki70-3", frozenset({"hosp-omics", "hosp-clinic", "hosp-both"}), "hosp-both", "hosp-omics", 4
)
OVARIAN_4 = Expected(
    "ovarian-4", frozenset({"hosp-16", "hosp-4", "hosp-9", "hosp-13"}), "hosp-13", "hosp-16", 5
)
SCENARIO = NKI70_3  # the small cohort here; ovarian-4 over two seeds: bench/e2e_long.py ray-seeds


def tensors(path: Path) -> dict[str, str]:
    return {
        k: hashlib.sha256(v.tobytes()).hexdigest() for k, v in sorted(load_file(str(path)).items())
    }


def blocks(run: Path) -> dict[str, dict[str, str]]:
    """Every site's block folders (content-addressed names) -> the sha256 of each tensor."""
    return {
        f"{f.parent.parent.parent.name}/{f.parent.name}": tensors(f)
        for f in sorted(run.glob("sites/*/blocks/*/weights.safetensors"))
    }


@pytest.fixture(scope="module")
def ray_run() -> Iterator[Path]:
    """nki70-3 --quick, one seed through the summary over seeds (``--seeds 1``), on the ray engine
    (a local Ray instance started by the run); ovarian-4 over two seeds: bench/e2e_long.py."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ray"
        done = subprocess.run(
            [
                *MMLEGO,
                "simulate",
                "--scenario",
                SCENARIO.scenario,
                "--quick",
                "--seeds",
                "1",
                "--engine",
                "ray",
                "--out",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        (out / "stdout.txt").write_text(done.stdout)
        yield out


def test_the_ray_engine_runs_a_scenario_over_seeds_and_stops_its_ray_instance(
    ray_run: Path,
) -> None:
    check_ray_run(ray_run, seeds=1, expected=SCENARIO)


def check_ray_run(ray_run: Path, seeds: int, expected: Expected) -> None:
    """The checks of a ``--seeds N --engine ray`` run of a scenario (bench/e2e_long.py: ovarian-4,
    N = 2)."""
    stdout = (ray_run / "stdout.txt").read_text()
    for line in (
        "Ray: started the cluster at 127.0.0.1:",
        f"{len(expected.sites)} sites' block training submitted as Ray tasks",
        "simulation engine on the Ray cluster",
        f"LegoMerge: model version {expected.scenario}-v1",
        "round 1 of 2",
        "every process stopped",
        "| kind | model | test patients |",
    ):
        assert line in stdout, line
    summary = json.loads((ray_run / "report.json").read_text())
    kinds = {r["kind"]: r for r in summary["summary"]}
    assert set(kinds) == {
        "best-block",
        "ensemble",
        "merge-uniform",
        "merge",
        "fuse",
        "recommended",
        "local",
        "baseline",
        "baseline-paired",
        "ceiling",
        "ceiling-fuse",
        "ceiling-ensemble",
        "ceiling-e2e",
        "ceiling-classical",
    }
    assert all(
        r["seeds"] == list(range(seeds)) and len(r["values"]) == seeds and 0 < r["mean"] < 1
        for r in kinds.values()
    )
    assert (
        len({r["patients"] for r in kinds.values()}) == 1
    )  # every model on the same test patients
    compared = {
        c["b"]: c for c in summary["comparisons"]
    }  # recommended minus every other kind, over every seed
    assert set(compared) == set(kinds) - {"recommended"} and all(
        c["seeds"] == seeds and c["low"] <= c["diff"] <= c["high"] for c in compared.values()
    )
    sites = set(expected.sites)
    assert {s["site"] for s in summary["per_site"]} == sites
    assert all(
        "local" in {x["kind"] for x in s["rows"]}
        and any(c["b"] == "local" for c in s["comparisons"])
        for s in summary["per_site"]
    )
    for seed in range(seeds):
        report = json.loads((ray_run / f"seed-{seed}" / "report.json").read_text())
        assert (
            report["engine"] == "ray"
            and set(report["placement"]) == sites
            and set(report["placement"].values()) == {"head"}
        )
        v = report["merge"]["validation"]
        assert (
            v["evaluated"]
            and set(v["scored_by"]) | set(v["declined_by"]) == sites
            and v["silent"] == []
        )
        assert report["centralized"]["blocks_exact"] is True
        assert v["chosen"] in {c["candidate"] for c in v["candidates"]}
        assert v["scored_by"] and all(
            report["communication"][s]["evaluation_down"] > 0 for s in v["scored_by"]
        )
        assert report["recommended"]["model"].startswith(f"{expected.scenario}-v")
        assert ("model" in report["fuse"]) != (
            "not_stored" in report["fuse"]
        )  # a kept round, or the reason none was kept
        assert (
            report["communication"][expected.paired]["mmlego_rounds"] >= 1
            and report["communication"][expected.unpaired]["mmlego_rounds"] == 0
        )
        assert report["baselines"]["baseline-paired"]["sites"] == [expected.paired] and all(
            report["checks"].values()
        )
        assert report["baselines"]["baseline"]["sites"] == sorted(sites)
        assert set(report["validation"]["site_patients"]) == sites and report["validation"][
            "how"
        ].startswith("5-fold")
        for name in ("report.md", "comparisons.png", "communication.png", "test-scores.npz"):
            assert (ray_run / f"seed-{seed}" / name).stat().st_size > 0
        peaks = report["peak_rss_mb"]
        assert (
            "ray head" in peaks
            and peaks["total (all the run's processes at once)"] > peaks["coordinator"]
        )
        # a site's Ray worker holds torch and a model at least; a round carries the model's weights
        assert 100 < peaks[LARGEST_WORKER] < peaks["total (all the run's processes at once)"]
        assert report["round_bytes"] > 0
        assert "| Ray node |" in (ray_run / f"seed-{seed}" / "report.md").read_text()
    assert (
        processes_mentioning(str(ray_run)) == []
        and processes_mentioning(RAY_TEMP) == []
        and gone(RAY_WORKER) == []
    )


def test_both_engines_give_the_same_blocks_and_merge_and_fuse_rounds_within_0_02(
    ray_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "processes"
    done = subprocess.run(
        [*MMLEGO, "simulate", "--scenario", SCENARIO.scenario, "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(re.escape(SCENARIO.unpaired) + " +training genes", done.stdout)
    for line in ("pushed clinical", "SuperNode started", "round 1 of 2", "every process stopped"):
        assert line in done.stdout, line
    assert processes_mentioning(str(out)) == []
    ray = ray_run / "seed-0"
    mine, theirs = blocks(out), blocks(ray)
    assert (
        len(mine) == SCENARIO.blocks and mine == theirs
    )  # the same block folders (content-addressed), every tensor bit for bit
    a, b = (
        json.loads((out / "report.json").read_text()),
        json.loads((ray / "report.json").read_text()),
    )
    assert a["engine"] == "processes" and a["placement"] == {}
    assert (
        a["merge"]["model"] == b["merge"]["model"] and a["merge"]["recipe"] == b["merge"]["recipe"]
    )
    assert a["merge"]["validation"]["chosen"] == b["merge"]["validation"]["chosen"]
    assert tensors(out / "models" / a["merge"]["model"] / "weights.safetensors") == tensors(
        ray / "models" / b["merge"]["model"] / "weights.safetensors"
    )
    curve_a, curve_b = fuse_curve(a), fuse_curve(b)  # every LegoFuse round's consortium validation
    assert len(curve_a) == len(curve_b) >= 1
    assert all(abs(x - y) <= 0.02 for x, y in zip(curve_a, curve_b, strict=True)), (
        curve_a,
        curve_b,
    )
    test_a, test_b = ({r["kind"]: r["mean"] for r in rep["summary"]} for rep in (a, b))
    assert (
        abs(test_a["fuse"] - test_b["fuse"]) <= 0.02
    )  # the fused version (or its parent, when no round was kept) on test


def fuse_curve(report: dict) -> list[float]:  # type: ignore[type-arg]
    fuse = report["fuse"]
    return [
        float(r["value"])
        for r in (fuse["curve"] if "curve" in fuse else fuse["validation"]["curve"])
    ]


def test_an_unreachable_ray_address_is_one_message_and_starts_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
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
            f"127.0.0.1:{free_port()}",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "is not reachable" in done.stderr and "Traceback" not in done.stdout + done.stderr
    assert (
        processes_mentioning(str(out)) == []
        and processes_mentioning(RAY_TEMP) == []
        and processes_mentioning(RAY_WORKER) == []
    )


def test_a_site_whose_ray_worker_dies_is_run_again_once_and_the_run_completes(
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [
            *MMLEGO,
            "simulate",
            "--scenario",
            "nki70-3",
            "--quick",
            "--engine",
            "ray",
            "--set",
            "rounds=0",
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not (mid_training(out) and (victims := processes_mentioning("ray::train_site"))):
            assert proc.poll() is None and time.monotonic() < deadline, "no training task was seen"
            time.sleep(0.02)
        for pid in victims:  # a site's task is running in one of them: each site lost is rerun
            os.kill(pid, signal.SIGKILL)
        rest, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, rest[-3000:]
    assert "was lost" in rest and "running it again once on another worker" in rest, rest[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert len(report["blocks"]) == NKI70_3.blocks and all(report["checks"].values())
    assert gone(str(out)) == [] and gone(RAY_TEMP) == [] and gone(RAY_WORKER) == []


def mid_training(run: Path) -> bool:
    """A site's training task has started (its first log line) and not finished."""
    for log in run.glob("logs/site-*.log"):
        text = log.read_text(errors="replace")
        if '"event": "starting"' in text and '"event": "done"' not in text:
            return True
    return False


def test_a_step_is_run_again_only_for_a_lost_worker_and_only_once() -> None:
    import ray.exceptions as errors

    from simulate.fleet import Fleet
    from simulate.rayengine import RayEngine

    said: list[str] = []
    engine = RayEngine(Fleet(Path(".")), None, said.append)
    retried: set[str] = set()
    lost = errors.WorkerCrashedError()
    assert engine.retry("hosp-a", "training", lost, retried) and "hosp-a" in retried
    assert not engine.retry("hosp-a", "training", lost, retried)  # a second loss fails the run
    assert not engine.retry("hosp-b", "training", ValueError("the site's step raised"), retried)
    assert len(said) == 1 and said[0].startswith("site hosp-a: the Ray worker running its training")
    assert "its Ray task failed" in str(engine._failed("hosp-a", lost))


def test_ctrl_c_stops_the_ray_instance_of_the_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    interrupted(
        ["--scenario", "nki70-3", "--quick", "--engine", "ray"],
        out,
        "submitted as Ray tasks",
        RAY_TEMP,
    )
    assert gone(str(out)) == [] and gone(RAY_TEMP) == [] and gone(RAY_WORKER) == []


def test_a_simulated_client_app_finds_its_site_through_the_partition_file(tmp_path: Path) -> None:
    parts = tmp_path / "flower-partitions.json"
    parts.write_text(
        json.dumps(
            [{"site": "a", "config": "/x/a/site.toml"}, {"site": "b", "config": "/x/b/site.toml"}]
        )
    )
    assert (
        node_settings({"partition-id": 1, "num-partitions": 2}, {"partitions": str(parts)})[
            "site-config"
        ]
        == "/x/b/site.toml"
    )
    assert node_settings({"site-config": "/own/site.toml"}, {"partitions": str(parts)}) == {
        "site-config": "/own/site.toml"
    }
    assert node_settings({"partition-id": 0}, {}) == {
        "partition-id": 0
    }  # no partition file: the handler says what is missing
