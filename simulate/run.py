"""``mmlego simulate``: a whole consortium on this machine, as separate processes on loopback.

A consortium CA and enrolment kits are made; the coordinator (gRPC, mutual TLS, SQLite in the run
folder) and, when a site trains in LegoFuse rounds (a paired site, or any with ``fuse_sites`` =
"all"), a Flower SuperLink are started; every site gets its data folder and runs the site daemon
(`mmlego site run`): it trains its block(s) and pushes them, and a site that trains in LegoFuse
rounds keeps a SuperNode running. The simulator then acts as the operator: it waits
for the blocks, merges, runs the LegoFuse rounds, pulls the model versions (hashes and signatures
checked) and stops every process."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from common.client import RegistryClient, TLSFiles
from common.data.builtin.ranges import public_ranges
from common.data.export import export_site_folder
from common.evaluation.candidates import JobStatus
from common.fuse import FuseConfig
from common.pki import CertificateAuthority, enroll_admin, enroll_site, server_credentials
from common.records import BlockRecord, ModelRecord, Recommendation, TaskRecord
from common.sitetoml import EvaluationSection, FlowerSection, SiteFile, render
from common.tasks import TaskSpec, survival_bins
from common.tomlconfig import ConfigError
from common.train.siteblock import BlockTraining, SitePrivacy
from coordinator.config import (
    CoordinatorFile,
    ServerSection,
    ServerTLSSection,
    load_config,
    render_config,
)
from coordinator.config import EvaluationSection as CoordinatorEvaluation
from coordinator.config import FlowerSection as CoordinatorFlower
from coordinator.launch import free_port

from .engine import ENGINES, Engine, Evaluators, Progress, Say, Services
from .fleet import LARGEST_WORKER, MMLEGO, Fleet, SimulationError, tail
from .scenario import Partition, Scenario

# (kind, address) -> the address sites are told to use instead: kind is "registry" (the
# coordinator's gRPC service) or "superlink" (Flower). For tests that sit between the sites and the
# coordinator (a recording relay); the run's own operator calls go to the coordinator directly.
Relay = Callable[[str, str], str]


@dataclass
class RunResult:
    out: Path
    task: TaskRecord
    merged: ModelRecord
    fused: ModelRecord | None
    model_dirs: dict[str, Path]  # model id -> pulled folder
    blocks: list[BlockRecord]
    site_dirs: dict[str, Path]  # site -> its folder (site.toml, data/, blocks/)
    phases: dict[str, float] = field(default_factory=dict)  # phase -> seconds
    peaks: dict[str, int] = field(default_factory=dict)  # process -> peak RSS bytes
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # site -> daemon events
    recommended: Recommendation | None = None
    fuse_note: str = ""  # why no fused version was stored, when none was
    fuse_detail: dict[str, Any] = field(
        default_factory=dict
    )  # the fuse run's record: rounds run (history), curve
    engine: str = "processes"
    placement: dict[str, str] = field(
        default_factory=dict
    )  # ray engine: site -> the Ray node that trained its block(s)
    # site -> the version recommended for its patients (the consortium's unless its own evidence)
    site_recommended: dict[str, Recommendation] = field(default_factory=dict)


def task_record(scn: Scenario, part: Partition) -> TaskRecord:
    """The task the operator creates. Survival bins come from the sites' patients' follow-up (in
    a real consortium the operator fixes them; here they are computed from the sites' data, never
    their test patients), rounded to two decimals as an operator would write them: a quantile can
    be one patient's exact event time, and the task travels in every block's manifest."""
    spec = scn.spec
    datasets = list(part.sites.values())
    kind = datasets[0].task
    if kind == "survival":
        time_ = np.concatenate([np.asarray(d.time) for d in datasets])
        event = np.concatenate([np.asarray(d.event) for d in datasets])
        edges = sorted({round(e, 2) for e in survival_bins(time_, event, spec.n_bins)})
        if len(edges) != spec.n_bins - 1:
            raise ConfigError(
                f"scenario {spec.name}: the training patients' event times do not give "
                f"{spec.n_bins} distinct time bins at two decimals"
            )
        ts = TaskSpec("survival", n_bins=spec.n_bins, bin_edges=tuple(edges))
    else:
        ts = TaskSpec("classification", n_classes=max(d.n_classes for d in datasets))
    modalities = tuple(sorted({m for s in spec.sites for m in s.modalities}))
    task_id = "".join(c if c.isalnum() else "-" for c in spec.name.lower())
    ranges = {}
    if spec.block_epsilon is not None:  # DP blocks take their input scaling from public ranges
        source = (
            spec.dataset
            or spec.export
            or (
                "synthetic"
                if spec.synthetic is not None
                else "slides"
                if spec.slides is not None
                else ""
            )
        )
        ranges = public_ranges(source, modalities)
    return TaskRecord(
        task_id,
        ts,
        spec.latent_rows,
        spec.latent_dim,
        "2d",
        spec.seed,
        modalities,
        f"mmlego simulate: {spec.description or spec.name}",
        fuse_mode=spec.fuse_mode,
        max_block_epsilon=spec.block_epsilon or 0.0,
        public_ranges=ranges,
    )


def block_training(scn: Scenario) -> BlockTraining:
    """Every site's [train] settings (the centralized reference trains with the same ones)."""
    return BlockTraining(
        epochs=scn.spec.block_epochs,
        patience=scn.spec.patience,
        seed=scn.spec.seed,
        device="cpu",
        batch_size=scn.spec.batch_size,
        val_fraction=scn.spec.val_fraction,
    )


