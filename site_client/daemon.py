"""``mmlego site run``: the site daemon. It trains the site's block(s) for the task if there is
no current one, pushes them (retry, back-off, resume), then answers the coordinator's evaluation
jobs (every ``[evaluation] poll_s``), and on a site with paired data (or ``[flower] supernode``,
for runs over every site) keeps a Flower SuperNode running for LegoFuse rounds. Restart-safe: the
block folders are its state, and a push of a block the coordinator holds is a no-op. SIGTERM
stops it cleanly. Every log line is a JSON object (time, level, site, event, details) an operator
can read or ship."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

import grpc

from common.client import CallError, RegistryClient, Retry
from common.data.sitefolder import load_site_folder
from common.data.splits import FoldError
from common.flowerenv import flower_env
from common.processes import stop_process
from common.train import Interrupted

from .config import SiteConfig
from .flower import supernode_command
from .train import current_blocks, train_site

# Flower's code for a SuperNode whose key the SuperLink does not know is 305; as a process exit
# status it arrives modulo 256.
UNREGISTERED_NODE = {305, 305 % 256}


class Daemon:
    def __init__(
        self,
        cfg: SiteConfig,
        stop: threading.Event,
        out: TextIO = sys.stderr,
        spawn: Callable[..., subprocess.Popen[bytes]] = subprocess.Popen,
        once: bool = False,
    ) -> None:
        self.cfg, self.stop, self.out, self.spawn, self.once = cfg, stop, out, spawn, once
        self.node: subprocess.Popen[bytes] | None = None
        self.node_delay, self.node_retry_at = 1.0, 0.0

    @property
    def supernode(self) -> bool:
        """Whether this site keeps a SuperNode for LegoFuse rounds: with paired data always,
        without when ``[flower] supernode`` asks for it (runs over every site)."""
        return self.cfg.paired or self.cfg.flower.supernode

    def event(self, name: str, level: str = "info", **fields: Any) -> None:
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "level": level,
            "site": self.cfg.site,
            "event": name,
            **fields,
        }
        self.out.write(json.dumps(line, default=str) + "\n")
        self.out.flush()

    def wait(self, seconds: float) -> bool:
        """Sleep unless stopped; True when a stop was asked for."""
        return self.stop.wait(seconds)

    def task(self) -> Any:
        delay = 1.0
        while not self.stop.is_set():
            try:
                with RegistryClient(
                    self.cfg.coordinator, self.cfg.tls, insecure=self.cfg.insecure
                ) as client:
                    return client.task(self.cfg.task)
            except (
                CallError
            ) as exc:  # the coordinator not up yet, or the operator has not created the task yet
                name = (
                    "task-not-found"
                    if exc.code == grpc.StatusCode.NOT_FOUND
                    else "registry-unreachable"
                )
                self.event(name, "warning", error=str(exc), retry_in_s=delay)
                if self.wait(delay):
                    return None
                delay = min(60.0, delay * 2)
        return None

    def blocks(self, task: Any) -> dict[str, Any]:
        have = current_blocks(self.cfg, task.task_id)
        wanted = [m for m in self.cfg.modalities if m in task.modalities]
        todo = [m for m in wanted if m not in have]
        for m in wanted:
            if m in have:
                self.event("block-current", modality=m, folder=have[m].name)
        if todo:
            self.event("training", modalities=todo)
            data = load_site_folder(self.cfg.data)
            for tb in train_site(self.cfg, task, data, only=todo, stop=self.stop.is_set):
                self.event(
                    "trained",
                    modality=tb.modality,
                    folder=tb.folder.name,
                    val_metric=round(tb.val_metric, 4),
                )
                have[tb.modality] = tb.folder
        return have

    def push(self, blocks: dict[str, Any]) -> None:
        with RegistryClient(
            self.cfg.coordinator, self.cfg.tls, insecure=self.cfg.insecure
        ) as client:
            for modality, folder in sorted(blocks.items()):
                self.event("pushing", modality=modality, folder=folder.name)
                record, present = client.push(folder, Retry(attempts=10))
                self.event(
                    "pushed", modality=modality, block_id=record.block_id, already_present=present
                )

    def keep_node(self) -> None:
        """Start the SuperNode, or restart it (with back-off) if it exited."""
        if self.node is not None and self.node.poll() is None:
            return
        if self.node is not None:
            if time.monotonic() < self.node_retry_at:
                return
            code = self.node.returncode
            hint = (
                "its node key is not registered: "
                "ask the operator (mmlego coordinator flower-register)"
                if code in UNREGISTERED_NODE
                else "restarting"
            )
            self.event(
                "supernode-exited",
                "error" if code in UNREGISTERED_NODE else "warning",
                code=code,
                hint=hint,
            )
        command = supernode_command(self.cfg)
        self.node = self.spawn(command, env=flower_env(self.cfg.state / "flower"))
        self.node_delay = min(300.0, self.node_delay * 2)
        self.node_retry_at = (
            time.monotonic() + self.node_delay
        )  # a node that exits at once is restarted after a back-off
        self.event("supernode-started", superlink=self.cfg.flower.superlink, pid=self.node.pid)

    def evaluate(self) -> None:
        """Answer the evaluation jobs the coordinator holds for this site (scores or declines)."""
        from .evaluate import evaluate_pending

        def told(a: Any) -> None:
            if a.declined:
                self.event("evaluation-declined", job=a.job_id, reason=a.declined)
            else:
                self.event("evaluation-scored", job=a.job_id, candidates=a.scored)

        try:
            with RegistryClient(
                self.cfg.coordinator, self.cfg.tls, insecure=self.cfg.insecure
            ) as client:
                evaluate_pending(self.cfg, client, lambda: load_site_folder(self.cfg.data), told)
        except CallError as exc:
            # the coordinator is away or refused the report: tried again at the next poll
            self.event("evaluation-failed", "warning", error=str(exc))
        except Exception as exc:
            # never the end of the daemon (its SuperNode keeps serving rounds); the log has more
            self.event("evaluation-failed", "error", error=f"{type(exc).__name__}: {exc}")

    def serve(self) -> None:
        """Until stopped: keep the SuperNode of a paired site (or one with ``[flower] supernode``)
        running, and answer evaluation jobs (declining them when evaluation is switched off, so
        that nobody waits for this site)."""
        next_poll = time.monotonic()
        while not self.stop.is_set():
            if self.supernode:
                self.keep_node()
            if time.monotonic() >= next_poll:
                self.evaluate()
                next_poll = time.monotonic() + self.cfg.evaluation.poll_s
            if self.wait(1.0):
                break

    def run(self) -> int:
        self.event(
            "starting", task=self.cfg.task, paired=self.cfg.paired, coordinator=self.cfg.coordinator
        )
        if not self.cfg.task:
            self.event("no-task", "error", hint='set task = "..." in site.toml')
            return 2
        try:
            task = self.task()
            if task is None:
                return 0
            blocks = self.blocks(task)
            if not self.stop.is_set():
                self.push(blocks)
            if self.stop.is_set():
                return 0
            if self.once:
                self.event(
                    "done", hint="--once: blocks are pushed; exiting (no SuperNode, no evaluation)"
                )
            else:
                self.event(
                    "serving", supernode=self.supernode, evaluation=self.cfg.evaluation.enabled
                )
                self.serve()
        except Interrupted:
            self.event(
                "training-interrupted",
                hint=(
                    "no block was written for the unfinished modality; "
                    "it trains again on the next start"
                ),
            )
        except (
            FoldError
        ) as exc:  # a setting the site's data cannot support: the operator's to change
            self.event("failed", "error", error=str(exc))
            return 2
        except (CallError, ValueError, OSError) as exc:
            self.event("failed", "error", error=str(exc))
            return 1
        finally:
            self.shutdown()
        return 0

    def shutdown(self) -> None:
        if self.node is not None and self.node.poll() is None:
            stop_process(self.node, 20)
            self.event("supernode-stopped")
        self.event("stopped")
