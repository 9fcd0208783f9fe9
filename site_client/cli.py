"""``mmlego site ...``: train, push, pull and predict at a hospital site."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from common.cli import EXIT_BAD_INPUT, EXIT_FAILED, fail

app = typer.Typer(
    help="A hospital site: train blocks on local data, push them, pull and use model versions.",
    no_args_is_help=True,
)
CONFIG = typer.Option(
    Path("site.toml"), "--config", "-c", help="The site's site.toml (from its enrolment kit)."
)


def _config(path: Path) -> Any:
    from .config import ConfigError, load_site_config

    try:
        return load_site_config(path)
    except ConfigError as exc:
        raise fail(str(exc), EXIT_BAD_INPUT) from None


def _client(cfg: Any) -> Any:
    from common.client import RegistryClient

    try:
        return RegistryClient(cfg.coordinator, cfg.tls, insecure=cfg.insecure)
    except FileNotFoundError as exc:
        raise fail(str(exc), EXIT_BAD_INPUT) from None


def _call(fn: Any, *args: Any, **kw: Any) -> Any:
    """Run a client call; refused calls and bad files become one line and an exit code."""
    from common.artifacts import IntegrityError, SignatureError
    from common.client import CallError
    from common.data.errors import DataError

    try:
        return fn(*args, **kw)
    except CallError as exc:
        raise fail(f"coordinator: {exc}", EXIT_FAILED) from None
    except (
        IntegrityError,
        SignatureError,
        DataError,
        FileNotFoundError,
        FileExistsError,
        ValueError,
    ) as exc:
        raise fail(str(exc), EXIT_BAD_INPUT) from None


@app.command("train")
def train(
    config: Path = CONFIG,
    task: str = typer.Option("", help="Task id (default: site.toml's task)."),
    data: Path = typer.Option(None, help="Site data folder (default: site.toml's data)."),
) -> None:
    """Train, sign and write one block per enrolled modality (the task comes from the
    coordinator)."""
    from common.data.sitefolder import load_site_folder

    from .train import train_site

    cfg = _config(config)
    task_id = task or cfg.task
    if not task_id:
        raise fail('no task: pass --task or set task = "..." in site.toml', EXIT_BAD_INPUT)
    dataset = _call(
        load_site_folder, data or cfg.data
    )  # local problems first, before any network call
    with _client(cfg) as client:
        record = _call(client.task, task_id)
    for tb in _call(train_site, cfg, record, dataset):
        how = "out-of-fold" if cfg.evaluation.folds else "validation"
        typer.echo(
            f"trained block {tb.modality}: {how} {record.spec.metric_name} {tb.val_metric:.3f} -> "
            f"{tb.folder}"
        )


@app.command("push")
def push(
    block: list[Path] = typer.Argument(..., help="Block folder(s) to upload."),
    config: Path = CONFIG,
    attempts: int = typer.Option(
        8, min=1, help="Tries per block (back-off with jitter between them)."
    ),
) -> None:
    """Upload signed blocks; interrupted uploads resume where the coordinator stopped."""
    from common.client import Retry

    cfg = _config(config)
    with _client(cfg) as client:
        for folder in block:
            rec, present = _call(client.push, folder, Retry(attempts=attempts))
            typer.echo(
                f"{'already stored' if present else 'accepted'}: block {rec.block_id} "
                f"({rec.modality}, {rec.size} bytes)"
            )


@app.command("pull")
def pull(
    model: str = typer.Argument("", help="Model version id, e.g. nki70-v1 (or --recommended)."),
    config: Path = CONFIG,
    out: Path = typer.Option(..., "--out", help="New folder for the model."),
    recommended: bool = typer.Option(
        False,
        "--recommended",
        help="The version recommended for this site's patients (site.toml's task, or --task): "
        "the consortium's best on validation, unless this site's own out-of-fold evidence "
        "favours another.",
    ),
    task: str = typer.Option("", help="The task of --recommended (default: site.toml's task)."),
) -> None:
    """Download a model version and its blocks; every hash and signature is checked."""
    cfg = _config(config)
    if recommended == bool(model):
        raise fail("name a model version or pass --recommended (not both)", EXIT_BAD_INPUT)
    with _client(cfg) as client:
        if recommended:
            if not (task or cfg.task):
                raise fail(
                    '--recommended needs a task: pass --task or set task = "..." in site.toml',
                    EXIT_BAD_INPUT,
                )
            rec_ = _call(client.recommended, task or cfg.task, cfg.site)
            typer.echo(f"recommended: {rec_.model.model_id} ({rec_.reason})")
            model = rec_.model.model_id
        rec = _call(client.pull_model, model, out)
    typer.echo(f"pulled {rec.model_id} ({len(rec.block_ids)} blocks, {rec.recipe.kind}) to {out}")


@app.command("evaluate")
def evaluate(
    config: Path = CONFIG,
    wait: float = typer.Option(
        0.0, min=0.0, help="Wait up to this many seconds for a job when none is open yet."
    ),
) -> None:
    """Answer the coordinator's open evaluation jobs once (what the daemon does every [evaluation]
    poll_s): score the candidates on this site's validation patients and send pair counts only."""
    import time

    from common.data.sitefolder import load_site_folder

    from .evaluate import evaluate_pending

    cfg = _config(config)
    data = _call(load_site_folder, cfg.data)  # local problems first
    end = time.monotonic() + wait
    with _client(cfg) as client:
        while True:
            answers = _call(evaluate_pending, cfg, client, data)
            if answers or time.monotonic() >= end:
                break
            time.sleep(min(2.0, max(0.1, end - time.monotonic())))
    for a in answers:
        typer.echo(
            f"{a.job_id}: "
            + (f"declined ({a.declined})" if a.declined else f"scored {a.scored} candidates")
        )
    if not answers:
        typer.echo("no open evaluation job for this site")