def fuse_config(scn: Scenario) -> FuseConfig:
    """The operator's LegoFuse settings: the scenario's rounds and epochs, a fold run per fold of
    the sites, who trains (``fuse_sites``, at most ``fuse_sites_per_round`` a round) and FedProx's
    ``proximal_mu``."""
    return FuseConfig(
        mode=scn.spec.fuse_mode,
        rounds=max(1, scn.spec.rounds),
        epochs=scn.spec.epochs,
        seed=scn.spec.seed,
        patience=scn.spec.patience_rounds,
        batch_size=scn.spec.batch_size,
        folds=scn.spec.folds,
        proximal_mu=scn.spec.proximal_mu,
        sites=scn.spec.fuse_sites,
        sites_per_round=scn.spec.fuse_sites_per_round,
    )


def site_toml(
    name: str,
    modalities: list[str],
    paired: bool,
    coordinator: str,
    task: str,
    superlink: str,
    port: int,
    scn: Scenario,
    evaluation: bool = True,
    supernode: bool = False,
) -> str:
    """A simulated site's site.toml (the one writer, common.sitetoml): its kit's files, the
    scenario's [train] settings and minimum cell size, a short evaluation poll, and
    ``supernode`` for a site without paired data that trains in LegoFuse rounds."""
    f = SiteFile(
        site=name,
        modalities=modalities,
        paired=paired,
        coordinator=coordinator,
        task=task,
        flower=(
            FlowerSection(superlink=superlink, port=port, supernode=True)
            if supernode
            else FlowerSection(superlink=superlink, port=port)
        ),
        train=block_training(scn),
        privacy=SitePrivacy(
            min_cell_size=scn.spec.min_cell_size, block_epsilon=scn.spec.block_epsilon
        ),
        evaluation=EvaluationSection(enabled=evaluation, poll_s=2.0, folds=scn.spec.folds),
    )
    return render(f, f"simulated site {name} (mmlego simulate, scenario {scn.name})")


def coordinator_toml(
    address: str, superlink: str, fusing: int, scn: Scenario, simulation: bool
) -> str:
    """The simulated coordinator's coordinator.toml (the one writer, coordinator.config): the
    schema's defaults but for its addresses, the CA's revocation list beside it, the scenario's
    evaluation deadline, and discovery that waits for the ``fusing`` sites (those that train in
    LegoFuse rounds)."""
    f = CoordinatorFile(
        server=ServerSection(listen=address),
        tls=ServerTLSSection(crl="../ca/crl.pem"),
        evaluation=CoordinatorEvaluation(
            deadline_s=scn.spec.eval_deadline_s, sites_per_job=scn.spec.eval_sites_per_job
        ),
        flower=CoordinatorFlower(
            superlink=superlink,
            discovery_timeout_s=300.0,
            expect_sites=fusing,
            simulation=simulation,
        ),
    )
    return render_config(f)


