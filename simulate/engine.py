"""What every engine of ``mmlego simulate`` works with: the run's services, the sites' progress
read from their logs, and the :class:`Engine` protocol each phase of :func:`simulate.run.simulate`
asks for its part (the processes engine in :mod:`simulate.run`, the ray engine in
:mod:`simulate.rayengine`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from common.client import TLSFiles
from common.records import TaskRecord

Say = Callable[[str], None]

# daemon event -> progress line
SHOWN = {
    "training": "training {modalities}",
    "trained": "trained {modality} (validation {val_metric})",
    "pushing": "pushing {modality}",
    "pushed": "pushed {modality}",
    "block-current": "has a current {modality} block",
    "supernode-started": "SuperNode started (LegoFuse rounds)",
    "failed": "FAILED: {error}",
    "registry-unreachable": "registry unreachable, retrying",
    "done": "done (blocks pushed; the process exits)",
}


class Progress:
    """Reads the sites' JSON-line logs and reports what each site is doing."""

    def __init__(self, logs: dict[str, Path], say: Say, t0: float) -> None:
        self.logs, self.say, self.t0 = logs, say, t0
        self.offsets = dict.fromkeys(logs, 0)
        self.events: dict[str, list[dict[str, Any]]] = {s: [] for s in logs}

    def poll(self) -> None:
        for site, log in self.logs.items():
            if not log.exists():
                continue
            with open(log, "rb") as f:
                f.seek(self.offsets[site])
                chunk = f.read()
            end = chunk.rfind(b"\n") + 1
            self.offsets[site] += end
            for line in chunk[:end].decode(errors="replace").splitlines():
                if not line.startswith("{"):
                    continue
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue
                self.events[site].append(event)
                template = SHOWN.get(event.get("event", ""))
                if template:
                    fields = {
                        k: (", ".join(v) if isinstance(v, list) else v) for k, v in event.items()
                    }
                    self.say(
                        f"[{time.monotonic() - self.t0:7.1f} s] {site:<14} "
                        f"{template.format_map(_Missing(fields))}"
                    )

    def pushed(self, site: str) -> set[str]:
        return {e["modality"] for e in self.events[site] if e.get("event") == "pushed"}

    def failure(self, site: str) -> str | None:
        return next(
            (str(e.get("error")) for e in self.events[site] if e.get("event") == "failed"), None
        )


class _Missing(dict):  # type: ignore[type-arg]
    def __missing__(self, key: str) -> str:
        return "?"


@dataclass
class Services:
    """The run's coordinator side and who the sites are."""

    address: str
    admin_tls: TLSFiles
    config_path: Path
    task: TaskRecord
    site_dirs: dict[str, Path]
    # a site trains in LegoFuse rounds (a paired one, or any with fuse_sites "all") and the
    # scenario asks for rounds
    fuse: bool
    # the ray engine: LegoFuse rounds on Flower's simulation engine (no SuperNodes)
    simulation: bool = False
    # sites whose evaluation is switched off: once one has declined a job, the coordinator waits for
    # it in no later job of the task, so no evaluator is started for it again
    switched_off: frozenset[str] = frozenset()
    told: set[str] = field(default_factory=set)  # those of them that declined a job


class Evaluators(Protocol):
    """Who answers the evaluation jobs of sites that keep no daemon running, and how they are
    started."""

    sites: list[str]  # the sites this starts evaluators for

    def busy(self) -> set[str]: ...  # sites with an evaluator running now

    def start(self, site: str) -> None: ...

    def check(self) -> None: ...  # raise if a process of the run stopped

    def wait(self, timeout_s: float) -> None: ...  # until an evaluator ends, at most timeout_s


ENGINES = ("processes", "ray")


class Engine(Protocol):
    """Where the sites' work runs: each phase of :func:`simulate` asks the engine for its part."""

    name: str
    placement: dict[str, str]  # site -> where its block(s) were trained, when the engine knows

    @property
    def parallel(self) -> int: ...  # sites' evaluators at once

    def start(self) -> str | None: ...  # what it started (a phase name), or None

    def superlink_env(self) -> dict[str, str] | None: ...  # the SuperLink's environment

    def train_and_push(self, svc: Services, progress: Progress, timeout_s: float) -> None: ...

    def evaluators(self, svc: Services) -> Evaluators: ...

    def disconnect(self) -> None: ...  # before the run's processes are stopped

    def cleanup(self) -> None: ...  # after
