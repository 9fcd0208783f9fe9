"""``mmlego admin ...``: operate the consortium from anywhere with an admin kit (mutual TLS with
the admin certificate; nothing of the coordinator's host is needed). Output, text and ``--json``,
is the host commands' own (:mod:`common.admin.render`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from common import fuse_options
from common.admin import render
from common.cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, fail
from common.evaluation.selection import HIERARCHY_HELP
from common.recipe_defaults import DEFAULT_HEAD_MERGE, DEFAULT_LATENT_MERGE, DEFAULT_POLICY

app = typer.Typer(
    help="Operate the consortium from anywhere with an admin kit (mutual TLS to the coordinator).",
    no_args_is_help=True,
)
task_app = typer.Typer(
    help="Tasks: what every block of a federation is trained for.", no_args_is_help=True
)
app.add_typer(task_app, name="task")
KIT = typer.Option(
    ..., "--kit", envvar="MMLEGO_ADMIN_KIT", help="The admin kit folder (mmlego ca enroll-admin)."
)
COORDINATOR = typer.Option(
    "", "--coordinator", help="host:port of the coordinator (default: the kit's admin.toml)."
)
JSON = typer.Option(False, "--json", help="Print JSON instead of text.")
BAD_INPUT_CODES = ("INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS")


@contextmanager
def connect(kit: Path, coordinator: str) -> Iterator[Any]:
    """An :class:`~common.admin.AdminClient` from the kit; a refused or failed call ends the
    command with one line (exit 2 for what the operator asked wrongly, 1 otherwise)."""
    from common.admin.client import AdminClient, AdminKit
    from common.client import CallError

    try:
        admin_kit = AdminKit.load(kit, coordinator)
    except ValueError as exc:
        raise fail(str(exc), EXIT_BAD_INPUT) from None
    client = AdminClient(admin_kit)
    try:
        yield client
    except CallError as exc:
        raise fail(
            f"the coordinator at {admin_kit.coordinator} refused or failed the call "
            f"({exc.code.name}): {exc.message}",
            EXIT_BAD_INPUT if exc.code.name in BAD_INPUT_CODES else EXIT_FAILED,
        ) from None
    finally:
        client.close()


def emit(data: Any, text: Callable[[Any], str], as_json: bool) -> None:
    typer.echo(json.dumps(data, indent=1) if as_json else text(data))


@app.command("status")
def status(kit: Path = KIT, coordinator: str = COORDINATOR, as_json: bool = JSON) -> None:
    """Tasks, sites, blocks and model versions (what `coordinator status` prints on the host)."""
    with connect(kit, coordinator) as c:
        emit(c.status(), render.render_status, as_json)


@task_app.command("create")
def task_create(
    file: Path = typer.Argument(..., help="task.toml: id, kind, outputs, latent, modalities."),
    kit: Path = KIT,
    coordinator: str = COORDINATOR,
) -> None:
    """Define a task (immutable once created)."""
    from common.tasks.taskfile import read_task_file

    try:
        task = read_task_file(file)
    except ValueError as exc:
        raise fail(str(exc), EXIT_BAD_INPUT) from None
    with connect(kit, coordinator) as c:
        typer.echo(render.created_task_line(c.create_task(task)))


@task_app.command("list")
def task_list(kit: Path = KIT, coordinator: str = COORDINATOR, as_json: bool = JSON) -> None:
    """Every task of the registry."""
    with connect(kit, coordinator) as c:
        tasks = c.tasks()
    if as_json:
        typer.echo(json.dumps([render.task_row(t) for t in tasks], indent=1))
    else:
        for t in tasks:
            typer.echo(render.task_line(t))


@app.command("sites")
def sites(kit: Path = KIT, coordinator: str = COORDINATOR, as_json: bool = JSON) -> None:
    """Every site: modalities, paired data, blocks, when it last called, withdrawn or active."""
    with connect(kit, coordinator) as c:
        emit(render.site_rows(c.sites()), render.render_sites, as_json)


@app.command("blocks")
def blocks(
    kit: Path = KIT,
    coordinator: str = COORDINATOR,
    as_json: bool = JSON,
    task: str = typer.Option("", help="Only this task's."),
    site: str = typer.Option("", help="Only this site's."),
    modality: str = typer.Option("", help="Only this modality's."),
    withdrawn: bool = typer.Option(
        False, "--withdrawn", help="Also the blocks of withdrawn sites."
    ),
) -> None:
    """Accepted blocks, newest first: patients, validation metric, size, signer, age."""
    with connect(kit, coordinator) as c:
        emit(
            render.block_rows(c.blocks(task, site, modality, withdrawn)),
            render.render_blocks,
            as_json,
        )


@app.command("versions")
def versions(
    kit: Path = KIT,
    coordinator: str = COORDINATOR,
    as_json: bool = JSON,
    task: str = typer.Option("", help="Only this task's."),
) -> None:
    """Model versions, newest first: recipe, lineage, the sites' validation."""
    with connect(kit, coordinator) as c:
        emit(render.version_rows(c.models(task)), render.render_versions, as_json)


