"""The site daemon as a real process against a real registry: it trains and pushes, stops
cleanly on SIGTERM, and after a restart reuses its block instead of retraining. SuperNode
supervision: a node that exits is restarted with back-off, an unregistered key is named."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from common.client import RegistryClient
from common.data.export import export_site_folder
from common.processes import stop_process
from common.sitetoml import EvaluationSection
from coordinator.config import CoordinatorConfig
from site_client.config import load_site_config
from site_client.daemon import Daemon
from tests.coordinator.conftest import Consortium, consortium, coordinator  # noqa: F401  (fixtures)
from tests.coordinator.test_fuse_rounds import paired_data, site_node


def events(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def start(config: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from common.cli import run; run()",
            "site",
            "run",
            "--config",
            config,
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(log, "wb"),
    )


def wait_for(log: Path, name: str, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(e["event"] == name for e in events(log)):
        assert proc.poll() is None, log.read_text()[-2000:]
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.3)


def run_until_idle(config: str, log: Path) -> None:
    """Start the daemon, wait until it serves (evaluation jobs), SIGTERM it: it must exit 0."""
    proc = start(config, log)
    try:
        wait_for(log, "serving", proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        stop_process(proc)


def genes_site(
    consortium: Consortium,  # noqa: F811
    address: str,
    tmp_path: Path,
    patients: int,
    train: str,
) -> Path:
    """hosp-a's site.toml (unpaired, task t1) over ``patients`` genes-only patients; ``train``:
    extra [train] lines."""
    export_site_folder(paired_data(patients, 5).select_modalities(["genes"]), tmp_path / "data")
    toml = Path(
        site_node(consortium, "hosp-a", address, tmp_path / "data", tmp_path / "kit")["site-config"]
    )
    toml.write_text(
        toml.read_text()
        .replace("paired = true", 'paired = false\ntask = "t1"')
        .replace('device = "cpu"', f'device = "cpu"\n{train}')
    )
    return toml


def test_daemon_trains_pushes_stops_and_resumes_without_retraining(
    consortium: Consortium,  # noqa: F811
    coordinator: tuple[str, CoordinatorConfig],  # noqa: F811
    tmp_path: Path,
) -> None:
    address = coordinator[0]
    toml = genes_site(
        consortium, address, tmp_path, 40, "epochs = 3\npatience = 2\ntoken_dim = 16\nn_tokens = 2"
    )
    run_until_idle(str(toml), tmp_path / "run1.log")
    names = [e["event"] for e in events(tmp_path / "run1.log")]
    assert (
        names[0] == "starting"
        and "trained" in names
        and "pushed" in names
        and names[-1] == "stopped"
    )
    with RegistryClient(address, consortium.tls("hosp-a")) as client:
        (block,) = client.blocks("t1", "hosp-a")
    once = subprocess.run(
        [
            sys.executable,
            "-c",
            "from common.cli import run; run()",
            "site",
            "run",
            "--once",
            "--config",
            str(toml),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        once.returncode == 0
        and '"event": "done"' in once.stderr
        and '"event": "training"' not in once.stderr
    )
    run_until_idle(str(toml), tmp_path / "run2.log")
    again = events(tmp_path / "run2.log")
    assert "training" not in [e["event"] for e in again] and "block-current" in [
        e["event"] for e in again
    ]
    assert next(e for e in again if e["event"] == "pushed")["already_present"] is True
    assert [e["block_id"] for e in again if e["event"] == "pushed"] == [block.block_id]


def test_supernode_is_restarted_with_back_off_and_an_unregistered_key_is_named(
    consortium: Consortium,  # noqa: F811
    tmp_path: Path,
) -> None:
    node = site_node(consortium, "hosp-b", "127.0.0.1:1", tmp_path / "data", tmp_path / "kit")
    cfg = replace(
        load_site_config(node["site-config"]), evaluation=EvaluationSection(enabled=False)
    )
    out, stop, started = io.StringIO(), threading.Event(), []

    def spawn(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        started.append(command)
        assert "--auth-supernode-private-key" in command and env["FLWR_TELEMETRY_ENABLED"] == "0"
        return subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(305)"])

    daemon = Daemon(cfg, stop, out, spawn)
    worker = threading.Thread(target=daemon.serve)
    worker.start()
    time.sleep(4.5)
    stop.set()
    worker.join(10)
    daemon.shutdown()
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    exits = [e for e in lines if e["event"] == "supernode-exited"]
    assert (
        2 <= len(started) <= 3
        and exits
        and all(e["code"] == 305 % 256 and "flower-register" in e["hint"] for e in exits)
    )
    assert lines[-1]["event"] == "stopped" and not worker.is_alive()


def test_site_status_shows_local_and_registry_state(
    consortium: Consortium,  # noqa: F811
    coordinator: tuple[str, CoordinatorConfig],  # noqa: F811
    tmp_path: Path,
) -> None:
    from typer.testing import CliRunner

    from common.artifacts import load_signing_key, save_block
    from common.cli import add_plugins, app
    from tests.factories import block

    add_plugins()
    address, _ = coordinator
    node = site_node(consortium, "hosp-a", address, tmp_path / "data", tmp_path / "kit")
    toml = Path(node["site-config"])
    toml.write_text(toml.read_text().replace("paired = true", 'paired = false\ntask = "t1"'))
    cfg = load_site_config(toml)
    save_block(
        block(modality="genes", seed=4),
        cfg.blocks / "t1-genes-local",
        site="hosp-a",
        task_id="t1",
        signing_key=load_signing_key(consortium.kit("hosp-a") / "signing.key"),
    )
    out = CliRunner().invoke(app, ["site", "status", "--config", str(toml)])
    assert out.exit_code == 0, out.output
    assert (
        "block genes" in out.output
        and "not pushed" in out.output
        and "no model versions yet" in out.output
    )
    with RegistryClient(address, consortium.tls("hosp-a")) as client:
        client.push(cfg.blocks / "t1-genes-local")
    out = CliRunner().invoke(app, ["site", "status", "--config", str(toml)])
    assert "accepted" in out.output and "not pushed" not in out.output


def test_sigterm_while_training_stops_the_daemon_promptly_and_writes_no_block(
    consortium: Consortium,  # noqa: F811
    coordinator: tuple[str, CoordinatorConfig],  # noqa: F811
    tmp_path: Path,
) -> None:
    from site_client.train import current_blocks

    address = coordinator[0]
    toml = genes_site(
        consortium, address, tmp_path, 400, "epochs = 100000\npatience = 100000"
    )  # would train for hours
    log = tmp_path / "run.log"
    proc = start(str(toml), log)
    try:
        wait_for(log, "training", proc)
        time.sleep(2.0)  # well inside the first epochs
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        assert proc.wait(60) == 0, log.read_text()[-2000:]
        assert time.monotonic() - t0 < 30
    finally:
        stop_process(proc)
    names = [e["event"] for e in events(log)]
    assert "training-interrupted" in names and "trained" not in names and names[-1] == "stopped"
    assert current_blocks(load_site_config(toml), "t1") == {}
    with RegistryClient(address, consortium.tls("hosp-a")) as client:
        assert client.blocks("t1", "hosp-a") == []


def test_a_task_the_operator_has_not_created_yet_is_named_and_waited_for(
    consortium: Consortium,  # noqa: F811
    coordinator: tuple[str, CoordinatorConfig],  # noqa: F811
    tmp_path: Path,
) -> None:
    address, _ = coordinator
    toml = genes_site(consortium, address, tmp_path, 40, "epochs = 1")
    toml.write_text(toml.read_text().replace('task = "t1"', 'task = "not-yet"'))
    out, stop = io.StringIO(), threading.Event()
    daemon = Daemon(load_site_config(toml), stop, out=out)
    runner = threading.Thread(target=daemon.task)
    runner.start()
    deadline = time.monotonic() + 30
    while "task-not-found" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert runner.is_alive(), "the daemon gave up instead of waiting for the task"
    stop.set()
    runner.join(30)
    first = json.loads(out.getvalue().splitlines()[0])
    assert (
        first["event"] == "task-not-found" and "not-yet" in first["error"] and not runner.is_alive()
    )


def test_an_unpaired_site_keeps_a_supernode_only_when_its_site_toml_asks_for_one(
    consortium: Consortium,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A site without paired data trains in LegoFuse runs over every site (``--sites all``) only
    through a SuperNode, which ``[flower] supernode = true`` keeps running."""
    node = site_node(consortium, "hosp-a", "127.0.0.1:1", tmp_path / "data", tmp_path / "kit")
    unpaired = replace(
        load_site_config(node["site-config"]),
        paired=False,
        evaluation=EvaluationSection(enabled=False),
    )
    for supernode in (False, True):
        cfg = replace(unpaired, flower=unpaired.flower.model_copy(update={"supernode": supernode}))
        started: list[list[str]] = []

        def spawn(
            command: list[str], env: dict[str, str], started: list[list[str]] = started
        ) -> subprocess.Popen[bytes]:
            started.append(command)
            return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])

        stop = threading.Event()
        daemon = Daemon(cfg, stop, io.StringIO(), spawn)
        worker = threading.Thread(target=daemon.serve)
        worker.start()
        time.sleep(1.5)
        stop.set()
        worker.join(10)
        daemon.shutdown()
        assert len(started) == int(supernode) and daemon.supernode == supernode
