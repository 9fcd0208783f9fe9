"""The ray engine of ``mmlego simulate`` (``--engine ray``): the sites' work runs on a Ray cluster
instead of as one daemon process per site, so that hundreds of hospitals fit one machine and a
study can move onto a cluster.

- Each site's block training is one Ray task that runs the site daemon's own steps
  (:class:`site_client.daemon.Daemon` with ``once``: train on the site's data folder, sign with its
  key, push through the registry client over mutual TLS to the coordinator process) and writes the
  daemon's JSON lines to the site's log, as a daemon process would.
- A site's answers to evaluation jobs are Ray tasks running the daemon's evaluation step.
- LegoFuse rounds run the same ServerApp and ClientApp on Flower's simulation engine: the
  coordinator's SuperLink is started with ``[flower] simulation`` on this cluster (``RAY_ADDRESS``),
  and a partition file maps Flower's partition ids to the paired sites.

Without ``--ray-address`` a one-node cluster is started for the run (``ray start --head --block``
in a process group of its own, stopped with the run's other processes); with it, the run attaches
to that cluster and starts no Ray process. Every node must see the run folder at the same path
(one machine, or a shared file system) and run the same mmlego installation."""

from __future__ import annotations

import os
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from common.tomlconfig import ConfigError

from .engine import Progress, Say, Services
from .fleet import Fleet, SimulationError
from .sitetasks import evaluate_site, train_site

# one thread per site, as in the processes engine; two malloc arenas per worker (glibc's default of
# 8 per core keeps freed memory of long-lived workers resident)
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}
OBJECT_STORE_BYTES = (
    256 * 1024**2
)  # the run passes file paths and small results through Ray, never data


# Ray's errors that say a task's worker or node was lost (not that the task raised)
LOST_WORKER = ("WorkerCrashedError", "NodeDiedError", "LocalRayletDiedError", "OwnerDiedError")