@app.command("predict")
def predict(
    model: Path = typer.Option(..., "--model", help="A folder written by `mmlego site pull`."),
    data: Path = typer.Option(
        ..., "--data", help="A site data folder (data.toml); outcome columns are not needed."
    ),
    out: Path = typer.Option(..., "--out", help="CSV to write."),
) -> None:
    """Predict for every patient that has at least one of the model's modalities."""
    from common.data.sitefolder import load_site_folder
    from common.fileio import atomic_write

    from .predict import predict_frame

    frame = _call(predict_frame, model, _call(load_site_folder, data, outcomes=False))
    atomic_write(out, frame.to_csv(index=False).encode())
    typer.echo(f"wrote {len(frame)} predictions of {frame.attrs['model_id']} to {out}")


@app.command("supernode")
def supernode(config: Path = CONFIG) -> None:
    """Run this site's Flower SuperNode (LegoFuse rounds) until SIGTERM / Ctrl-C; the node key
    must have been registered by the operator (mmlego coordinator flower-register)."""
    import os
    import sys

    from common.flowerenv import flower_env

    from .flower import supernode_command

    cfg = _config(config)
    try:
        command = supernode_command(cfg)
    except FileNotFoundError as exc:
        raise fail(str(exc), EXIT_BAD_INPUT) from None
    typer.echo(f"starting the Flower SuperNode of {cfg.site} (SuperLink {cfg.flower.superlink})")
    sys.stdout.flush()
    os.execve(command[0], command, flower_env(cfg.state / "flower"))  # signals reach the SuperNode


@app.command("run")
def run(
    config: Path = CONFIG,
    once: bool = typer.Option(
        False, "--once", help="Train and push what is missing, then exit (no SuperNode)."
    ),
) -> None:
    """The site daemon: train the block(s) if there is no current one, push them, and on a paired
    site (or with [flower] supernode = true) keep a Flower SuperNode running for LegoFuse rounds.
    SIGTERM / Ctrl-C stop it cleanly. Logs are JSON lines on stderr."""
    import signal
    import threading

    from .daemon import Daemon

    cfg = _config(config)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    raise typer.Exit(Daemon(cfg, stop, once=once).run())


def _recommended(cfg: Any) -> Any:
    from common.client import CallError

    try:
        with _client(cfg) as client:
            return client.recommended(cfg.task)
    except CallError:
        return None


@app.command("status")
def status(config: Path = CONFIG) -> None:
    """This site's blocks (local and in the registry) and the task's latest model versions."""
    from .train import current_blocks

    cfg = _config(config)
    if not cfg.task:
        raise fail('no task: set task = "..." in site.toml', EXIT_BAD_INPUT)
    local = current_blocks(cfg, cfg.task)
    with _client(cfg) as client:
        remote = {b.block_id: b for b in _call(client.blocks, cfg.task, cfg.site, "", True)}
        models = _call(client.models, cfg.task)
    typer.echo(
        f"site {cfg.site} ({', '.join(cfg.modalities)}{', paired' if cfg.paired else ''}); task "
        f"{cfg.task}; coordinator {cfg.coordinator}"
    )
    from common.artifacts import read_block_files

    for modality, folder in sorted(local.items()):
        block_id = read_block_files(folder).manifest.weights_sha256
        state = remote[block_id].state if block_id in remote else "not pushed"
        typer.echo(f"  block {modality:<12} {block_id[:16]}  {state:<10} {folder}")
    for modality in [m for m in cfg.modalities if m not in local]:
        typer.echo(f"  block {modality:<12} (none trained yet)")
    for m in models[:5]:
        val = m.metrics.get("val_metric")
        typer.echo(
            f"  model {m.model_id:<16} {m.recipe.kind:<8} {len(m.block_ids)} blocks  "
            + (f"validation {val:.4f}  " if val is not None else "not measured  ")
            + m.created_at
        )
    if not models:
        typer.echo("  no model versions yet")
    else:
        rec = _recommended(cfg)
        if rec is not None:
            typer.echo(f"  recommended: {rec.model.model_id}")
