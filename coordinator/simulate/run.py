"""``mmlego simulate``: a whole consortium on this machine, as separate processes on loopback.

A consortium CA and enrolment kits are made; the coordinator (gRPC, mutual TLS, SQLite in the run
folder) and, when a site holds paired data, a Flower SuperLink are started; every site gets its
data folder and runs the site daemon (`mmlego site run`): it trains its block(s) and pushes them,
and a paired site keeps a SuperNode running. The simulator then acts as the operator: it waits
for the blocks, merges, runs the LegoFuse rounds, pulls the model versions (hashes and signatures
checked) and stops every process."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.client import RegistryClient, TLSFiles
from common.data.export import export_site_folder
from common.fuse import FuseConfig
from common.pki import CertificateAuthority, enroll_admin, enroll_site, server_credentials
from common.records import BlockRecord, ModelRecord, TaskRecord
from common.tasks import TaskSpec, survival_bins
from common.train.siteblock import BlockTraining

from ..config import load_config, render_config
from ..launch import free_port
from .fleet import MMLEGO, Fleet, SimulationError, tail
from .scenario import Partition, Scenario

Say = Callable[[str], None]
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


def task_record(scn: Scenario, part: Partition) -> TaskRecord:
    """The task the operator creates. Survival bins come from the training patients' follow-up
    (in a real consortium the operator fixes them; here they are computed from the sites' data)."""
    spec = scn.spec
    datasets = list(part.sites.values())
    kind = datasets[0].task
    if kind == "survival":
        time_ = np.concatenate([np.asarray(d.time) for d in datasets])
        event = np.concatenate([np.asarray(d.event) for d in datasets])
        ts = TaskSpec("survival", n_bins=spec.n_bins, bin_edges=survival_bins(time_, event, spec.n_bins))
    else:
        ts = TaskSpec("classification", n_classes=max(d.n_classes for d in datasets))
    modalities = tuple(sorted({m for s in spec.sites for m in s.modalities}))
    task_id = "".join(c if c.isalnum() else "-" for c in spec.name.lower())
    return TaskRecord(task_id, ts, spec.latent_rows, spec.latent_dim, "2d", spec.seed, modalities,
                      f"mmlego simulate: {spec.description or spec.name}", fuse_mode=spec.fuse_mode)


def block_training(scn: Scenario) -> BlockTraining:
    """Every site's [train] settings (the centralized reference trains with the same ones)."""
    return BlockTraining(epochs=scn.spec.block_epochs, patience=scn.spec.patience, seed=scn.spec.seed, device="cpu")


def site_toml(name: str, modalities: list[str], paired: bool, coordinator: str, task: str, superlink: str, port: int,
              scn: Scenario) -> str:
    mods = ", ".join(f'"{m}"' for m in modalities)
    return (f'site = "{name}"\nmodalities = [{mods}]\npaired = {str(paired).lower()}\ncoordinator = "{coordinator}"\n'
            f'data = "data"\ntask = "{task}"\nblocks = "blocks"\n\n[tls]\ncert = "tls.crt"\nkey = "tls.key"\nca = "ca.crt"\n\n'
            f'[signing]\nkey = "signing.key"\n\n[flower]\nnode_key = "flower-node.key"\nnode_pub = "flower-node.pub"\n'
            f'superlink = "{superlink}"\nport = {port}\n\n' + block_training(scn).toml())


def site_env() -> dict[str, str]:
    """One thread per site process: N sites share the machine's cores, and a block trained here
    is bit-identical to the same training in one process (the centralized reference)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


# daemon event -> progress line
SHOWN = {"training": "training {modalities}", "trained": "trained {modality} (validation {val_metric})",
         "pushing": "pushing {modality}", "pushed": "pushed {modality}", "block-current": "has a current {modality} block",
         "supernode-started": "SuperNode started (LegoFuse rounds)", "failed": "FAILED: {error}",
         "registry-unreachable": "registry unreachable, retrying", "done": "done (blocks pushed; the process exits)"}


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
                    fields = {k: (", ".join(v) if isinstance(v, list) else v) for k, v in event.items()}
                    self.say(f"[{time.monotonic() - self.t0:7.1f} s] {site:<14} {template.format_map(_Missing(fields))}")

    def pushed(self, site: str) -> set[str]:
        return {e["modality"] for e in self.events[site] if e.get("event") == "pushed"}

    def failure(self, site: str) -> str | None:
        return next((str(e.get("error")) for e in self.events[site] if e.get("event") == "failed"), None)


class _Missing(dict):  # type: ignore[type-arg]
    def __missing__(self, key: str) -> str:
        return "?"


def simulate(scn: Scenario, part: Partition, out: Path, say: Say, parallel: int = 8, push_timeout_s: float = 3600.0,
             relay: Relay | None = None) -> RunResult:
    """Run the consortium of ``scn`` on ``part`` in ``out`` with at most ``parallel`` sites
    training at once; every process is stopped on return or error."""
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise SimulationError(f"{out} is not empty; give a new --out folder")
    phases: dict[str, float] = {}
    t0 = time.monotonic()
    ca = CertificateAuthority.init(out / "ca")
    port = free_port()
    address = f"127.0.0.1:{port}"
    coord_dir = out / "coordinator"
    server_credentials(ca, "coordinator", ["127.0.0.1"], coord_dir)
    admin_dir = enroll_admin(ca, "operator", out / "operator", address)
    admin_tls = TLSFiles(admin_dir / "tls.crt", admin_dir / "tls.key", admin_dir / "ca.crt")
    paired = [s for s in scn.spec.sites if s.paired]
    fuse = bool(paired) and scn.spec.rounds > 0
    superlink = f"127.0.0.1:{free_port()}"
    config_path = coord_dir / "coordinator.toml"
    text = render_config(address, "server.crt", "server.key", "ca.crt", "../ca/crl.pem", store="store")
    text += (f'\n[flower]\nsuperlink = "{superlink}"\nhome = "flower"\nround_timeout_s = 600.0\n'
             f'discovery_timeout_s = 300.0\nmin_sites = 1\nexpect_sites = {len(paired)}\nrun_timeout_s = 3600.0\n')
    config_path.write_text(text)
    task = task_record(scn, part)
    site_address = relay("registry", address) if relay else address
    site_superlink = relay("superlink", superlink) if relay and fuse else superlink
    site_dirs: dict[str, Path] = {}
    for s in scn.spec.sites:
        folder = enroll_site(ca, s.name, s.modalities, out / "sites" / s.name, paired=s.paired, coordinator=site_address)
        export_site_folder(part.sites[s.name], folder / "data")
        (folder / "site.toml").write_text(site_toml(s.name, s.modalities, s.paired, site_address, task.task_id,
                                                    site_superlink, free_port(), scn))
        site_dirs[s.name] = folder
    phases["setup (CA, kits, site data)"] = time.monotonic() - t0
    say(f"run folder {out}: CA, coordinator credentials, {len(site_dirs)} site kits and data folders written")

    fleet = Fleet(out / "logs")
    try:
        t1 = time.monotonic()
        fleet.start("coordinator", [*MMLEGO, "coordinator", "serve", "--config", str(config_path)])
        fleet.wait_for_text("coordinator", "listening on", 120)
        with RegistryClient(address, admin_tls) as admin:
            admin.create_task(task)
        say(f"coordinator listening on {address} (mutual TLS, SQLite store); task {task.task_id} created")
        if fuse:
            from ..flower import register_node

            fleet.start("superlink", [*MMLEGO, "coordinator", "superlink", "--config", str(config_path)])
            cfg = load_config(config_path)
            deadline = time.monotonic() + 120
            for s in paired:
                while True:
                    fleet.check()
                    try:
                        register_node(cfg, s.name, site_dirs[s.name] / "flower-node.pub")
                        break
                    except Exception as exc:  # the SuperLink takes a few seconds to listen
                        if time.monotonic() > deadline:
                            raise SimulationError(f"could not register {s.name}'s Flower node key: {exc}") from None
                        time.sleep(1.0)
            say(f"Flower SuperLink on {superlink} (TLS, node authentication); node keys of {', '.join(s.name for s in paired)} registered")
        phases["start coordinator and SuperLink"] = time.monotonic() - t1

        t2 = time.monotonic()
        logs = {s.name: fleet.logs / f"site-{s.name}.log" for s in scn.spec.sites}
        waiting = sorted(scn.spec.sites, key=lambda s: not s.paired)  # paired sites first: their SuperNodes start early
        say(f"{len(waiting)} site daemons to run, at most {parallel} training at a time; each trains its block(s) "
            "on its own data and pushes them")
        progress = Progress(logs, say, t0)
        deadline = time.monotonic() + push_timeout_s
        while True:
            progress.poll()
            for s in scn.spec.sites:
                why = progress.failure(s.name)
                if why is not None:
                    raise SimulationError(f"site {s.name} failed: {why}; its log ends:\n{tail(logs[s.name])}")
            done = {s.name for s in scn.spec.sites if progress.pushed(s.name) >= set(s.modalities)}
            busy = sum(1 for name in logs if f"site {name}" in fleet.members and name not in done)
            while waiting and busy < parallel:
                s = waiting.pop(0)  # unpaired sites exit once their blocks are pushed; paired ones stay for the rounds
                command = [*MMLEGO, "site", "run", "--config", str(site_dirs[s.name] / "site.toml")] + ([] if s.paired else ["--once"])
                fleet.start(f"site {s.name}", command, env=site_env(), may_exit=not s.paired)
                busy += 1
            if len(done) == len(scn.spec.sites):
                break
            fleet.check()
            for name in logs:
                member = fleet.members.get(f"site {name}")
                if member is not None and member.proc.poll() is not None and name not in done:
                    progress.poll()  # its last lines may say it pushed
                    if progress.pushed(name) < set(next(s.modalities for s in scn.spec.sites if s.name == name)):
                        raise SimulationError(f"site {name} exited without pushing all its blocks; its log ends:\n"
                                              f"{tail(member.log)}")
            if time.monotonic() > deadline:
                late = sorted(set(logs) - done)
                raise SimulationError(f"sites {late} did not push their blocks within {push_timeout_s:.0f} s")
            time.sleep(0.3)
        phases["sites train and push blocks"] = time.monotonic() - t2

        t3 = time.monotonic()
        model_dirs: dict[str, Path] = {}
        with RegistryClient(address, admin_tls) as admin:
            merged = admin.merge(task.task_id)
            blocks = admin.blocks(task.task_id)
            model_dirs[merged.model_id] = out / "models" / merged.model_id
            admin.pull_model(merged.model_id, model_dirs[merged.model_id])
        say(f"LegoMerge: model version {merged.model_id} from {len(merged.block_ids)} blocks (no training)")
        phases["merge"] = time.monotonic() - t3

        fused = None
        if fuse:
            from ..flower import fuse as run_fuse

            t4 = time.monotonic()
            cfg = load_config(config_path)
            fuse_cfg = FuseConfig(mode=scn.spec.fuse_mode, rounds=scn.spec.rounds, epochs=scn.spec.epochs, seed=scn.spec.seed)
            say(f"LegoFuse: {fuse_cfg.rounds} rounds x {fuse_cfg.epochs} epochs on {', '.join(s.name for s in paired)} (Flower)")
            model_id = run_fuse(cfg, config_path, merged.model_id, fuse_cfg, len(paired), progress=lambda line: say("    " + line))
            with RegistryClient(address, admin_tls) as admin:
                fused = admin.model(model_id)
                model_dirs[model_id] = out / "models" / model_id
                admin.pull_model(model_id, model_dirs[model_id])
            say(f"LegoFuse: model version {model_id}")
            phases["fuse rounds"] = time.monotonic() - t4
        progress.poll()
        fleet.sample()
        peaks = {m.name: m.peak for m in fleet.members.values()}
    finally:
        fleet.stop_all()
    say("every process stopped")
    return RunResult(out, task, merged, fused, model_dirs, blocks, site_dirs, phases, peaks, progress.events)
