"""`mmlego simulate` end to end as a user runs it (quick scenarios: real coordinator, SuperLink
and site daemon processes on loopback), its report checked for internal consistency; Ctrl-C in
the middle of a run stops every process it started; a process that dies is named with its log.
The same scenario on both engines: tests/simulate/test_ray_engine.py; a scenario of DP blocks:
bench/e2e_long.py dp."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from simulate.fleet import Fleet, SimulationError
from simulate.render import SCORES, load_measured
from simulate.rescore import KeptRun

MMLEGO = [sys.executable, "-c", "from common.cli import run; run()"]


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (zombies excluded)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next(
                line
                for line in (proc / "status").read_text().splitlines()
                if line.startswith("State:")
            )
        except (FileNotFoundError, ProcessLookupError, PermissionError, StopIteration):
            continue
        if text in cmdline and "Z" not in state.split()[1]:
            found.append(int(proc.name))
    return found


@pytest.mark.slow
@pytest.mark.timeout(1200)  # beside other tests under xdist
def test_a_scenario_of_site_data_folders_with_different_modalities_runs(tmp_path: Path) -> None:
    """ovarian-folders with a validation split instead of cross-fitting (a sixth of the training;
    cross-fitted runs: the data-minimisation test, the ray engine's and the slides' runs)."""
    scenario = tmp_path / "ovarian-folders.toml"
    scenario.write_text(
        (Path(__file__).parents[2] / "simulate/scenarios/ovarian-folders.toml")
        .read_text()
        .replace('name = "ovarian-folders"', 'name = "ovarian-folders"\nfolds = 0')
    )
    out = tmp_path / "run"
    done = subprocess.run(
        [*MMLEGO, "simulate", "--scenario", str(scenario), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    sites = {s["site"]: s for s in report["per_site"]}
    assert set(sites) == {"hosp-16", "hosp-13", "hosp-4"}
    assert (
        sites["hosp-4"]["patients"] < sites["hosp-13"]["patients"] < sites["hosp-16"]["patients"]
    )  # its own test part
    best = next(r for r in report["summary"] if r["kind"] == "best-block")
    # every model is compared on the patients the best block can score: those of its modality
    assert (
        all(r["patients"] == best["patients"] for r in report["summary"])
        and best["patients"] < report["test_patients"]
    )
    kinds = {r["kind"] for r in report["summary"]}
    assert {
        "local",
        "baseline",
        "baseline-paired",
        "ceiling",
        "ceiling-classical",
    } <= kinds  # references over folders too
    assert {c["b"] for c in report["comparisons"]} == kinds - {"recommended"}
    assert sites["hosp-4"]["rows"] and "local" in {x["kind"] for x in sites["hosp-4"]["rows"]}
    assert all(report["checks"].values())

    # a kept run's versions scored again after it (development-seed studies): the run's own scores
    measured = load_measured(out / SCORES)
    with KeptRun(out, str(scenario)) as kept:
        assert set(kept.views) == set(measured.per_site)
        for site, test in measured.per_site.items():
            again = kept.scores(report["merge"]["model"], site)
            assert np.allclose(again, test.scores["merge"], rtol=0, atol=1e-6)

    # the federated side again, its references read from the run above instead of trained again
    again = tmp_path / "again"
    done = subprocess.run(
        [
            *MMLEGO,
            "simulate",
            "--scenario",
            str(scenario),
            "--quick",
            "--out",
            str(again),
            "--references-from",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    second = json.loads((again / "report.json").read_text())
    assert any(k.startswith("references read from") for k in second["phases_s"])
    assert not any("FedAvg from scratch" in k for k in second["phases_s"])
    references = {"local", "baseline", "baseline-paired", "ceiling", "ceiling-classical"}

    def rows(r: dict) -> dict:
        return {x["kind"]: x for x in r["summary"] if x["kind"] in references}

    assert rows(second) == rows(report) and set(rows(report)) == references
    assert second["references"] == report["references"]
    assert second["baselines"] == report["baselines"]
    assert [s["local"] for s in second["per_site"]] == [s["local"] for s in report["per_site"]]
    assert all(second["checks"].values())


@pytest.mark.slow
@pytest.mark.timeout(1200)  # beside other tests under xdist
def test_the_slide_scenario_runs_end_to_end_on_per_slide_files(
    tmp_path: Path, short_tmp: Path
) -> None:
    """slides-3: a hospital with slides only (per-slide HDF5 files, read lazily), one with genes
    only, one with both: blocks trained and pushed, merged, LegoFuse rounds run; the scratch
    cohort is removed; each site's data folder holds its own patients' slide files only."""
    out, scratch = tmp_path / "run", short_tmp  # the run's own temporary folder
    done = subprocess.run(
        [*MMLEGO, "simulate", "--scenario", "slides-3", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "TMPDIR": str(scratch)},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["synthetic"] and all(report["checks"].values())
    blocks = {(b["site"], b["modality"]) for b in report["blocks"]}
    assert blocks == {
        ("hosp-slides", "slides"),
        ("hosp-genes", "genes"),
        ("hosp-both", "slides"),
        ("hosp-both", "genes"),
    }
    fuse = report["fuse"]
    assert (
        fuse.get("model") or len(fuse["curve"]) >= 1
    )  # rounds ran (a fused version is stored only if it beats the merge)
    assert not list(scratch.glob("mmlego-slides-*"))  # the scratch cohort is gone
    a = {p.name for p in (out / "sites" / "hosp-slides" / "data" / "slides").iterdir()}
    b = {p.name for p in (out / "sites" / "hosp-both" / "data" / "slides").iterdir()}
    assert a and b and not a & b
    assert not (out / "sites" / "hosp-genes" / "data" / "slides").exists()


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary folder of its own with a short path (the sockets of DataLoader workers are made
    in the temporary folder, and an AF_UNIX path is at most 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="mmlt-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def interrupted(args: list[str], out: Path, marker: str, running: str) -> str:
    """Start ``mmlego simulate ARGS --out OUT``, send it SIGINT (Ctrl-C) once a line with
    ``marker`` appears (processes mentioning ``running`` must be up then); returns the rest of
    its output, checked for exit status 130 and the one line saying everything was stopped."""
    proc = subprocess.Popen(
        [*MMLEGO, "simulate", *args, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 240
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if marker in line or not line:
                break
        assert processes_mentioning(running), "".join(lines)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "interrupted; every process of the run was stopped" in rest, (
        rest[-2000:]
    )
    return rest


def gone(text: str, within_s: float = 20.0) -> list[int]:
    """The processes mentioning ``text`` that are still there after up to ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while processes_mentioning(text) and time.monotonic() < deadline:
        time.sleep(0.5)
    return processes_mentioning(text)


