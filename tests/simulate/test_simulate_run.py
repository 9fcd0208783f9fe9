"""`mmlego simulate` end to end as a user runs it (a quick scenario: real coordinator, SuperLink
and site daemon processes on loopback), its report checked for internal consistency; Ctrl-C in
the middle of a run stops every process it started; a process that dies is named with its log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coordinator.simulate.fleet import Fleet, SimulationError

MMLEGO = [sys.executable, "-c", "from common.cli import run; run()"]


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (zombies excluded)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next(line for line in (proc / "status").read_text().splitlines() if line.startswith("State:"))
        except (FileNotFoundError, ProcessLookupError, PermissionError, StopIteration):
            continue
        if text in cmdline and "Z" not in state.split()[1]:
            found.append(int(proc.name))
    return found


def test_a_quick_scenario_runs_end_to_end_and_its_report_is_consistent(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = subprocess.run([*MMLEGO, "simulate", "--scenario", "nki70-3", "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for line in ("hosp-omics     training genes", "pushed clinical", "round 2 of 2", "every process stopped", "report.md"):
        assert line in done.stdout
    report = json.loads((out / "report.json").read_text())
    sites = {"hosp-omics", "hosp-clinic", "hosp-both"}
    assert {b["site"] for b in report["blocks"]} == sites and set(report["communication"]) == sites
    assert report["centralized"]["merge_exact"] is True  # the federated merge is the centralized one, bit for bit
    assert report["centralized"]["merge_test"] == report["merge"]["test"]
    assert abs(report["fuse"]["test"] - report["centralized"]["fuse_test"]) <= 0.02
    assert all(c["mmlego_up"] > 0 for c in report["communication"].values())
    assert report["communication"]["hosp-both"]["mmlego_rounds"] == 2 and report["communication"]["hosp-omics"]["mmlego_rounds"] == 0
    assert report["baseline"]["rounds"] >= 1 and report["baseline"]["sites"] == ["hosp-both"]
    assert report["fuse"]["card"]["participants"] == ["hosp-both"]
    assert all(report["checks"].values()) and report["test_patients"] > 0
    assert set(report["phases_s"]) >= {"sites train and push blocks", "merge", "fuse rounds"}
    assert report["peak_rss_mb"]["coordinator"] > 0
    for name in ("report.md", "test_metrics.png", "baseline_rounds.png", "communication.png"):
        assert (out / name).stat().st_size > 0
    assert "| LegoMerge nki70-3-v1 |" in (out / "report.md").read_text()
    assert processes_mentioning(str(out)) == []


def test_ctrl_c_stops_every_process_of_the_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen([*MMLEGO, "simulate", "--scenario", "nki70-3", "--quick", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 180
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if " training " in line or not line:  # a site is training: the run is in full swing
                break
        assert processes_mentioning(str(out)), "".join(lines)  # the coordinator, SuperLink and daemons are running
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "interrupted; every process of the run was stopped" in rest, rest[-2000:]
    deadline = time.monotonic() + 10
    while processes_mentioning(str(out)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_mentioning(str(out)) == []


def test_a_process_that_dies_is_named_with_the_end_of_its_log(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path / "logs")
    try:
        fleet.start("site hosp-x", [sys.executable, "-c", "print('loading data'); print('no such file: data.toml'); raise SystemExit(3)"])
        fleet.start("coordinator", [sys.executable, "-c", "import time; time.sleep(60)"])
        fleet.members["site hosp-x"].proc.wait(30)
        with pytest.raises(SimulationError, match=r"(?s)site hosp-x \(pid \d+\) exited with status 3.*no such file: data.toml"):
            fleet.check()
    finally:
        fleet.stop_all(grace_s=5)
    assert all(m.proc.poll() is not None for m in fleet.members.values())


def test_bad_command_line_input_gets_one_message_and_exit_status_2(tmp_path: Path) -> None:
    for args, message in ((["--scenario", "nowhere"], "no such scenario file or built-in scenario"),
                          (["--scenario", "nki70-3", "--sites", "4"], "--sites goes with --scenario scale")):
        done = subprocess.run([*MMLEGO, "simulate", *args, "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and message in done.stdout + done.stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    done = subprocess.run([*MMLEGO, "simulate", "--scenario", "nki70-3", "--quick", "--out", str(tmp_path / "full")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "is not an empty folder" in done.stdout + done.stderr
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]
