"""``mmlego coordinator ...``: set up, serve, define tasks, merge and withdraw on the registry."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import typer

from common import fuse_options
from common.addresses import REGISTRY_PORT
from common.admin import render
from common.cli import EXIT_BAD_INPUT, EXIT_FAILED, fail
from common.evaluation.selection import HIERARCHY_HELP
from common.recipe_defaults import DEFAULT_HEAD_MERGE, DEFAULT_LATENT_MERGE, DEFAULT_POLICY

app = typer.Typer(
    help="The coordinator: the block registry (gRPC, mutual TLS), LegoMerge and model versions.",
    no_args_is_help=True,
)
task_app = typer.Typer(
    help="Tasks: what every block of a federation is trained for.", no_args_is_help=True
)
app.add_typer(task_app, name="task")
CONFIG = typer.Option(
    Path("coordinator.toml"), "--config", "-c", help="The coordinator's configuration file."
)


def _config(path: Path, insecure: bool | None = None) -> Any:
    from .config import load_config

    try:
        return load_config(path, insecure)
    except ValueError as exc:
        raise fail(str(exc), EXIT_BAD_INPUT) from None


def _registry(path: Path) -> Any:
    """The store of a (possibly running) coordinator, opened beside it: no recovery pass."""
    from .registry import Registry

    return Registry.open(_config(path), recover=False)


def _domain(fn: Any, *args: Any) -> Any:
    from .errors import RegistryError

    try:
        return fn(*args)
    except RegistryError as exc:
        raise fail(
            exc.message,
            EXIT_BAD_INPUT if exc.kind.name in ("INVALID", "NOT_FOUND", "EXISTS") else EXIT_FAILED,
        ) from None


@app.command("init")
def init(
    out: Path = typer.Option(
        ..., "--out", help="New folder for the coordinator's configuration and credentials."
    ),
    ca: Path = typer.Option(Path("ca"), "--ca", help="The consortium CA folder."),
    host: list[str] = typer.Option(
        ["127.0.0.1"], "--host", help="Name or address sites connect to; repeat for more."
    ),
    port: int = typer.Option(REGISTRY_PORT, min=0, max=65535),
    listen: str = typer.Option(
        "",
        help="host:port the registry binds (default: the first --host and --port; "
        f"0.0.0.0:{REGISTRY_PORT} on a server).",
    ),
    superlink: str = typer.Option(
        "", help="host:port of the Flower SuperLink beside the coordinator ([flower] superlink)."
    ),
    metrics: str = typer.Option(
        "", help="host:port of /metrics and /healthz (plain HTTP; default: off)."
    ),
) -> None:
    """Write server credentials, a ready coordinator.toml and a copy of the CA's revocation list
    (crl.pem)."""
    from common.pki import CAError, CertificateAuthority, server_credentials

    from .config import (
        CoordinatorFile,
        FlowerSection,
        MetricsSection,
        ServerSection,
        ServerTLSSection,
        render_config,
        split_address,
    )

    for what, value in (("--listen", listen), ("--superlink", superlink), ("--metrics", metrics)):
        if value:
            try:
                split_address(value)
            except ValueError as exc:
                raise fail(f"{what}: {exc}", EXIT_BAD_INPUT) from None
    try:
        authority = CertificateAuthority(ca)
        server_credentials(authority, "coordinator", host, out)
    except (CAError, ValueError, FileExistsError) as exc:
        raise fail(str(exc), EXIT_BAD_INPUT) from None
    # The revocation list travels to the coordinator's host as a copy: the CA folder (with ca.key)
    # never does.
    shutil.copyfile(ca / "crl.pem", out / "crl.pem")
    written = CoordinatorFile(  # the schema's defaults but for what the options name
        server=ServerSection(listen=listen or f"{host[0]}:{port}"),
        tls=ServerTLSSection(crl="crl.pem"),
        metrics=MetricsSection(listen=metrics),
        flower=FlowerSection(superlink=superlink) if superlink else FlowerSection(),
    )
    (out / "coordinator.toml").write_text(render_config(written))
    typer.echo(
        f"wrote {out / 'coordinator.toml'} (copy {ca / 'crl.pem'} to {out / 'crl.pem'} after every "
        f"revocation); start with: mmlego coordinator serve --config {out / 'coordinator.toml'}"
    )


@app.command("serve")
def serve(
    config: Path = CONFIG,
    insecure: bool = typer.Option(
        False, "--insecure", help="Plaintext, no TLS: only on a loopback address, for debugging."
    ),
) -> None:
    """Run the registry until SIGTERM or Ctrl-C."""
    from .server import serve_forever

    cfg = _config(config, insecure or None)
    try:
        serve_forever(cfg)
    except (ValueError, OSError, RuntimeError) as exc:
        raise fail(str(exc), EXIT_FAILED) from None


@task_app.command("create")
def task_create(
    file: Path = typer.Argument(..., help="task.toml: id, kind, outputs, latent, modalities."),
    config: Path = CONFIG,
) -> None:
    """Define a task (immutable once created)."""
    from common.tasks.taskfile import read_task_file

    try:
        task = read_task_file(file)
    except ValueError as exc:
        raise fail(str(exc), EXIT_BAD_INPUT) from None
    reg = _registry(config)
    try:
        t = _domain(reg.create_task, task, "operator")
    finally:
        reg.close()
    typer.echo(render.created_task_line(t))


@task_app.command("list")
def task_list(config: Path = CONFIG) -> None:
    """Every task of the registry."""
    reg = _registry(config)
    try:
        for t in reg.tasks():
            typer.echo(render.task_line(t))
    finally:
        reg.close()


@app.command("merge")
def merge(
    task: str = typer.Option(..., "--task", help="The task whose latest blocks to merge."),
    config: Path = CONFIG,
    policy: str = typer.Option(
        DEFAULT_POLICY,
        "--recipe",
        help="uniform, ensemble, or auto: the candidate the sites' validation supports.",
    ),
    deadline: float | None = typer.Option(
        None,
        min=0.0,
        help="Seconds to wait for the sites' scores (default: "
        "[evaluation] deadline_s); 0 publishes without asking them.",
    ),
    latent_merge: str = typer.Option(
        DEFAULT_LATENT_MERGE, help="The recipe's latent merge operator."
    ),
    head_merge: str = typer.Option(DEFAULT_HEAD_MERGE, help="The recipe's head merge operator."),
    hierarchy: str = typer.Option("auto", help=HIERARCHY_HELP),
) -> None:
    """Build a new model version from the latest accepted block of every (site, modality): the sites
    score the candidates on their validation patients first, and the card shows what they found."""
    reg = _registry(config)
    try:
        m = _domain(
            reg.merge,
            task,
            latent_merge,
            head_merge,
            "operator",
            policy,
            deadline or 0.0,
            lambda: False,
            deadline != 0,
            hierarchy,
        )
    finally:
        reg.close()
    typer.echo(
        render.created_version_line(m, f"card: {reg.store.models_dir / m.model_id / 'card.md'}")
    )


@app.command("evaluate")
def evaluate(
    model: list[str] = typer.Option(
        ..., "--model", help="A model version to score; repeat for more (one task)."
    ),
    config: Path = CONFIG,
    deadline: float = typer.Option(
        0.0, min=0.0, help="Seconds to wait (0: [evaluation] deadline_s)."
    ),
) -> None:
    """Ask the sites to score stored versions now (e.g. after new sites joined); their scores are
    kept with the versions and the task's recommended version follows them."""
    reg = _registry(config)
    try:
        status, results = _domain(reg.evaluate, list(model), deadline, "operator")
        rec = _domain(reg.recommended, status.job.task_id)
    finally:
        reg.close()
    typer.echo(render.render_evaluate(status, results, rec))