@app.command("card")
def card(
    version: str = typer.Argument(..., help="A model version, e.g. nki70-v3."),
    kit: Path = KIT,
    coordinator: str = COORDINATOR,
    as_json: bool = JSON,
) -> None:
    """A model version's card: blocks, signers, recipe, what the sites' validation found."""
    from common.artifacts.modelcard import render_markdown

    with connect(kit, coordinator) as c:
        emit(c.model(version).card, render_markdown, as_json)


@app.command("merge")
def merge(
    task: str = typer.Option(..., "--task", help="The task whose latest blocks to merge."),
    kit: Path = KIT,
    coordinator: str = COORDINATOR,
    as_json: bool = JSON,
    policy: str = typer.Option(
        DEFAULT_POLICY,
        "--recipe",
        help="uniform, ensemble, or auto: the candidate the sites' validation supports.",
    ),
    deadline: float | None = typer.Option(
        None,
        min=0.0,
        help="Seconds to wait for the sites' scores (default: the "
        "coordinator's [evaluation] deadline_s); 0 publishes without asking them.",
    ),
    latent_merge: str = typer.Option(
        DEFAULT_LATENT_MERGE, help="The recipe's latent merge operator."
    ),
    head_merge: str = typer.Option(DEFAULT_HEAD_MERGE, help="The recipe's head merge operator."),
    hierarchy: str = typer.Option("auto", help=HIERARCHY_HELP),
) -> None:
    """Build a new model version from the latest accepted block of every (site, modality): the
    sites score the candidates on their validation patients first, and the card shows what they
    found."""
    with connect(kit, coordinator) as c:
        m = c.merge(
            task,
            latent_merge,
            head_merge,
            policy,
            deadline or 0.0,
            measure=deadline != 0,
            hierarchy=hierarchy,
        )
    if as_json:
        typer.echo(json.dumps(render.version_rows([m])[0], indent=1))
    else:
        typer.echo(render.created_version_line(m, f"card: mmlego admin card {m.model_id}"))


