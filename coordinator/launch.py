"""Running a coordinator as a separate process (tests, benchmarks, simulations): start it, wait
until it listens, stop it with SIGTERM (or kill it), and read its peak memory."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from common.processes import peak_rss, stop_process


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a server that must keep its port
    across restarts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class CoordinatorProcess:
    def __init__(self, config: Path, log: Path, start_timeout_s: float = 60.0) -> None:
        self.config, self.log, self.start_timeout_s = config, log, start_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        seen = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from common.cli import run; run()",
                    "coordinator",
                    "serve",
                    "--config",
                    str(self.config),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self.start_timeout_s
        while b"listening on" not in self.log.read_bytes()[seen:]:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"the coordinator did not start; its log ends:\n{self.log.read_text()[-2000:]}"
                )
            time.sleep(0.1)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def peak_rss_bytes(self) -> int:
        """Peak resident memory so far (Linux: VmHWM)."""
        peak = peak_rss(self.pid)
        if not peak:
            raise RuntimeError("no VmHWM in /proc; peak memory is measured on Linux only")
        return peak

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