def site_env() -> dict[str, str]:
    """One thread per site process: N sites share the machine's cores, and a block trained here
    is bit-identical to the same training in one process (the centralized reference)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def setup(
    scn: Scenario, part: Partition, out: Path, relay: Relay | None, simulation: bool = False
) -> Services:
    """CA, coordinator credentials and configuration, the task, every site's kit and data folder."""
    ca = CertificateAuthority.init(out / "ca")
    address = f"127.0.0.1:{free_port()}"
    coord_dir = out / "coordinator"
    server_credentials(ca, "coordinator", ["127.0.0.1"], coord_dir)
    admin_dir = enroll_admin(ca, "operator", out / "operator", address)
    fusing = scn.fuse_sites()
    superlink = f"127.0.0.1:{free_port()}"
    config_path = coord_dir / "coordinator.toml"
    config_path.write_text(coordinator_toml(address, superlink, len(fusing), scn, simulation))
    task = task_record(scn, part)
    fuse = bool(fusing) and scn.spec.rounds > 0
    site_address = relay("registry", address) if relay else address
    site_superlink = relay("superlink", superlink) if relay and fuse else superlink
    site_dirs: dict[str, Path] = {}
    for s in scn.spec.sites:
        folder = enroll_site(
            ca,
            s.name,
            s.modalities,
            out / "sites" / s.name,
            paired=s.paired,
            coordinator=site_address,
        )
        export_site_folder(part.sites[s.name], folder / "data")
        (folder / "site.toml").write_text(
            site_toml(
                s.name,
                s.modalities,
                s.paired,
                site_address,
                task.task_id,
                site_superlink,
                free_port(),
                scn,
                s.evaluation,
                supernode=fuse and not s.paired and s.name in {f.name for f in fusing},
            )
        )
        site_dirs[s.name] = folder
    return Services(
        address,
        TLSFiles(admin_dir / "tls.crt", admin_dir / "tls.key", admin_dir / "ca.crt"),
        config_path,
        task,
        site_dirs,
        fuse,
        simulation,
        frozenset(s.name for s in scn.spec.sites if not s.evaluation),
    )


