"""``mmlego admin`` against a real coordinator on loopback (mutual TLS, a real SQLite store), as
an operator runs it from another machine with only an admin kit: it prints what the host's
``mmlego coordinator`` commands print, streams a fuse run's rounds, and is refused with a site
certificate, a revoked admin certificate or another CA's."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from common.admin import AdminClient, AdminKit
from common.admin.render import render_status
from common.cli import add_plugins, app
from common.client import CallError
from common.fuse.history import RoundRecord, RoundValidation
from common.pb.mmlego.v1 import registry_pb2 as pb
from common.pki import enroll_admin
from coordinator import fuse_run
from coordinator.config import CoordinatorConfig
from coordinator.fuse_rounds import FuseError, NotStored
from coordinator.operations import status
from coordinator.registry import Registry
from coordinator.servicer import FuseStart
from tests.coordinator.conftest import Consortium, serving, signed_block

TASK_TOML = """id = "nki"
kind = "survival"
n_bins = 4
bin_edges = [3.0, 6.0, 9.0]
modalities = ["genes", "clinical"]
latent_rows = 6
latent_dim = 8
"""


def admin(*args: str) -> tuple[int, str, str]:
    add_plugins()
    done = CliRunner().invoke(app, ["admin", *args])
    return done.exit_code, done.stdout, done.stderr


def kit_args(consortium: Consortium, address: str, name: str = "ops") -> list[str]:
    return ["--kit", str(consortium.kit(name)), "--coordinator", address]


def host_status(cfg: CoordinatorConfig) -> dict[str, object]:
    registry = Registry.open(cfg, recover=False)
    try:
        return status(registry)
    finally:
        registry.close()


@pytest.fixture()
def running(consortium: Consortium, tmp_path: Path) -> Iterator[tuple[str, CoordinatorConfig]]:
    cfg = consortium.config(store=tmp_path / "store")
    with serving(consortium, cfg) as address:
        yield address, cfg


def test_the_admin_commands_say_what_the_host_commands_say(
    consortium: Consortium, running: tuple[str, CoordinatorConfig], tmp_path: Path
) -> None:
    address, cfg = running
    k = kit_args(consortium, address)
    (tmp_path / "task.toml").write_text(TASK_TOML)
    code, out, err = admin("task", "create", str(tmp_path / "task.toml"), *k)
    assert code == 0 and out.strip() == "created task nki (survival; modalities genes, clinical)", (
        err
    )
    code, out, _ = admin(
        "task", "create", str(tmp_path / "task.toml"), *k
    )  # a task is created once
    assert code == 2 and out == ""
    with AdminClient(
        AdminKit("hosp-a", address, consortium.tls("hosp-a"))
    ) as c:  # a site pushes with its own kit
        c.push(signed_block(consortium, "hosp-a", tmp_path / "a", modality="genes"))
    code, out, _ = admin("task", "list", "--json", *k)
    assert code == 0 and sorted(t["task"] for t in json.loads(out)) == ["nki", "t1"]
    code, out, _ = admin("status", "--json", *k)
    assert code == 0 and json.loads(out) == host_status(cfg)
    code, out, _ = admin("status", *k)
    assert code == 0 and out.strip() == render_status(host_status(cfg)).strip()


def test_merge_withdraw_and_reads_over_rpc(
    consortium: Consortium, running: tuple[str, CoordinatorConfig], tmp_path: Path
) -> None:
    address, _ = running
    k = kit_args(consortium, address)
    for site, modality, seed in (("hosp-a", "genes", 1), ("hosp-b", "clinical", 2)):
        with AdminClient(
            AdminKit(site, address, consortium.tls(site))
        ) as c:  # each site pushes with its own kit
            c.push(signed_block(consortium, site, tmp_path / site, modality=modality, seed=seed))
    code, out, err = admin("merge", "--task", "t1", *k)
    assert code == 0 and out.startswith(
        "created model version t1-v1 (merge, 2 blocks): not measured by the sites"
    ), err
    assert "mmlego admin card t1-v1" in out
    code, out, _ = admin("versions", "--json", *k)
    (v1,) = json.loads(out)
    assert (
        v1["model"] == "t1-v1"
        and v1["sites"] == ["hosp-a", "hosp-b"]
        and v1["val_metric"] is None
        and v1["parent"] == ""
    )
    code, out, _ = admin("card", "t1-v1", *k)
    assert code == 0 and out.startswith("# Model t1-v1") and "hosp-b" in out
    code, out, _ = admin("card", "t1-v1", "--json", *k)
    assert json.loads(out)["model_id"] == "t1-v1"
    code, out, _ = admin("blocks", "--json", *k)
    rows = json.loads(out)
    assert sorted((r["site"], r["modality"], r["patients"], r["signer"]) for r in rows) == [
        ("hosp-a", "genes", 40, "hosp-a"),
        ("hosp-b", "clinical", 40, "hosp-b"),
    ]
    code, out, _ = admin("withdraw", "hosp-b", "--reason", "left", *k)
    assert code == 0 and out.strip() == "withdrew site hosp-b; its 1 block(s) leave future merges"
    code, out, _ = admin("sites", "--json", *k)
    states = {r["site"]: r["state"] for r in json.loads(out)}
    assert states["hosp-b"] == "withdrawn" and states["hosp-a"] == "active"
    assert all(r["last_seen"] for r in json.loads(out))
    code, out, _ = admin("sites", *k)
    assert "withdrawn: left" in out
    code, out, _ = admin("blocks", "--json", *k)
    assert [r["site"] for r in json.loads(out)] == [
        "hosp-a"
    ]  # a withdrawn site's blocks only with --withdrawn
    code, _, err = admin("card", "t1-v9", *k)
    assert code == 2 and "NOT_FOUND" in err and "t1-v9" in err
    code, out, err = admin("fuse", "--model", "t1-v1", *k)  # this coordinator has no SuperLink
    assert code == 1 and "UNIMPLEMENTED" in err and "SuperLink" in err


def test_bad_kits_and_callers_are_refused_with_one_line(
    consortium: Consortium, running: tuple[str, CoordinatorConfig], tmp_path: Path
) -> None:
    address, _ = running
    code, _, err = admin("status", "--kit", str(tmp_path / "nowhere"))
    assert code == 2 and "is not a folder" in err and len(err.strip().splitlines()) == 1
    code, _, err = admin(
        "status", "--kit", str(consortium.kit("hosp-a"))
    )  # a site kit has no admin.toml
    assert code == 2 and "admin.toml: not found" in err

    def dressed_as_admin(source: str) -> str:
        """The TLS files of another kit, with an admin.toml."""
        kit = tmp_path / f"{source}-as-admin"
        kit.mkdir()
        for f in ("tls.crt", "tls.key", "ca.crt"):
            (kit / f).write_bytes((consortium.kit(source) / f).read_bytes())
        (kit / "admin.toml").write_text(f'admin = "ops"\ncoordinator = "{address}"\n')
        return str(kit)

    code, _, err = admin("status", "--kit", dressed_as_admin("hosp-a"))  # a site's certificate
    assert code == 1 and "PERMISSION_DENIED" in err and "is a site" in err
    code, _, err = admin(
        "status", "--kit", dressed_as_admin("rogue")
    )  # another CA's: refused in the TLS handshake
    assert code == 1 and "UNAVAILABLE" in err and "no TLS session" in err
    # a revoked admin
    enroll_admin(consortium.ca, "ops-gone", tmp_path / "gone", coordinator=address)
    assert admin("status", "--kit", str(tmp_path / "gone"))[0] == 0
    consortium.ca.revoke("ops-gone")
    code, _, err = admin("status", "--kit", str(tmp_path / "gone"))
    assert code == 1 and "UNAUTHENTICATED" in err and "revoked" in err


class FakeRun:
    """A fuse runner that records its run as the ServerApp does (begin, a round at a time, finish),
    writes progress lines, and ends as told: a stored version, none stored, or a failure."""

    def __init__(self, cfg: CoordinatorConfig, end: Callable[[], str]) -> None:
        self.cfg, self.end = cfg, end
        self.started = threading.Event()
        self.starts: list[FuseStart] = []  # what each run was asked for

    def __call__(self, start: FuseStart, progress: Callable[[str], None], run_key: str) -> str:
        self.starts.append(start)
        registry = Registry.open(self.cfg, recover=False)
        try:
            fuse_run.begin(registry.store, run_key, start.model_id)
            history: list[RoundRecord] = []
            for r in (1, 2):
                progress(f"INFO mmlego: round {r} of {start.config.rounds}: 2 sites")
                history.append(
                    RoundRecord(
                        round=r,
                        sites=("hosp-b", "hosp-c"),
                        num_examples=80,
                        train_loss=1.0 / r,
                        seconds=0.1,
                        validation=RoundValidation(
                            value=0.6 + r / 100, parent=0.6, diff=r / 100, se_diff=0.01
                        ),
                    )
                )
                fuse_run.progress(registry.store, run_key, history)
                time.sleep(1.2)  # the servicer reads the record once a second
            try:
                model = self.end()
            except FuseError as exc:
                fuse_run.finish(
                    registry.store,
                    run_key,
                    "not-stored" if isinstance(exc, NotStored) else "failed",
                    reason=str(exc),
                )
                raise
            fuse_run.finish(registry.store, run_key, "stored", model, history=history)
            return model
        finally:
            registry.close()


@pytest.mark.parametrize("ending", ["stored", "not-stored", "failed"])
def test_admin_fuse_streams_rounds_and_ends_as_the_run_did(
    consortium: Consortium, tmp_path: Path, ending: str
) -> None:
    from coordinator.server import serve

    cfg = consortium.config(store=tmp_path / "store")

    def end() -> str:
        if ending == "stored":
            return "t1-v1"  # the merge stands in for the stored version
        if ending == "not-stored":
            raise NotStored("no round beat the parent t1-v1")
        raise FuseError("round 2: 0 of 2 paired sites answered")

    runner = FakeRun(cfg, end)
    with serve(cfg, fuse_runner=runner) as running:
        address = f"127.0.0.1:{running.port}"
        with AdminClient(AdminKit.load(consortium.kit("ops"), address)) as c:
            from tests.coordinator.conftest import TASK

            c.create_task(TASK)
        for site, modality, seed in (("hosp-a", "genes", 1), ("hosp-b", "clinical", 2)):
            with AdminClient(AdminKit(site, address, consortium.tls(site))) as c:
                c.push(
                    signed_block(consortium, site, tmp_path / site, modality=modality, seed=seed)
                )
        k = kit_args(consortium, address)
        assert admin("merge", "--task", "t1", *k)[0] == 0
        code, out, err = admin(
            "fuse",
            "--model",
            "t1-v1",
            "--rounds",
            "3",
            "--sites",
            "all",
            "--proximal-mu",
            "0.1",
            *k,
        )
        assert "round 1 of 3" in err and "round 2 of 3" in err  # the run's own lines
        (asked,) = runner.starts
        assert (asked.config.sites, asked.config.proximal_mu) == ("all", 0.1)
        assert (
            "round 1: 2 of 2 sites answered (hosp-b, hosp-c)" in err
            and "(+0.0200, standard error 0.0100)" in err
        )
        if ending == "stored":
            assert (
                code == 0
                and out.strip() == "created model version t1-v1 (LegoFuse of t1-v1, 2 rounds run)"
            )
        elif ending == "not-stored":
            assert (
                code == 0
                and out.strip() == "no fused version stored: no round beat the parent t1-v1"
            )
        else:
            assert (
                code == 1 and "FAILED_PRECONDITION" in err and "0 of 2 paired sites answered" in err
            )
        code, out, _ = admin("fuse-runs", "--json", *k)
        (run,) = json.loads(out)
        assert run["state"] == ending and [r["round"] for r in run["rounds"]] == [
            1,
            2,
        ]  # a failed run keeps its rounds
        assert (
            run["rounds"][1]["validation"] == pytest.approx(0.62) and run["rounds"][1]["asked"] == 2
        )
        code, out, _ = admin("fuse", "--model", "t1-v9", *k)
        assert code == 2
        code, _, err = admin(
            "fuse", "--model", "t1-v1", "--lr", "nan", *k
        )  # refused before a run starts
        assert code == 2 and "INVALID_ARGUMENT" in err and "lr must be a finite number" in err
        with AdminClient(AdminKit.load(consortium.kit("ops"), address)) as c:
            with pytest.raises(CallError) as refused:  # a client that does not check it first
                list(c.run_fuse(pb.FuseRequest(model_id="t1-v1", sites="every")))
        assert refused.value.code.name == "INVALID_ARGUMENT" and SITES_REFUSED in str(refused.value)
        assert len(json.loads(admin("fuse-runs", "--json", *k)[1])) == 1
        assert len(runner.starts) == 1


SITES_REFUSED = "fuse sites must be one of paired, all, got 'every'"


def test_an_unknown_fuse_sites_rule_ends_either_cli_with_one_line_naming_the_known_ones(
    tmp_path: Path,
) -> None:
    """Checked before anything else: no coordinator.toml, kit or coordinator is needed."""
    missing = str(tmp_path / "missing")
    for command in (
        ["coordinator", "fuse", "--model", "t1-v1", "--sites", "every", "--config", missing],
        ["admin", "fuse", "--model", "t1-v1", "--sites", "every", "--kit", missing],
    ):
        add_plugins()
        done = CliRunner().invoke(app, command)
        assert done.exit_code == 2 and done.stderr.strip() == f"mmlego: error: {SITES_REFUSED}", (
            command,
            done.stderr,
        )


def test_the_console_refuses_a_remote_address_without_its_flag_and_token(
    consortium: Consortium, running: tuple[str, CoordinatorConfig]
) -> None:
    k = kit_args(consortium, running[0])
    code, _, err = admin("console", *k, "--listen", "0.0.0.0:0")
    assert code == 2 and "--allow-remote" in err and len(err.strip().splitlines()) == 1
    code, _, err = admin("console", *k, "--listen", "0.0.0.0:0", "--allow-remote")
    assert code == 2 and "token" in err
    code, _, err = admin("console", *k, "--listen", "nowhere")
    assert code == 2 and "nowhere" in err


def test_ctrl_c_stops_following_a_fuse_run_not_the_run(
    consortium: Consortium, tmp_path: Path
) -> None:
    import signal
    import subprocess
    import sys

    from coordinator.server import serve
    from tests.coordinator.conftest import TASK

    cfg = consortium.config(store=tmp_path / "store")
    release = (
        threading.Event()
    )  # the run goes on until the follower has been stopped (however slow the machine)

    def end() -> str:
        release.wait(120)
        raise NotStored("no round beat the parent t1-v1")

    with serve(cfg, fuse_runner=FakeRun(cfg, end)) as running:
        address = f"127.0.0.1:{running.port}"
        with AdminClient(AdminKit.load(consortium.kit("ops"), address)) as c:
            c.create_task(TASK)
        with AdminClient(AdminKit("hosp-a", address, consortium.tls("hosp-a"))) as c:
            c.push(signed_block(consortium, "hosp-a", tmp_path / "a", seed=3))
        k = kit_args(consortium, address)
        assert admin("merge", "--task", "t1", *k)[0] == 0
        # As from a terminal: SIGINT unblocked and at Python's default in the follower, whatever an
        # earlier test left in this process (a blocked mask and an ignored signal are inherited).
        inherited = (
            f"SIGINT blocked here: {signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])}"
        )
        follow = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import signal; signal.pthread_sigmask(signal.SIG_UNBLOCK, "
                "[signal.SIGINT]); signal.signal(signal.SIGINT, signal.default_int_handler); "
                "from common.cli import run; run()",
                "admin",
                "fuse",
                "--model",
                "t1-v1",
                *k,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while (
                not json.loads(admin("fuse-runs", "--json", *k)[1]) and time.monotonic() < deadline
            ):
                time.sleep(0.2)  # the run has begun
            follow.send_signal(signal.SIGINT)
            _, err = follow.communicate(timeout=30)
        finally:
            follow.kill()
            release.set()
        assert follow.returncode == 130 and "stopped following the fuse run; it goes on" in err, (
            f"{inherited}\n{err}"
        )
        deadline = time.monotonic() + 30
        while (run := json.loads(admin("fuse-runs", "--json", *k)[1])[0])[
            "state"
        ] == "running" and time.monotonic() < deadline:
            time.sleep(0.3)
        assert (
            run["state"] == "not-stored" and len(run["rounds"]) == 2
        )  # the run went on to its end
