"""Child processes: stopping one (SIGTERM, a grace period, then SIGKILL), its peak memory, its descendants."""

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


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children, their children, ...), found through /proc on
    Linux; Flower starts some of its processes in sessions of their own, out of reach of a
    process-group signal."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        fields = text[text.rfind(")") + 2:].split()  # after "pid (comm) ": state, ppid, ...
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out