def start_services(
    scn: Scenario, svc: Services, fleet: Fleet, say: Say, env: dict[str, str] | None = None
) -> None:
    """The coordinator (and the task), and with sites that train in LegoFuse rounds the SuperLink
    and their node keys (on the simulation engine: the partition file naming them; ``env`` names
    the Ray cluster)."""
    fleet.start("coordinator", [*MMLEGO, "coordinator", "serve", "--config", str(svc.config_path)])
    fleet.wait_for_text("coordinator", "listening on", 120)
    with RegistryClient(svc.address, svc.admin_tls) as admin:
        admin.create_task(svc.task)
    say(
        f"coordinator listening on {svc.address} (mutual TLS, SQLite store); task "
        f"{svc.task.task_id} created"
    )
    if not svc.fuse:
        return
    from coordinator.flower import register_node, register_partitions

    fusing = scn.fuse_sites()
    fleet.start(
        "superlink",
        [*MMLEGO, "coordinator", "superlink", "--config", str(svc.config_path)],
        env=env,
    )
    cfg = load_config(svc.config_path)
    if svc.simulation:
        register_partitions(cfg, {s.name: svc.site_dirs[s.name] / "site.toml" for s in fusing})
        host, _, port = cfg.flower.superlink.rpartition(":")
        deadline = time.monotonic() + 120
        while True:  # listening: `flwr run` can start a run
            fleet.check()
            try:
                socket.create_connection((host, int(port)), timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SimulationError(
                        f"the SuperLink did not listen on {cfg.flower.superlink} within 120 s"
                    ) from None
                time.sleep(0.5)
        say(
            f"Flower SuperLink on {cfg.flower.superlink} (TLS, simulation engine on the Ray "
            f"cluster): the ClientApps of {', '.join(s.name for s in fusing)} run as Ray actors"
        )
        return
    deadline = time.monotonic() + 120
    for s in fusing:
        while True:
            fleet.check()
            try:
                register_node(cfg, s.name, svc.site_dirs[s.name] / "flower-node.pub")
                break
            except Exception as exc:  # the SuperLink takes a few seconds to listen
                if time.monotonic() > deadline:
                    raise SimulationError(
                        f"could not register {s.name}'s Flower node key: {exc}"
                    ) from None
                time.sleep(1.0)
    say(
        f"Flower SuperLink on {cfg.flower.superlink} (TLS, node authentication); node keys of "
        f"{', '.join(s.name for s in fusing)} registered"
    )


def stays(scn: Scenario, parallel: int) -> bool:
    """Whether every site's daemon stays up for the whole run (each is a process of ~0.5 GB)."""
    return len(scn.spec.sites) <= parallel


def train_and_push(
    scn: Scenario,
    svc: Services,
    fleet: Fleet,
    progress: Progress,
    say: Say,
    parallel: int,
    push_timeout_s: float,
) -> None:
    """Every site's daemon, at most ``parallel`` training at once; returns when every block is
    pushed. The daemon of a site that trains in LegoFuse rounds stays (SuperNode, evaluation); so
    do the others when every site fits in ``parallel`` (they answer evaluation jobs by
    themselves); in a larger run they exit after pushing (``--once``) and are started again as
    ``site evaluate`` when a job waits for them."""
    logs = progress.logs
    fusing = {s.name for s in scn.fuse_sites()} if svc.fuse else set()
    waiting = sorted(
        scn.spec.sites, key=lambda s: s.name not in fusing
    )  # the sites of the rounds first: their SuperNodes start early
    say(
        f"{len(waiting)} site daemons to run, at most {parallel} training at a time; each trains "
        "its block(s) on its own data and pushes them"
    )
    deadline = time.monotonic() + push_timeout_s
    while True:
        progress.poll()
        for s in scn.spec.sites:
            why = progress.failure(s.name)
            if why is not None:
                raise SimulationError(
                    f"site {s.name} failed: {why}; its log ends:\n{tail(logs[s.name])}"
                )
        done = {s.name for s in scn.spec.sites if progress.pushed(s.name) >= set(s.modalities)}
        busy = sum(1 for name in logs if f"site {name}" in fleet.members and name not in done)
        while waiting and busy < parallel:
            s = waiting.pop(0)
            once = s.name not in fusing and not stays(scn, parallel)
            command = [
                *MMLEGO,
                "site",
                "run",
                "--config",
                str(svc.site_dirs[s.name] / "site.toml"),
            ] + (["--once"] if once else [])
            fleet.start(f"site {s.name}", command, env=site_env(), may_exit=once)
            busy += 1
        if len(done) == len(scn.spec.sites):
            return
        fleet.check()
        for name in logs:
            member = fleet.members.get(f"site {name}")
            if member is not None and member.proc.poll() is not None and name not in done:
                progress.poll()  # its last lines may say it pushed
                if progress.pushed(name) < set(
                    next(s.modalities for s in scn.spec.sites if s.name == name)
                ):
                    raise SimulationError(
                        f"site {name} exited without pushing all its blocks; its log ends:\n"
                        f"{tail(member.log)}"
                    )
        if time.monotonic() > deadline:
            raise SimulationError(
                f"sites {sorted(set(logs) - done)} did not push their blocks within "
                f"{push_timeout_s:.0f} s"
            )
        time.sleep(0.3)


T = TypeVar("T")


class ProcessEvaluators:
    """``mmlego site evaluate`` processes, as a hospital's scheduled job would run them, for the
    sites whose daemon exited after pushing (a daemon that stays keeps answering)."""

    def __init__(self, scn: Scenario, svc: Services, fleet: Fleet, parallel: int) -> None:
        self.svc, self.fleet, self.n = svc, fleet, 0
        fusing = {s.name for s in scn.fuse_sites()} if svc.fuse else set()
        self.sites = (
            [] if stays(scn, parallel) else [s.name for s in scn.spec.sites if s.name not in fusing]
        )

    def busy(self) -> set[str]:
        return {
            m.name.split()[1]
            for m in self.fleet.members.values()
            if m.name.startswith("evaluate ") and m.proc.poll() is None
        }

    def start(self, site: str) -> None:
        self.n += 1
        self.fleet.start(
            f"evaluate {site} {self.n}",
            [
                *MMLEGO,
                "site",
                "evaluate",
                "--wait",
                "30",
                "--config",
                str(self.svc.site_dirs[site] / "site.toml"),
            ],
            env=site_env(),
            may_exit=True,
        )

    def check(self) -> None:
        self.fleet.check()

    def wait(self, timeout_s: float) -> None:
        end = time.monotonic() + timeout_s
        running = self.busy()
        while time.monotonic() < end and self.busy() >= running:
            time.sleep(0.05)


def to_start(
    svc: Services,
    sites: list[str],
    jobs: list[JobStatus],
    busy: set[str],
    tries: dict[tuple[str, str], int],
    parallel: int,
) -> list[str]:
    """The sites to start an evaluator for now: those an open job waits for, not running one, at
    most twice per site and job, up to ``parallel`` running in all; the sites that score first (a
    hospital that only declines costs little, one that scores may take seconds, and a job waits
    for both until its deadline), and one whose evaluation is switched off only until it has
    declined a job (``svc.told``): the coordinator waits for it no more after that."""
    out: list[str] = []
    running = set(busy)
    for st in jobs:
        answered = set(st.reported) | set(st.declined)
        svc.told.update(svc.switched_off & set(st.declined))
        for site in sorted(sites, key=lambda s: s in svc.switched_off):
            key = (site, st.job.job_id)
            if (
                site in answered
                or site in running
                or site in svc.told
                or tries.get(key, 0) >= 2
                or len(running) >= parallel
            ):
                continue
            tries[key] = tries.get(key, 0) + 1
            out.append(site)
            running.add(site)
    return out


def with_evaluators(
    svc: Services, evaluators: Evaluators, parallel: int, action: Callable[[], T]
) -> T:
    """Run an operator's ``action`` (a merge, a fuse run) in a thread; meanwhile start an evaluator
    for every site of ``evaluators`` that an open evaluation job waits for (at most ``parallel`` at
    once, twice per site and job at most; a site whose evaluation is switched off until it has
    declined one job, as the coordinator waits for it no more after that)."""
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["value"] = action()
        except BaseException as exc:  # handed to the caller
            outcome["error"] = exc

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    tries: dict[tuple[str, str], int] = {}
    with RegistryClient(svc.address, svc.admin_tls) as admin:
        while worker.is_alive():
            evaluators.check()
            busy = evaluators.busy()
            jobs = admin.evaluations(svc.task.task_id, open_only=True) if evaluators.sites else []
            for site in to_start(svc, evaluators.sites, jobs, busy, tries, parallel):
                evaluators.start(site)
            evaluators.wait(0.5)
            worker.join(0)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]


