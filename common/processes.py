"""Child processes: stopping one (SIGTERM, a grace period, then SIGKILL), its peak memory, its
descendants."""

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


def _status_kb(pid: int, key: str, file: str = "status") -> int:
    try:
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def peak_rss(pid: int) -> int:
    """Peak resident memory of a live process in bytes (Linux VmHWM); 0 when unknown."""
    return _status_kb(pid, "VmHWM:")


def rss(pid: int) -> int:
    """Resident memory of a live process now, in bytes (Linux VmRSS); 0 when unknown."""
    return _status_kb(pid, "VmRSS:")


def pss(pid: int) -> int:
    """Proportional resident memory of a live process now (Linux ``Pss``: each shared page divided
    among the processes that map it, so that a sum over processes counts it once); 0 when
    unknown."""
    return _status_kb(pid, "Pss:", "smaps_rollup")


def command_name(pid: int) -> str:
    """A live process's name as the kernel keeps it (``/proc/PID/comm``, at most 15 characters;
    a Ray worker's reads ``ray::...``); "" when unknown."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""


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
        fields = text[text.rfind(")") + 2 :].split()  # after "pid (comm) ": state, ppid, ...
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


# resident memory a worker must have grown by since it last gave memory back before a lazy
# give-back collects and trims: a full collection of a long-lived worker's heap takes tenths of a
# second (at 1,000 simulated sites most of a Ray worker's time went to it after steps that only
# declined a job)
GREW = 16 << 20
_settled = 0  # this process's resident memory after it last gave memory back


def give_back_memory(lazily: bool = False) -> None:
    """Collect garbage and return the C heap's free memory to the system (glibc ``malloc_trim``):
    for long-lived workers that run one site's work after another (Ray tasks and actors).
    ``lazily``: only when the process grew by GREW or more since it last did (the interpreter
    still collects young garbage on its own)."""
    import ctypes
    import gc
    import os

    global _settled
    if lazily and rss(os.getpid()) - _settled < GREW:
        return
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
    _settled = rss(os.getpid())
