"""LegoFuse rounds through real Flower processes on loopback, as an operator runs them: the
coordinator (registry) process, `mmlego coordinator superlink` (TLS with the coordinator's
certificate, SuperNode authentication), node keys from the enrolment kits registered and bound to
site names, SuperNodes of two paired sites and one unpaired site, one SuperNode whose key nobody
registered, and `mmlego coordinator fuse` (with central DP). One paired site is killed in the
middle of the run: the round finishes with the other by its deadline and the fused version is
stored."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from common.client import RegistryClient
from common.data.export import export_site_folder
from common.data.sitefolder import load_site_folder
from common.data.splits import site_split
from common.flowerenv import flower_env
from common.processes import descendants, stop_process
from coordinator.config import EvaluationSection, FlowerSection, load_config
from coordinator.flower import flwr, register_node, stop_runs
from coordinator.launch import CoordinatorProcess, free_port
from site_client.config import load_site_config
from site_client.flower import supernode_command
from tests.coordinator.conftest import TASK, Consortium, signed_block
from tests.coordinator.test_crash import check_versions
from tests.coordinator.test_fuse_rounds import paired_data, site_node

MMLEGO = [sys.executable, "-c", "from common.cli import run; run()"]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]  # slower beside other tests


@pytest.fixture()
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in reversed(procs):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)  # the SuperNode and any ClientApp it started
            except ProcessLookupError:
                pass
        stop_process(p, 20)
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_fuse_rounds_on_real_flower_processes_with_a_site_killed_mid_run(
    consortium: Consortium, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    port, link_port = free_port(), free_port()
    superlink = f"127.0.0.1:{link_port}"
    config = consortium.coordinator_toml(
        tmp_path / "coordinator.toml",
        f"127.0.0.1:{port}",
        evaluation=EvaluationSection(deadline_s=0),  # the rounds themselves, unscored
        flower=FlowerSection(
            superlink=superlink,
            round_timeout_s=90.0,
            discovery_timeout_s=90.0,
            expect_sites=2,
            run_timeout_s=400.0,
            dp_clipping_norm=10.0,
            dp_noise_multiplier=0.01,
        ),
    )
    coord = CoordinatorProcess(config, tmp_path / "coordinator.log")
    coord.start()
    try:
        address = f"127.0.0.1:{port}"
        with RegistryClient(address, consortium.tls("ops")) as admin:
            admin.create_task(TASK)
            with (
                RegistryClient(address, consortium.tls("hosp-a")) as a,
                RegistryClient(address, consortium.tls("hosp-b")) as b,
            ):
                a.push(
                    signed_block(consortium, "hosp-a", tmp_path / "ba", modality="genes", seed=1)
                )
                b.push(
                    signed_block(consortium, "hosp-b", tmp_path / "bb", modality="clinical", seed=2)
                )
            merged = admin.merge("t1")
        with RegistryClient(address, consortium.tls("hosp-c")) as c:
            c.models()  # no block from hosp-c, but the registry knows it (it fuses its paired data)
        export_site_folder(paired_data(40, 0), tmp_path / "data-b")
        export_site_folder(paired_data(400, 3), tmp_path / "data-c")
        export_site_folder(paired_data(20, 1), tmp_path / "data-a")
        export_site_folder(paired_data(20, 2), tmp_path / "data-x")
        # hosp-a's site.toml claims paired data, but its certificate does not: it must not take
        # part.
        nodes = {
            "b": site_node(
                consortium, "hosp-b", address, tmp_path / "data-b", tmp_path / "node-b", superlink
            ),
            "c": site_node(
                consortium, "hosp-c", address, tmp_path / "data-c", tmp_path / "node-c", superlink
            ),
            "a": site_node(
                consortium, "hosp-a", address, tmp_path / "data-a", tmp_path / "node-a", superlink
            ),
            "x": site_node(
                consortium,
                "hosp-b",
                address,
                tmp_path / "data-x",
                tmp_path / "node-x",
                superlink,
                kit="rogue",
            ),
        }

        cfg = load_config(config)
        link = subprocess.Popen(
            [*MMLEGO, "coordinator", "superlink", "--config", str(config)],
            stdout=open(tmp_path / "link.log", "wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        processes.append(link)
        deadline = time.monotonic() + 60
        while True:  # the SuperLink takes a few seconds to listen
            try:
                ids = {
                    site: register_node(
                        cfg, f"hosp-{site}", consortium.kit(f"hosp-{site}") / "flower-node.pub"
                    )
                    for site in ("b", "c", "a")
                }
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(2)
        assert len(set(ids.values())) == 3
        supernodes = {}
        for name, node in nodes.items():
            site_cfg = load_site_config(node["site-config"])
            supernodes[name] = subprocess.Popen(
                supernode_command(site_cfg),
                env=flower_env(tmp_path / f"home-{name}"),
                stdout=open(tmp_path / f"node-{name}.log", "wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            processes.append(supernodes[name])

        fuse_log = open(tmp_path / "fuse.log", "wb")
        run = subprocess.Popen(
            [
                *MMLEGO,
                "coordinator",
                "fuse",
                "--model",
                merged.model_id,
                "--config",
                str(config),
                "--rounds",
                "2",
                "--epochs",
                "1",
            ],
            stdout=fuse_log,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
            start_new_session=True,
        )
        processes.append(run)
        # Kill hosp-c (its SuperNode and the ClientApp it runs) once it has started a round: it
        # pulls the model version when its first training message arrives.
        pulled = tmp_path / "node-c" / "models" / merged.model_id / "model.pb"
        deadline = time.monotonic() + 300
        while not pulled.exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pulled.exists(), (tmp_path / "fuse.log").read_text()[-3000:]
        os.killpg(supernodes["c"].pid, signal.SIGKILL)
        killed_at = time.monotonic()
        run.wait(timeout=400)
        out = (tmp_path / "fuse.log").read_text()
        assert run.returncode == 0, out[-3000:]
        assert "round 1 of 2" in out and "round 2 of 2" in out  # the run shows its progress
        assert time.monotonic() - killed_at < 90 + 60, "the round did not end by its deadline"

        with RegistryClient(address, consortium.tls("ops")) as admin:
            fused = [m for m in admin.models("t1") if m.recipe.kind == "fuse"]
        assert (
            len(fused) == 1 and fused[0].model_id in out and fused[0].parent_id == merged.model_id
        )
        card = fused[0].card["fuse"]
        rounds = card["rounds"]
        # hosp-c answered no round after it was killed (nearly always round 1; round 2 if it
        # replied first), and is not asked again; hosp-b carried the rounds; hosp-a (unpaired) and
        # the rogue node never took part.
        dead = [r["round"] for r in rounds if r["no_answer"] == ["hosp-c"]]
        assert len(dead) == 1 and all(
            r["sites"] == ["hosp-b"] for r in rounds if r["round"] >= dead[0]
        ), rounds
        assert (
            set(card["participants"]) <= {"hosp-b", "hosp-c"} and "hosp-b" in card["participants"]
        )
        training = len(
            site_split(load_site_folder(tmp_path / "data-b"), 0.15, 0)[0]
        )  # its training patients only
        assert [r["round"] for r in rounds] == [1, 2] and fused[0].metrics[
            "num-examples"
        ] == training < 40
        assert (
            fused[0].card["validation"]["evaluated"] is False
        )  # evaluation is off here: stored, marked unmeasured
        privacy = card["privacy"]
        assert "fixed clipping" in privacy["mechanism"] and privacy["clipping_norm"] == "10.0"
        assert (
            privacy["noise_std_per_round"].split(", ")[-1] == "0.1"
            and float(privacy["epsilon"]) > 0
        )  # 0.01 * 10 / 1 site
        rogue = supernodes["x"]
        assert rogue.poll() is not None and rogue.returncode != 0, (
            "a SuperNode with an unregistered key was not refused"
        )
        with RegistryClient(address, consortium.tls("hosp-a")) as site:
            site.pull_model(fused[0].model_id, tmp_path / "pulled")
        listed = json.loads(flwr(cfg, "list", "coordinator", "--format", "json").stdout)["runs"]
        assert [r["status"] for r in listed] == ["finished:completed"], listed
        assert stop_runs(cfg) == 0  # what a deadline would stop: nothing is running now

        # The coordinator's machine dies during a round of a second run: SIGKILL of the registry
        # server, the SuperLink and every process below it (the ServerApp runs in a session of
        # its own: a process-group kill misses it, and it would finish the run once a SuperLink is
        # back).
        # Nothing of that run may be stored; after a restart the surviving site's SuperNode
        # reconnects and a new run completes.
        second = subprocess.Popen(
            [
                *MMLEGO,
                "coordinator",
                "fuse",
                "--model",
                merged.model_id,
                "--config",
                str(config),
                "--rounds",
                "2",
                "--epochs",
                "1",
                "--expect-paired",
                "1",
            ],
            stdout=open(tmp_path / "fuse2.log", "wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        processes.append(second)
        deadline = time.monotonic() + 120
        while (
            "paired ['hosp-b']" not in (tmp_path / "fuse2.log").read_text()
            and time.monotonic() < deadline
        ):
            time.sleep(0.1)
        assert "paired ['hosp-b']" in (tmp_path / "fuse2.log").read_text(), (
            "the second run never reached its rounds"
        )
        time.sleep(2.0)  # round 1 is under way: hosp-b's ClientApp takes seconds to start and train
        tree = [link.pid, *descendants(link.pid)]
        assert len(tree) >= 3, tree  # the SuperLink, its SuperExec and the run's ServerApp
        coord.kill()
        for pid in tree:
            os.kill(pid, signal.SIGKILL)
        t_kill = time.monotonic()
        second.wait(timeout=180)
        out2 = (tmp_path / "fuse2.log").read_text()
        print(
            f"fuse run after the kill: exit {second.returncode} "
            f"after {time.monotonic() - t_kill:.0f} s:",
            out2[-600:],
        )
        assert "round 1 of 2" not in out2, "the kill did not land during round 1"
        assert second.returncode == 1 and "lost the connection to the SuperLink" in out2
        assert time.monotonic() - t_kill < 60
        coord.start()  # recovery on start
        check_versions(tmp_path / "store", {})  # no orphan blob, no partial version, every card
        with RegistryClient(address, consortium.tls("ops")) as admin:
            assert [m.model_id for m in admin.models("t1") if m.recipe.kind == "fuse"] == [
                fused[0].model_id
            ]
        restarted = subprocess.Popen(
            [*MMLEGO, "coordinator", "superlink", "--config", str(config)],
            stdout=open(tmp_path / "link2.log", "wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        processes.append(restarted)
        deadline = time.monotonic() + 60
        while (
            flwr(cfg, "list", "coordinator", "--format", "json").returncode != 0
        ):  # listening again
            assert time.monotonic() < deadline and restarted.poll() is None, (
                tmp_path / "link2.log"
            ).read_text()[-2000:]
            time.sleep(1)
        third = subprocess.run(
            [
                *MMLEGO,
                "coordinator",
                "fuse",
                "--model",
                merged.model_id,
                "--config",
                str(config),
                "--rounds",
                "1",
                "--epochs",
                "1",
                "--expect-paired",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert third.returncode == 0, third.stdout[-2000:] + third.stderr[-3000:]
        assert supernodes["b"].poll() is None, (
            "hosp-b's SuperNode did not survive the coordinator's restart"
        )
        with RegistryClient(address, consortium.tls("ops")) as admin:
            fused_now = [m for m in admin.models("t1") if m.recipe.kind == "fuse"]
        assert len(fused_now) == 2 and fused_now[0].card["fuse"]["participants"] == ["hosp-b"]
    finally:
        coord.stop()