@dataclass
class Operated:
    """What the operator made: the merge version, the fused one (if kept), and the
    recommendation."""

    merged: ModelRecord
    fused: ModelRecord | None
    fuse_note: str  # why no fused version was stored, when none was
    recommended: Recommendation
    blocks: list[BlockRecord]
    model_dirs: dict[str, Path]
    fuse_detail: dict[str, Any] = field(
        default_factory=dict
    )  # the fuse run's record: rounds run, curve
    site_recommended: dict[str, Recommendation] = field(default_factory=dict)


def operate(
    scn: Scenario,
    svc: Services,
    evaluators: Evaluators,
    out: Path,
    say: Say,
    parallel: int,
    phases: dict[str, float],
) -> Operated:
    """Merge (policy auto: the sites' validation chooses the recipe), LegoFuse rounds from it (kept
    only if a round beats it on consortium validation), the recommendation, and pulling every
    version."""
    t = time.monotonic()
    with RegistryClient(svc.address, svc.admin_tls) as admin:
        merged = with_evaluators(
            svc,
            evaluators,
            parallel,
            lambda: admin.merge(
                svc.task.task_id,
                policy="auto",
                deadline_s=scn.spec.eval_deadline_s,
                hierarchy=scn.spec.hierarchy,
            ),
        )
        blocks = admin.blocks(svc.task.task_id)
    validation = merged.card.get("validation", {})
    say(
        f"LegoMerge: model version {merged.model_id} from {len(merged.block_ids)} blocks (no "
        f"training): {merged.recipe.kind} '{validation.get('chosen', '?')}'; "
        f"{validation.get('reason', 'not measured')}"
    )
    phases["merge (sites score the candidates)"] = time.monotonic() - t
    fused, note = None, "the scenario runs no LegoFuse rounds" if not svc.fuse else ""
    fuse_detail: dict[str, Any] = {}
    if svc.fuse:
        from coordinator.flower import fuse as run_fuse
        from coordinator.fuse_rounds import FuseError

        t = time.monotonic()
        cfg = load_config(svc.config_path)
        fuse_cfg = fuse_config(scn)
        fusing = [s.name for s in scn.fuse_sites()]
        say(
            f"LegoFuse: at most {fuse_cfg.rounds} rounds x {fuse_cfg.epochs} epochs on "
            f"{', '.join(fusing)} (Flower, sites = {fuse_cfg.sites}); every site scores each "
            "round's model against the merge"
        )
        try:
            result = with_evaluators(
                svc,
                evaluators,
                parallel,
                lambda: run_fuse(
                    cfg,
                    svc.config_path,
                    merged.model_id,
                    fuse_cfg,
                    len(fusing),
                    progress=lambda line: say("    " + line),
                    deadline_s=scn.spec.eval_deadline_s,
                ),
            )
            fuse_detail = result.detail
            if result.model_id is None:
                note = result.reason
                say(f"LegoFuse: no fused version stored: {note}")
            else:
                with RegistryClient(svc.address, svc.admin_tls) as admin:
                    fused = admin.model(result.model_id)
                say(
                    f"LegoFuse: model version {fused.model_id} (round "
                    f"{fused.card.get('fuse', {}).get('kept_round')} kept)"
                )
        except FuseError as exc:
            if "no site reported validation scores" not in str(exc):
                raise
            note = str(exc).split(";")[0]
            say(f"LegoFuse: no fused version stored: {note}")
        phases["fuse rounds (sites score every round)"] = time.monotonic() - t
    model_dirs: dict[str, Path] = {}
    with RegistryClient(svc.address, svc.admin_tls) as admin:
        recommended = admin.recommended(svc.task.task_id)
        for_sites = {s.name: admin.recommended(svc.task.task_id, s.name) for s in scn.spec.sites}
        for m in {
            merged.model_id,
            recommended.model.model_id,
            *([fused.model_id] if fused else []),
            *(r.model.model_id for r in for_sites.values()),
        }:
            model_dirs[m] = out / "models" / m
            admin.pull_model(m, model_dirs[m])
    say(f"recommended version: {recommended.model.model_id} ({recommended.reason})")
    for site, r in for_sites.items():
        if r.model.model_id != recommended.model.model_id:
            say(f"  for {site}: {r.model.model_id} ({r.reason})")
    return Operated(merged, fused, note, recommended, blocks, model_dirs, fuse_detail, for_sites)


