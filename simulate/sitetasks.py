"""A site's work as tasks on a Ray cluster (what ``mmlego simulate --engine ray`` submits): the
site daemon's own steps, one thread each, its JSON lines appended to the site's log as a daemon
writes them; each returns the Ray node it ran on, after giving freed memory back (a Ray worker
lives on for the next site's task)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.processes import give_back_memory
from site_client.config import load_site_config
from site_client.daemon import Daemon


def _as_daemon(
    site_toml: str, log: str, once: bool, step: Callable[[Daemon], Any]
) -> tuple[Any, str]:
    import ray
    import torch

    torch.set_num_threads(1)
    with open(log, "a") as out:
        result = step(
            Daemon(load_site_config(Path(site_toml)), threading.Event(), out=out, once=once)
        )
    give_back_memory(lazily=True)  # when the worker grew (a step that declined a job did not)
    return result, str(ray.get_runtime_context().get_node_id())


def train_site(site_toml: str, log: str) -> dict[str, Any]:
    """A site's block(s): train, sign, push (``site run --once``); the daemon's exit status and
    the node."""
    code, node = _as_daemon(site_toml, log, True, Daemon.run)
    return {"code": code, "node": node}


def evaluate_site(site_toml: str, log: str) -> dict[str, Any]:
    """A site answers its open evaluation jobs (the daemon's evaluation step); the node."""
    _, node = _as_daemon(site_toml, log, False, Daemon.evaluate)
    return {"node": node}