@app.command("fuse")
def fuse(
    model: str = fuse_options.MODEL,
    kit: Path = KIT,
    coordinator: str = COORDINATOR,
    as_json: bool = JSON,
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
    the model's modalities), following the run as it goes (its lines on stderr); the best round is
    stored only if it beats the parent on consortium validation. Ctrl-C stops following, not the
    run: `mmlego admin fuse-runs` shows how it ends."""
    from common.admin.client import NotStored
    from common.fuse_sites import check_fuse_sites
    from common.pb.mmlego.v1 import registry_pb2 as pb
    from common.records import FuseRound

    try:
        check_fuse_sites(sites)
    except ValueError as exc:
        raise fail(str(exc), EXIT_BAD_INPUT) from None

    request = pb.FuseRequest(
        model_id=model,
        rounds=rounds,
        epochs=epochs,
        patience=patience,
        deadline_s=deadline,
        mode=mode,
        lr=lr,
        proximal_mu=proximal_mu,
        expect_paired=expect_sites,
        unvalidated=unvalidated,
        folds=0 if folds is None else folds or -1,
        sites=sites,
        sites_per_round=sites_per_round,
    )
    seen: list[dict[str, Any]] = []
    outcome: dict[str, Any] = {"model": None, "parent": model}
    with connect(kit, coordinator) as c:
        try:
            for event in c.run_fuse(request):
                if isinstance(event, str):
                    typer.echo(event, err=True)
                elif isinstance(event, FuseRound):
                    seen.append(render.round_row(event))
                    typer.echo(f"mmlego admin: {render.round_line(seen[-1])}", err=True)
                else:
                    outcome["model"] = event.model_id
                    text = render.fused_line(
                        event.model_id,
                        model,
                        len(event.card.get("fuse", {}).get("rounds", [])) or len(seen),
                    )
        except NotStored as exc:
            outcome["reason"] = str(exc)
            text = render.not_fused_line(str(exc))
        except KeyboardInterrupt:
            raise fail(
                "stopped following the fuse run; it goes on at the coordinator "
                "(see: mmlego admin fuse-runs)",
                EXIT_INTERRUPTED,
            ) from None
    emit({**outcome, "rounds": seen}, lambda _: text, as_json)


@app.command("fuse-runs")
def fuse_runs(
    kit: Path = KIT,
    coordinator: str = COORDINATOR,
    as_json: bool = JSON,
    task: str = typer.Option("", help="Only this task's."),
    limit: int = typer.Option(20, min=1, max=500),
) -> None:
    """LegoFuse runs, newest first, with their rounds (a running one as far as it went)."""
    with connect(kit, coordinator) as c:
        emit(render.fuse_run_rows(c.fuse_runs(task, limit)), render.render_fuse_runs, as_json)


@app.command("withdraw")
def withdraw(
    site: str = typer.Argument(...),
    reason: str = typer.Option(..., help="Why (kept in the audit log)."),
    kit: Path = KIT,
    coordinator: str = COORDINATOR,
) -> None:
    """Remove a site's blocks from future merges (its data stays stored for audit)."""
    with connect(kit, coordinator) as c:
        typer.echo(render.withdrew_line(c.withdraw(site, reason)))


@app.command("evaluate")
def evaluate(
    model: list[str] = typer.Option(
        ..., "--model", help="A model version to score; repeat for more (one task)."
    ),
    kit: Path = KIT,
    coordinator: str = COORDINATOR,
    deadline: float = typer.Option(
        0.0, min=0.0, help="Seconds to wait (0: [evaluation] deadline_s)."
    ),
) -> None:
    """Ask the sites to score stored versions now (e.g. after new sites joined); their scores are
    kept with the versions and the task's recommended version follows them."""
    with connect(kit, coordinator) as c:
        job, results = c.evaluate(list(model), deadline)
        typer.echo(render.render_evaluate(job, results, c.recommended(job.job.task_id)))


@app.command("evaluations")
def evaluations(
    kit: Path = KIT,
    coordinator: str = COORDINATOR,
    as_json: bool = JSON,
    task: str = typer.Option("", help="Only this task."),
) -> None:
    """Evaluation jobs (newest first): what was asked, and which sites received, scored or
    declined it."""
    with connect(kit, coordinator) as c:
        emit(render.evaluation_rows(c.evaluations(task)), render.render_evaluations, as_json)


@app.command("console")
def console(
    kit: Path = KIT,
    coordinator: str = COORDINATOR,
    listen: str = typer.Option(
        "127.0.0.1:8765", help="host:port the console binds (loopback unless --allow-remote)."
    ),
    allow_remote: bool = typer.Option(
        False, "--allow-remote", help="Allow a non-loopback --listen (needs --token)."
    ),
    token: str = typer.Option(
        "",
        envvar="MMLEGO_CONSOLE_TOKEN",
        help="A secret of 16+ characters every browser must "
        "present (log in once with /login?token=...); needed with --allow-remote.",
    ),
) -> None:
    """A local web console of the consortium (overview, blocks, versions and cards, fuse runs live,
    plots), read from the coordinator with the admin kit, until Ctrl-C."""
    import signal
    import sys
    import threading

    from common.admin.client import AdminClient, AdminKit

    from .console import make_console

    try:
        admin_kit = AdminKit.load(kit, coordinator)
    except ValueError as exc:
        raise fail(str(exc), EXIT_BAD_INPUT) from None
    client = AdminClient(admin_kit)
    try:
        server = make_console(
            client,
            listen=listen,
            allow_remote=allow_remote,
            token=token,
            label=f"{admin_kit.name} → {admin_kit.coordinator}",
        )
    except (
        ValueError
    ) as exc:  # a bad address, a remote one without --allow-remote or a token, a port in use
        client.close()
        raise fail(str(exc), EXIT_BAD_INPUT) from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, name="console", daemon=True).start()
    typer.echo(
        f"mmlego admin console on {server.url} (coordinator {admin_kit.coordinator}, "
        f"as {admin_kit.name}); Ctrl-C stops it"
    )
    if token:
        typer.echo(f"log in once per browser: {server.url}login?token=<the token>")
    sys.stdout.flush()
    try:
        stop.wait()
    finally:
        server.shutdown()
        client.close()
    typer.echo("mmlego admin console stopped")
