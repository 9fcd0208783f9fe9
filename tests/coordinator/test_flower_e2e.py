"""LegoFuse rounds through real Flower processes on loopback: a SuperLink, two SuperNodes (one
site with paired data, one without), `flwr run` of deploy/flower-app, and the coordinator's
registry process; the run stores a fused model version made by the paired site only.
(Plaintext Flower transport here; TLS and node authentication are not wired yet.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.client import RegistryClient
from common.data.export import export_site_folder
from coordinator.config import render_config
from coordinator.launch import CoordinatorProcess, free_port
from tests.coordinator.conftest import TASK, Consortium, signed_block
from tests.coordinator.test_fuse_rounds import paired_data, site_node

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def flower_env(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return dict(os.environ, FLWR_TELEMETRY_ENABLED="0", FLWR_DISABLE_UPDATE_CHECK="1", FLWR_HOME=str(home),
                PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")


@pytest.fixture()
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


def test_fuse_rounds_on_real_flower_processes(consortium: Consortium, tmp_path: Path,
                                              processes: list[subprocess.Popen[bytes]]) -> None:
    port, s = free_port(), consortium.root / "server"
    (tmp_path / "coordinator.toml").write_text(render_config(
        f"127.0.0.1:{port}", str(s / "server.crt"), str(s / "server.key"), str(s / "ca.crt"), None, store=str(tmp_path / "store")))
    coord = CoordinatorProcess(tmp_path / "coordinator.toml", tmp_path / "coordinator.log")
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
        export_site_folder(paired_data(20, 1).select_modalities(["genes"]), tmp_path / "data-a")
        paired = site_node(consortium, "hosp-b", address, tmp_path / "data-b", tmp_path / "node-b")
        unpaired = site_node(consortium, "hosp-a", address, tmp_path / "data-a", tmp_path / "node-a")
        toml = Path(unpaired["site-config"])
        toml.write_text(toml.read_text().replace("paired = true", "paired = false"))

        link_port = free_port()
        processes.append(subprocess.Popen(
            [str(BIN / "flower-superlink"), "--insecure", "--host", "127.0.0.1", "--port", str(link_port),
             "--disable-runtime-dependency-installation", "--database", str(tmp_path / "link.db")],
            env=flower_env(tmp_path / "home-link"), stdout=open(tmp_path / "link.log", "wb"), stderr=subprocess.STDOUT))
        for name, node in (("b", paired), ("a", unpaired)):
            processes.append(subprocess.Popen(
                [str(BIN / "flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{link_port}", "--port",
                 str(free_port()), "--node-config", f'site-config="{node["site-config"]}"'],
                env=flower_env(tmp_path / f"home-{name}"), stdout=open(tmp_path / f"node-{name}.log", "wb"),
                stderr=subprocess.STDOUT))
        cli_home = tmp_path / "home-cli"
        cli_home.mkdir()
        (cli_home / "config.toml").write_text(f'[superlink]\ndefault = "local"\n\n[superlink.local]\n'
                                              f'address = "127.0.0.1:{link_port}"\ninsecure = true\n')
        run_config = (f'model-id="{merged.model_id}" coordinator-config="{tmp_path / "coordinator.toml"}" mode="weave" '
                      'rounds=2 epochs=1 min-sites=1 expect-paired=1 discovery-timeout=60.0 round-timeout=120.0')
        deadline = time.monotonic() + 60
        while True:  # the SuperLink needs a few seconds before it takes runs
            run = subprocess.run([str(BIN / "flwr"), "run", str(REPO / "deploy" / "flower-app"), "local", "--run-config",
                                  run_config, "--stream"], env=flower_env(cli_home), capture_output=True, text=True, timeout=400)
            if "unavailable" not in (run.stdout + run.stderr).lower() or time.monotonic() > deadline:
                break
            time.sleep(2)
        with RegistryClient(address, consortium.tls("ops")) as admin:
            models = admin.models("t1")
        assert [m.recipe for m in models] == ["fuse", "merge"], run.stdout[-3000:] + run.stderr[-3000:]
        fused = models[0]
        assert fused.parent_id == merged.model_id and fused.card["fuse"]["participants"] == ["hosp-b"]
        assert [r["round"] for r in fused.card["fuse"]["rounds"]] == [1, 2]
        assert fused.parameters["mode"] == "weave" and fused.metrics["num-examples"] == 40
    finally:
        coord.stop()
