"""LegoFuse rounds through real Flower processes on loopback, as an operator runs them: the
coordinator (registry) process, `mmlego coordinator superlink` (TLS with the coordinator's
certificate, SuperNode authentication), node keys from the enrolment kits registered and bound to
site names, two site SuperNodes (one paired, one not) and one SuperNode whose key nobody
registered; the admin's Fuse RPC runs the rounds (with central DP) and returns the fused model version."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.client import RegistryClient
from common.data.export import export_site_folder
from common.flowerenv import flower_env
from common.processes import stop_process
from coordinator.config import load_config, render_config
from coordinator.flower import register_node
from coordinator.launch import CoordinatorProcess, free_port
from site_client.config import load_site_config
from site_client.flower import supernode_command
from tests.coordinator.conftest import TASK, Consortium, signed_block
from tests.coordinator.test_fuse_rounds import paired_data, site_node


@pytest.fixture()
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in reversed(procs):
        stop_process(p, 20)


def test_fuse_rounds_on_real_flower_processes_with_tls_and_node_auth(consortium: Consortium, tmp_path: Path,
                                                                    processes: list[subprocess.Popen[bytes]]) -> None:
    port, link_port, s = free_port(), free_port(), consortium.root / "server"
    superlink = f"127.0.0.1:{link_port}"
    config = tmp_path / "coordinator.toml"
    config.write_text(render_config(f"127.0.0.1:{port}", str(s / "server.crt"), str(s / "server.key"), str(s / "ca.crt"), None,
                                    store=str(tmp_path / "store"))
                      + f'\n[flower]\nsuperlink = "{superlink}"\nhome = "flower"\nround_timeout_s = 120.0\n'
                        'discovery_timeout_s = 60.0\nmin_sites = 1\nrun_timeout_s = 400.0\n'
                        'dp_clipping_norm = 10.0\ndp_noise_multiplier = 0.01\n')
    coord = CoordinatorProcess(config, tmp_path / "coordinator.log")
    coord.start()
    try:
        address = f"127.0.0.1:{port}"
        with RegistryClient(address, consortium.tls("ops")) as admin:
            admin.create_task(TASK)
            with RegistryClient(address, consortium.tls("hosp-a")) as a, RegistryClient(address, consortium.tls("hosp-b")) as b:
                a.push(signed_block(consortium, "hosp-a", tmp_path / "ba", modality="genes", seed=1))
                b.push(signed_block(consortium, "hosp-b", tmp_path / "bb", modality="clinical", seed=2))
            merged = admin.merge("t1")
        export_site_folder(paired_data(40, 0), tmp_path / "data-b")
        export_site_folder(paired_data(20, 1), tmp_path / "data-a")
        export_site_folder(paired_data(20, 2), tmp_path / "data-x")
        # hosp-a's site.toml claims paired data, but its certificate does not: it must not take part.
        nodes = {"b": site_node(consortium, "hosp-b", address, tmp_path / "data-b", tmp_path / "node-b", superlink),
                 "a": site_node(consortium, "hosp-a", address, tmp_path / "data-a", tmp_path / "node-a", superlink),
                 "x": site_node(consortium, "hosp-b", address, tmp_path / "data-x", tmp_path / "node-x", superlink, kit="rogue")}

        cfg = load_config(config)
        processes.append(subprocess.Popen([sys.executable, "-c", "from common.cli import run; run()", "coordinator", "superlink",
                                           "--config", str(config)], stdout=open(tmp_path / "link.log", "wb"),
                                          stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 60
        while True:  # the SuperLink takes a few seconds to listen
            try:
                ids = {site: register_node(cfg, f"hosp-{site}", consortium.kit(f"hosp-{site}") / "flower-node.pub")
                       for site in ("b", "a")}
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(2)
        assert len(set(ids.values())) == 2
        for name, node in nodes.items():
            site_cfg = load_site_config(node["site-config"])
            processes.append(subprocess.Popen(supernode_command(site_cfg), env=flower_env(tmp_path / f"home-{name}"),
                                              stdout=open(tmp_path / f"node-{name}.log", "wb"), stderr=subprocess.STDOUT))
        rogue = processes[-1]

        with RegistryClient(address, consortium.tls("ops")) as admin:
            fused = admin.fuse(merged.model_id, rounds=2, epochs=1, timeout_s=400)
        assert fused.recipe == "fuse" and fused.parent_id == merged.model_id, (tmp_path / "coordinator.log").read_text()[-3000:]
        assert fused.card["fuse"]["participants"] == ["hosp-b"]
        privacy = fused.card["fuse"]["privacy"]
        assert "fixed clipping" in privacy["mechanism"] and privacy["clipping_norm"] == "10.0" and privacy["noise_std"] == "0.1"
        assert [r["round"] for r in fused.card["fuse"]["rounds"]] == [1, 2] and fused.metrics["num-examples"] == 40
        assert rogue.poll() is not None and rogue.returncode != 0, "a SuperNode with an unregistered key was not refused"
        with RegistryClient(address, consortium.tls("hosp-a")) as site:
            site.pull_model(fused.model_id, tmp_path / "pulled")
    finally:
        coord.stop()
