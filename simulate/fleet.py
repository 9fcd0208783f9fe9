"""The processes of a simulated consortium: each started in its own process group (so a site
daemon's SuperNode and ClientApps go with it), each with its own log file; a process that dies
unexpectedly is named with the end of its log; peak memory is sampled from /proc; everything is
stopped at the end, on Ctrl-C and on failure."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from common.processes import command_name, descendants, peak_rss, pss, rss

RAY_WORKER = "ray::"  # how a Ray worker process names itself (/proc/PID/comm)
# the key of the largest Ray worker peak among a run's peaks (the ray engine)
LARGEST_WORKER = "largest Ray worker (a site's training, scoring or LegoFuse client)"

# a whole sample (every process's PSS from /proc/PID/smaps_rollup, which the kernel counts page by
# page) at most this often while a run is checked: at 1,000 sites, sampling on every check of the
# evaluators' loop took most of the simulator's time, beside the sites' work on two cores
SAMPLE_EVERY_S = 2.0

MMLEGO = [sys.executable, "-c", "from common.cli import run; run()"]


class SimulationError(RuntimeError):
    """A simulated run that cannot go on; the message names the process or step."""


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join("    " + line for line in text[-lines:])


@dataclass
class Member:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    peak: int = 0
    may_exit: bool = False  # a clean exit (status 0) is expected, e.g. a `site run --once`


@dataclass
class Fleet:
    logs: Path
    members: dict[str, Member] = field(default_factory=dict)
    # the most resident memory of all the run's processes (and this one) at one sample
    total_peak: int = 0
    total_pss_peak: int = 0  # the same counting each shared page once (proportional set sizes)
    # the largest peak of one Ray worker process (a site's training, scoring or LegoFuse client)
    worker_peak: int = 0
    sampled_at: float = -math.inf  # time.monotonic() of the last whole sample

    def start(
        self,
        name: str,
        command: list[str],
        env: dict[str, str] | None = None,
        may_exit: bool = False,
    ) -> Member:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / (name.replace(" ", "-") + ".log")
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.members[name] = Member(name, proc, log, may_exit=may_exit)
        return self.members[name]

    def wait_for_text(self, name: str, text: str, timeout_s: float) -> None:
        member = self.members[name]
        deadline = time.monotonic() + timeout_s
        while text not in member.log.read_text(errors="replace"):
            self.check()
            if time.monotonic() > deadline:
                raise SimulationError(
                    f"{name} did not get ready within {timeout_s:.0f} s; "
                    f"its log ends:\n{tail(member.log)}"
                )
            time.sleep(0.2)

    def check(self) -> None:
        """Raise naming the first member that stopped unexpectedly, with the end of its log (and
        sample memory: the whole run at most every SAMPLE_EVERY_S)."""
        self.sample(SAMPLE_EVERY_S)
        for m in self.members.values():
            if m.proc.poll() is not None and not (m.may_exit and m.proc.returncode == 0):
                raise SimulationError(
                    f"{m.name} (pid {m.proc.pid}) exited with status {m.proc.returncode}; "
                    f"its log {m.log} ends:\n{tail(m.log)}"
                )

    def sample(self, every_s: float = 0.0) -> None:
        """Each member's peak; then, unless the last whole sample is under ``every_s`` old, the
        largest Ray worker's peak and the run's total (RSS and PSS summed over every process)."""
        pids = {os.getpid()}
        for m in self.members.values():
            if m.proc.poll() is None:
                m.peak = max(m.peak, peak_rss(m.proc.pid))
                pids.add(m.proc.pid)
        if time.monotonic() - self.sampled_at < every_s:
            return
        self.sampled_at = time.monotonic()
        for pid in list(pids - {os.getpid()}):
            pids.update(descendants(pid))
        for pid in pids:
            if command_name(pid).startswith(RAY_WORKER):
                self.worker_peak = max(self.worker_peak, peak_rss(pid))
        self.total_peak = max(self.total_peak, sum(rss(p) for p in pids))
        self.total_pss_peak = max(self.total_pss_peak, sum(pss(p) for p in pids))

    def stop_all(self, grace_s: float = 20.0) -> None:
        """SIGTERM every process group (newest first), wait, then SIGKILL what is left."""
        self.sample()
        live = [m for m in reversed(list(self.members.values())) if m.proc.poll() is None]
        for m in live:
            _signal_group(m.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for m in live:
            try:
                m.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for m in (
            live
        ):  # only groups that were alive now: an old group id may belong to someone else by now
            _signal_group(m.proc.pid, signal.SIGKILL)  # also children the leader left behind
            if m.proc.poll() is None:
                m.proc.wait(10)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