class ProcessesEngine:
    """Every site its own daemon process (and SuperNode, ClientApp processes): at most
    ``parallel`` training at once."""

    name = "processes"

    def __init__(self, scn: Scenario, fleet: Fleet, say: Say, parallel: int) -> None:
        self.scn, self.fleet, self.say, self.parallel = scn, fleet, say, parallel
        self.placement: dict[str, str] = {}

    def start(self) -> str | None:
        return None

    def superlink_env(self) -> dict[str, str] | None:
        return None

    def train_and_push(self, svc: Services, progress: Progress, timeout_s: float) -> None:
        train_and_push(self.scn, svc, self.fleet, progress, self.say, self.parallel, timeout_s)

    def evaluators(self, svc: Services) -> Evaluators:
        return ProcessEvaluators(self.scn, svc, self.fleet, self.parallel)

    def disconnect(self) -> None:
        pass

    def cleanup(self) -> None:
        pass


def make_engine(
    name: str, scn: Scenario, fleet: Fleet, say: Say, parallel: int, ray_address: str | None
) -> Engine:
    if name == "ray":
        from .rayengine import RayEngine

        return RayEngine(fleet, ray_address, say)
    if name == "processes":
        return ProcessesEngine(scn, fleet, say, parallel)
    raise ConfigError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")


