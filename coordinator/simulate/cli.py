"""``mmlego simulate``: the command."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from typing import Any

import typer

from common.cli import EXIT_BAD_INPUT, EXIT_FAILED, fail

app = typer.Typer(help="A whole consortium on this machine: coordinator, SuperLink and one site daemon per site.")


@app.callback(invoke_without_command=True)
def simulate(scenario: str = typer.Option("ovarian-4", "--scenario",
                                          help="A built-in scenario (ovarian-4, nki70-3, pbc-3, scale) or a scenario TOML file."),
             quick: bool = typer.Option(False, "--quick", help="Few epochs and a small latent: a fast end-to-end check."),
             out: Path | None = typer.Option(None, "--out", help="New folder for the run and its report (default: runs/SCENARIO-TIME)."),
             sites: int | None = typer.Option(None, "--sites", min=2, max=500, help="Number of sites (scale scenario only)."),
             parallel: int = typer.Option(8, "--parallel", min=1, max=500,
                                          help="At most this many sites train at once (each is a process of ~0.5 GB).")) -> None:
    """Run a simulated multi-site study end to end with the real system (processes on loopback,
    mutual TLS, SQLite, Flower) and write report.md, report.json and plots."""
    from common.client import CallError
    from common.tomlconfig import ConfigError

    from ..fuse_rounds import FuseError
    from .fleet import SimulationError
    from .report import build_report, write_report
    from .run import simulate as run_consortium
    from .scenario import load_scenario, partition, scale_scenario

    try:
        scn = scale_scenario(sites or 10, quick=quick) if scenario == "scale" else load_scenario(scenario, sites)
    except ConfigError as exc:
        raise fail(str(exc), EXIT_BAD_INPUT) from None
    if quick and scenario != "scale":
        scn = scn.quick()
    logging.getLogger("flwr").setLevel(logging.WARNING)  # the in-process baseline aggregates with Flower's FedAvg
    folder = out or Path("runs") / f"{scn.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise fail(f"{folder} is not an empty folder; give a new --out", EXIT_BAD_INPUT)
    t0 = time.monotonic()

    def say(line: str) -> None:
        typer.echo(line)

    def on_term(*_: Any) -> None:
        raise KeyboardInterrupt

    # Ctrl-C and SIGTERM both stop the run (SIGINT explicitly: a shell's background job starts with it ignored)
    previous = {sig: signal.signal(sig, on_term) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        typer.echo(f"scenario {scn.name}{' (quick)' if quick else ''}: {scn.spec.description}")
        part = partition(scn)
        loaded = time.monotonic() - t0
        run = run_consortium(scn, part, folder, say, parallel)
        say("measuring every model on the held-out test set" + (", with centralized references and the FedAvg baseline"
                                                                 if scn.spec.compare else ""))
        report = build_report(run, scn, part, {"load data and split": loaded})
        files = write_report(report, folder)
    except KeyboardInterrupt:
        raise fail("interrupted; every process of the run was stopped", 130) from None
    except (ConfigError, SimulationError) as exc:
        raise fail(str(exc), EXIT_BAD_INPUT if isinstance(exc, ConfigError) else EXIT_FAILED) from None
    except OSError as exc:  # e.g. the disk is full
        raise fail(f"{exc.filename or folder}: {exc.strerror or exc}", EXIT_FAILED) from None
    except (FuseError, CallError, RuntimeError, ValueError) as exc:  # a step of the run failed: its own message
        raise fail(f"{type(exc).__name__}: {exc} (logs in {folder / 'logs'})", EXIT_FAILED) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    failed = [name for name, ok in report["checks"].items() if not ok]
    typer.echo(f"done in {time.monotonic() - t0:.0f} s; report: {files[1]} (also {', '.join(f.name for f in files if f != files[1])})")
    if failed:
        raise fail(f"report checks failed: {'; '.join(failed)}", EXIT_FAILED)