@app.command("evaluations")
def evaluations(
    config: Path = CONFIG,
    task: str = typer.Option("", help="Only this task."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Evaluation jobs (newest first): what was asked, and which sites received, scored or declined
    it."""
    import json

    reg = _registry(config)
    try:
        statuses = reg.evaluations.statuses(task)
    finally:
        reg.close()
    rows = render.evaluation_rows(statuses)
    typer.echo(json.dumps(rows, indent=1) if as_json else render.render_evaluations(rows))


@app.command("withdraw")
def withdraw(
    site: str = typer.Argument(...),
    reason: str = typer.Option(..., help="Why (kept in the audit log)."),
    config: Path = CONFIG,
) -> None:
    """Remove a site's blocks from future merges (its data stays stored for audit)."""
    reg = _registry(config)
    try:
        s = _domain(reg.withdraw, site, reason, "operator")
    finally:
        reg.close()
    typer.echo(render.withdrew_line(s))


@app.command("status")
def status(
    config: Path = CONFIG,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Summarise the store: tasks, sites, blocks and model versions (read beside a running
    coordinator)."""
    import json

    from .operations import status as summary

    reg = _registry(config)
    try:
        s = summary(reg)
    finally:
        reg.close()
    typer.echo(json.dumps(s, indent=1) if as_json else render.render_status(s))


@app.command("backup")
def backup(
    config: Path = CONFIG, out: Path = typer.Option(..., "--out", help="New folder for the backup.")
) -> None:
    """Back up the store while the coordinator serves: a consistent database snapshot, every blob
    it references (hash-checked), the Flower node registrations, and a manifest of hashes."""
    from .operations import BackupError
    from .operations import backup as run_backup

    try:
        m = run_backup(_config(config), out)
    except BackupError as exc:
        raise fail(str(exc), EXIT_FAILED) from None
    typer.echo(
        f"backup written to {out}: {len(m['files'])} files, {m['blobs']} blobs, schema "
        f"{m['schema']}"
    )


@app.command("restore")
def restore(
    config: Path = CONFIG,
    source: Path = typer.Option(..., "--from", help="A folder written by `coordinator backup`."),
) -> None:
    """Restore a backup into the (stopped) coordinator's empty store folder; every file is checked
    against the backup's manifest first, and every block re-hashed after."""
    from .operations import BackupError
    from .operations import restore as run_restore

    try:
        r = run_restore(_config(config), source)
    except BackupError as exc:
        raise fail(str(exc), EXIT_FAILED) from None
    typer.echo(
        f"restored the backup of {r['created_at']}: {r['tasks']} tasks, {r['versions']} model "
        f"versions, {r['blobs_verified']} blocks re-hashed"
    )


@app.command("superlink")
def superlink(config: Path = CONFIG) -> None:
    """Run the Flower SuperLink for LegoFuse rounds (TLS with the coordinator's certificate,
    SuperNode authentication), until SIGTERM / Ctrl-C."""
    import sys

    from common.flowerenv import flower_env

    from .flower import superlink_command

    cfg = _config(config)
    home = cfg.flower_home / "superlink"
    command = superlink_command(cfg, home / "superlink.db")
    typer.echo(f"starting the Flower SuperLink on {cfg.flower.superlink}")
    sys.stdout.flush()
    os.execve(
        command[0], command, flower_env(home)
    )  # the SuperLink replaces this process: signals reach it


@app.command("flower-register")
def flower_register(
    site: str = typer.Argument(..., help="The enrolled site."),
    key: Path = typer.Option(..., "--key", help="The site kit's flower-node.pub."),
    config: Path = CONFIG,
) -> None:
    """Let a site's SuperNode join LegoFuse rounds: register its node key, bound to the site's
    name."""
    from .flower import register_node
    from .fuse_rounds import FuseError

    cfg = _config(config)
    try:
        node_id = register_node(cfg, site, key)
    except (FuseError, FileNotFoundError) as exc:
        raise fail(str(exc), EXIT_FAILED) from None
    typer.echo(f"registered {site}'s Flower node key (node id {node_id})")


@app.command("fuse")
def fuse(
    model: str = fuse_options.MODEL,
    config: Path = CONFIG,
    rounds: int = fuse_options.ROUNDS,
    patience: int = fuse_options.PATIENCE,
    epochs: int = fuse_options.EPOCHS,
    mode: str = fuse_options.MODE,
    lr: float = fuse_options.LR,
    proximal_mu: float = fuse_options.PROXIMAL_MU,
    sites: str = fuse_options.SITES,
    sites_per_round: int = fuse_options.SITES_PER_ROUND,
    expect_sites: int = fuse_options.EXPECT_SITES,
    deadline: float = fuse_options.DEADLINE,
    unvalidated: bool = fuse_options.UNVALIDATED,
    folds: int | None = fuse_options.FOLDS,
) -> None:
    """Run LegoFuse rounds on the sites with paired data (--sites all: on every site holding one of
    the model's modalities); after every round the sites score the global model against the
    parent, the best round is kept, and it is stored only if it beats the parent on consortium
    validation (by more than [evaluation] z standard errors)."""
    from common.fuse import FuseConfig
    from common.fuse_sites import check_fuse_sites

    from .flower import fuse as run_fuse
    from .fuse_rounds import FuseError

    try:
        check_fuse_sites(sites)
    except ValueError as exc:
        raise fail(str(exc), EXIT_BAD_INPUT) from None
    cfg = _config(config)
    if not mode:  # the task decides
        registry = _registry(config)
        try:
            mode = _domain(lambda: registry.task(registry.model(model).task_id).fuse_mode)
        finally:
            registry.close()
    try:
        fuse_cfg = FuseConfig(
            mode=mode,
            rounds=rounds,
            epochs=epochs,
            lr=lr,
            proximal_mu=proximal_mu,
            patience=patience,
            folds=-1 if folds is None else folds,
            sites=sites,
            sites_per_round=sites_per_round,
        )
    except ValueError as exc:
        raise fail(str(exc), EXIT_BAD_INPUT) from None
    try:
        result = run_fuse(
            cfg,
            config,
            model,
            fuse_cfg,
            expect_sites or None,
            progress=lambda line: typer.echo(line, err=True),
            deadline_s=deadline,
            unvalidated=unvalidated,
        )
    except FuseError as exc:
        raise fail(str(exc), EXIT_FAILED) from None
    if result.model_id is None:
        typer.echo(render.not_fused_line(result.reason))
        return
    typer.echo(render.fused_line(result.model_id, model, result.detail.get("rounds", "?")))