def _why(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return next((line for line in reversed(lines) if line.strip()), type(exc).__name__).strip()


def ray_module() -> Any:
    os.environ.setdefault(
        "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0"
    )  # Ray's FutureWarning about GPU variables; no GPU here
    try:
        import ray
    except ImportError:
        raise SimulationError(
            "the ray engine needs Flower's simulation extra (Ray): "
            "pip install 'mmlego[simulation]' (make demo / make test install it)"
        ) from None
    return ray


def reachable(address: str, timeout_s: float = 5.0) -> None:
    """A one-line refusal for an address nobody answers on (Ray's own connect waits a long time)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(
            f"--ray-address {address!r} is not HOST:PORT "
            "(the Ray head's GCS port, e.g. 127.0.0.1:6379)"
        )
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise SimulationError(
            f"the Ray cluster at {address} is not reachable ({exc.strerror or exc}); is `ray start "
            "--head` running there?"
        ) from None


class RayEngine:
    """The run's Ray cluster (started here or attached to) and the sites' tasks on it (an
    :class:`~simulate.engine.Engine`)."""

    name = "ray"

    def __init__(
        self, fleet: Fleet, address: str | None, say: Say, cpus: int | None = None
    ) -> None:
        self.fleet, self.say, self.attached = fleet, say, address
        self.cpus = cpus or os.cpu_count() or 1
        self.ray = ray_module()
        self.address = ""
        self.nodes: dict[str, str] = {}  # Ray node id -> its name (or address)
        self.placement: dict[str, str] = {}  # site -> the Ray node that trained its block(s)
        self.tmp: tempfile.TemporaryDirectory[str] | None = None
        self.logs: dict[str, Path] = {}

    # -- the cluster ------------------------------------------------------------------------------
    @property
    def parallel(self) -> int:
        return self.cpus

    def start(self, deadline_s: float = 120.0) -> str | None:
        if self.attached:
            reachable(self.attached)
            self.address = self.attached
        else:
            from coordinator.launch import free_port

            # Ray's socket paths must stay short: its temp folder goes under /tmp, not the run
            # folder
            self.tmp = tempfile.TemporaryDirectory(prefix="mmlego-ray-")
            self.address = f"127.0.0.1:{free_port()}"
            ray_bin = Path(sys.executable).parent / "ray"
            # Ray's fixed default ports (client server 10001, dashboard 8265, ...) are moved to
            # free ones: another Ray on this machine, or another run, may hold them
            ports = [
                f"--{name}={free_port()}"
                for name in (
                    "ray-client-server-port",
                    "dashboard-port",
                    "dashboard-agent-listen-port",
                    "dashboard-agent-grpc-port",
                    "runtime-env-agent-port",
                    "metrics-export-port",
                    "node-manager-port",
                    "object-manager-port",
                )
            ]
            self.fleet.start(
                "ray head",
                [
                    str(ray_bin),
                    "start",
                    "--head",
                    "--block",
                    "--port",
                    self.address.rpartition(":")[2],
                    "--node-ip-address",
                    "127.0.0.1",
                    "--num-cpus",
                    str(self.cpus),
                    "--object-store-memory",
                    str(OBJECT_STORE_BYTES),
                    "--node-name",
                    "head",
                    "--include-dashboard=false",
                    "--disable-usage-stats",
                    "--temp-dir",
                    self.tmp.name,
                    *ports,
                ],
                env={**os.environ, **THREADS, "RAY_USAGE_STATS_ENABLED": "0"},
            )  # workers inherit THREADS
        deadline = time.monotonic() + deadline_s
        if not self.attached:
            self._wait_for_gcs(deadline)
        while True:
            self.fleet.check()
            ours = signal.getsignal(signal.SIGTERM)
            try:
                self.ray.init(
                    address=self.address,
                    logging_level="ERROR",
                    log_to_driver=False,
                    runtime_env={"env_vars": dict(THREADS)},
                )
                break
            except (ConnectionError, RuntimeError, ValueError) as exc:  # a head still starting
                if self.attached or time.monotonic() > deadline:
                    raise SimulationError(
                        f"could not connect to the Ray cluster at {self.address}: {exc}"
                    ) from None
                time.sleep(1.0)
            finally:  # ray.init makes SIGTERM exit at once; the run stops its processes first
                if threading.current_thread() is threading.main_thread():
                    signal.signal(signal.SIGTERM, ours)
        alive = [n for n in self.ray.nodes() if n.get("Alive")]
        self.nodes = {
            n["NodeID"]: n.get("NodeName") or n.get("NodeManagerAddress", "?") for n in alive
        }
        cpus = int(sum(n.get("Resources", {}).get("CPU", 0) for n in alive))
        if cpus < 1:
            raise SimulationError(
                f"the Ray cluster at {self.address} has no CPU for the sites' tasks"
            )
        self.cpus = cpus
        how = "attached to" if self.attached else "started"
        self.say(
            f"Ray: {how} the cluster at {self.address}: "
            f"{len(alive)} node(s) ({', '.join(sorted(self.nodes.values()))}), "
            f"{cpus} CPUs; a site's block training is one task of one CPU"
        )
        return "attach to the Ray cluster" if self.attached else "start the Ray cluster"

    def _wait_for_gcs(self, deadline: float) -> None:
        """Until the local head's GCS port answers (or the head exits, or the deadline passes):
        ``ray.init`` on a port nobody listens on yet retries on its own for minutes, without
        noticing that the head died."""
        host, _, port = self.address.rpartition(":")
        while True:
            self.fleet.check()
            try:
                with socket.create_connection((host, int(port)), timeout=1.0):
                    return
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise SimulationError(
                        f"the Ray head started here did not open its port {self.address} "
                        f"in time ({exc.strerror or exc})"
                    ) from None
                time.sleep(0.25)

    def disconnect(self) -> None:
        """Before the fleet stops the local head (a fleet member): this driver leaves the
        cluster."""
        if self.ray.is_initialized():
            self.ray.shutdown()

    def cleanup(self) -> None:
        """After the head stopped: its temp folder (sessions, logs, sockets) goes."""
        if self.tmp is not None:
            self.tmp.cleanup()

    def superlink_env(self) -> dict[str, str]:
        """The environment of the SuperLink, whose simulation runs attach to this cluster."""
        return {
            **os.environ,
            "RAY_ADDRESS": self.address,
            **THREADS,
            "RAY_USAGE_STATS_ENABLED": "0",
        }

    # -- the sites' tasks -----------------------------------------------------------------------
    def _failed(self, site: str, exc: BaseException) -> SimulationError:
        return SimulationError(f"site {site}: its Ray task failed: {_why(exc)}")

    def lost(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the task's worker (or its node) was lost, not that the site's
        step failed: such a step is run again (training and scoring are idempotent: the same
        block is pushed again, a job already answered is not asked again)."""
        errors = self.ray.exceptions
        kinds = tuple(
            getattr(errors, name)
            for name in LOST_WORKER
            if isinstance(getattr(errors, name, None), type)
        )
        return isinstance(exc, kinds)

    def retry(self, site: str, step: str, exc: BaseException, retried: set[str]) -> bool:
        """True (and a log line) when ``site``'s ``step`` lost its worker for the first time: the
        caller submits it again; False when it is not a lost worker or it was retried already."""
        if site in retried or not self.lost(exc):
            return False
        retried.add(site)
        self.say(
            f"site {site}: the Ray worker running its {step} was lost ({_why(exc)}); "
            "running it again once on another worker"
        )
        return True

    def evaluators(self, svc: Services) -> RayEvaluators:
        return RayEvaluators(self, svc.site_dirs)

    def train_and_push(self, svc: Services, progress: Progress, timeout_s: float) -> None:
        """One task per site, as many at once as the cluster has CPUs; returns when all pushed."""
        self.logs = logs = progress.logs
        sites = {name: folder / "site.toml" for name, folder in svc.site_dirs.items()}
        remote = self.ray.remote(train_site).options(num_cpus=1, max_retries=0, name="train_site")
        running = {remote.remote(str(toml), str(logs[site])): site for site, toml in sites.items()}
        retried: set[str] = set()
        self.say(
            f"{len(sites)} sites' block training submitted as Ray tasks ({self.cpus} at a time)"
        )
        deadline = time.monotonic() + timeout_s
        while running:
            done, _ = self.ray.wait(list(running), num_returns=len(running), timeout=0.5)
            progress.poll()
            for ref in done:
                site = running.pop(ref)
                try:
                    result = self.ray.get(ref, timeout=60)
                except Exception as exc:  # the task raised, or its worker died
                    if self.retry(site, "training", exc, retried):
                        running[remote.remote(str(sites[site]), str(logs[site]))] = site
                        continue
                    raise self._failed(site, exc) from None
                self.placement[site] = self.nodes.get(result["node"], result["node"])
                progress.poll()
                why = progress.failure(site)
                if result["code"] != 0 or why is not None:
                    raise SimulationError(
                        f"site {site} failed: {why or 'exit status ' + str(result['code'])}"
                    )
            self.fleet.check()
            if time.monotonic() > deadline:
                raise SimulationError(
                    f"sites {sorted(running.values())} did not push their blocks "
                    f"within {timeout_s:.0f} s"
                )


class RayEvaluators:
    """Evaluation jobs answered by Ray tasks (every site: no site keeps a daemon on this engine)."""

    def __init__(self, engine: RayEngine, site_dirs: dict[str, Path]) -> None:
        self.engine, self.site_dirs = engine, site_dirs
        self.sites = sorted(site_dirs)
        self.running: dict[str, Any] = {}  # site -> its evaluation task
        self.retried: set[str] = set()  # sites whose evaluation task lost its worker once
        self.remote = engine.ray.remote(evaluate_site).options(
            num_cpus=0, max_retries=0, scheduling_strategy="SPREAD", name="evaluate_site"
        )

    def busy(self) -> set[str]:
        ray = self.engine.ray
        if self.running:
            done, _ = ray.wait(
                list(self.running.values()), num_returns=len(self.running), timeout=0
            )
            for site in [s for s, ref in self.running.items() if ref in done]:
                try:
                    ray.get(self.running.pop(site), timeout=60)
                except Exception as exc:
                    if self.engine.retry(site, "evaluation", exc, self.retried):
                        self.start(site)
                        continue
                    raise self.engine._failed(site, exc) from None
        return set(self.running)

    def start(self, site: str) -> None:
        self.running[site] = self.remote.remote(
            str(self.site_dirs[site] / "site.toml"), str(self.engine.logs[site])
        )

    def check(self) -> None:
        self.engine.fleet.check()

    def wait(self, timeout_s: float) -> None:
        if self.running:
            self.engine.ray.wait(list(self.running.values()), num_returns=1, timeout=timeout_s)
        else:
            time.sleep(timeout_s)
