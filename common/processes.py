"""Stopping a child process: SIGTERM, a grace period, then SIGKILL."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any


def stop_process(proc: subprocess.Popen[Any], grace_s: float = 15.0) -> int | None:
    """Terminate ``proc`` (if it still runs) and reap it; returns its exit status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


def peak_rss(pid: int) -> int:
    """Peak resident memory of a live process in bytes (Linux VmHWM); 0 when unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0