def simulate(
    scn: Scenario,
    part: Partition,
    out: Path,
    say: Say,
    parallel: int = 8,
    push_timeout_s: float = 3600.0,
    relay: Relay | None = None,
    engine: str = "processes",
    ray_address: str | None = None,
) -> RunResult:
    """Run the consortium of ``scn`` on ``part`` in ``out``; every process the run started is
    stopped on return or error. ``engine`` "processes": every site is its own daemon process (at
    most ``parallel`` training at once); "ray": the sites' work runs as Ray tasks and LegoFuse on
    Flower's simulation engine (:mod:`.rayengine`), on a local Ray instance or the cluster at
    ``ray_address``."""
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise SimulationError(f"{out} is not empty; give a new --out folder")
    phases: dict[str, float] = {}
    t0 = time.monotonic()
    svc = setup(scn, part, out, relay, simulation=engine == "ray")
    phases["setup (CA, kits, site data)"] = time.monotonic() - t0
    say(
        f"run folder {out}: CA, coordinator credentials, {len(svc.site_dirs)} site kits and data "
        "folders written"
    )
    fleet = Fleet(out / "logs")
    progress = Progress(
        {s.name: fleet.logs / f"site-{s.name}.log" for s in scn.spec.sites}, say, t0
    )
    sites = make_engine(engine, scn, fleet, say, parallel, ray_address)
    try:
        t = time.monotonic()
        started = sites.start()
        if started:
            phases[started] = time.monotonic() - t
        t = time.monotonic()
        start_services(scn, svc, fleet, say, env=sites.superlink_env())
        phases["start coordinator and SuperLink"] = time.monotonic() - t
        t = time.monotonic()
        sites.train_and_push(svc, progress, push_timeout_s)
        phases["sites train and push blocks"] = time.monotonic() - t
        done = operate(scn, svc, sites.evaluators(svc), out, say, sites.parallel, phases)
        progress.poll()
        fleet.sample()
        peaks = {
            m.name: m.peak for m in fleet.members.values() if not m.name.startswith("evaluate ")
        }
        evaluate = [m.peak for m in fleet.members.values() if m.name.startswith("evaluate ")]
        if evaluate:
            peaks["site evaluate (max)"] = max(evaluate)
        peaks["total (all the run's processes at once)"] = fleet.total_peak
        peaks["total, shared pages counted once (PSS)"] = fleet.total_pss_peak
        if fleet.worker_peak:
            peaks[LARGEST_WORKER] = fleet.worker_peak
    finally:
        sites.disconnect()
        fleet.stop_all()
        sites.cleanup()
    say("every process stopped")
    return RunResult(
        out,
        svc.task,
        done.merged,
        done.fused,
        done.model_dirs,
        done.blocks,
        svc.site_dirs,
        phases,
        peaks,
        progress.events,
        done.recommended,
        done.fuse_note,
        done.fuse_detail,
        engine=engine,
        placement=dict(sites.placement),
        site_recommended=done.site_recommended,
    )