@pytest.mark.slow
def test_ctrl_c_stops_every_process_of_the_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    # a site is training: the coordinator, SuperLink and daemons are running
    interrupted(["--scenario", "nki70-3", "--quick"], out, " training ", str(out))
    assert gone(str(out), 10) == []


def test_a_process_that_dies_is_named_with_the_end_of_its_log(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path / "logs")
    try:
        fleet.start(
            "site hosp-x",
            [
                sys.executable,
                "-c",
                "print('loading data'); print('no such file: data.toml'); raise SystemExit(3)",
            ],
        )
        fleet.start("coordinator", [sys.executable, "-c", "import time; time.sleep(60)"])
        fleet.members["site hosp-x"].proc.wait(30)
        with pytest.raises(
            SimulationError,
            match=r"(?s)site hosp-x \(pid \d+\) exited with status 3.*no such file: data.toml",
        ):
            fleet.check()
    finally:
        fleet.stop_all(grace_s=5)
    assert all(m.proc.poll() is not None for m in fleet.members.values())


def test_bad_command_line_input_gets_one_message_and_exit_status_2(tmp_path: Path) -> None:
    for args, message in (
        (["--scenario", "nowhere"], "no such scenario file or built-in scenario"),
        (["--scenario", "nki70-3", "--sites", "4"], "--sites goes with --scenario scale"),
        (
            ["--scenario", "nki70-3", "--set", "fuse_sites=every"],
            "--set: fuse_sites: Input should be 'paired' or 'all'",
        ),
        (["--scenario", "nki70-3", "--set", "fuse_sites"], "expected KEY=VALUE"),
    ):
        done = subprocess.run(
            [*MMLEGO, "simulate", *args, "--out", str(tmp_path / "x")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2 and message in done.stdout + done.stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    done = subprocess.run(
        [*MMLEGO, "simulate", "--scenario", "nki70-3", "--quick", "--out", str(tmp_path / "full")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "is not an empty folder" in done.stdout + done.stderr
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]
