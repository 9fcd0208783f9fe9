"""``mmlego simulate``: the command."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from typing import Any

import typer

from common.cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, fail

app = typer.Typer(
    help="A whole consortium on this machine (or a Ray cluster): coordinator, SuperLink and the "
    "sites."
)


@app.callback(invoke_without_command=True)
def simulate(
    scenario: str = typer.Option(
        "ovarian-4",
        "--scenario",
        help="A built-in scenario (ovarian-4, nki70-3, pbc-3, ovarian-folders, slides-3, scale) "
        "or a scenario TOML file.",
    ),
    quick: bool = typer.Option(
        False, "--quick", help="Few epochs and a small latent: a fast end-to-end check."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="New folder for the run and its report (default: runs/SCENARIO-TIME)."
    ),
    sites: int | None = typer.Option(
        None, "--sites", min=2, max=1000, help="Number of sites (scale scenario only)."
    ),
    seeds: int | None = typer.Option(
        None,
        "--seeds",
        min=1,
        max=50,
        help="Repeat the whole run for seeds 0..N-1 (seed s tests on fold s % test_folds "
        "of every hospital, so seeds 0-4 test every patient once) and report "
        "means, standard deviations and paired intervals combined over them.",
    ),
    parallel: int = typer.Option(
        8,
        "--parallel",
        min=1,
        max=500,
        help="At most this many sites train at once (each is a process of ~0.5 GB; "
        "processes engine).",
    ),
    engine: str = typer.Option(
        "processes",
        "--engine",
        help="processes: every site is its own daemon process (SuperNode, ClientApps), "
        "the most faithful for a handful of sites. ray: the sites' training and "
        "evaluation are Ray tasks and LegoFuse runs on Flower's simulation engine, "
        "for hundreds of sites or a Ray cluster.",
    ),
    ray_address: str | None = typer.Option(
        None,
        "--ray-address",
        help="HOST:PORT of a running Ray cluster's head to attach to (ray "
        "engine); without it the run starts and stops a local Ray "
        "instance.",
    ),
    references_from: Path | None = typer.Option(
        None,
        "--references-from",
        help="An earlier run of the same scenario (with --seeds: the folder holding its seed-K "
        "folders) whose references (each hospital alone, FedAvg, the central ceiling) are read "
        "instead of trained again, after checking that they fit this run's test patients "
        "exactly; for changes to the federated side only.",
    ),
    settings: list[str] = typer.Option(
        [],
        "--set",
        metavar="KEY=VALUE",
        help="Change a top-level setting of the scenario (after --quick), e.g. --set "
        "fuse_sites=all (LegoFuse rounds on every site, not only the paired ones), --set "
        "proximal_mu=0.01 (FedProx), --set rounds=4; repeat for more.",
    ),
) -> None:
    """Run a simulated multi-site study end to end with the real system (processes on loopback,
    mutual TLS, SQLite, Flower) and write report.md, report.json and plots. Every model is compared
    on the same test patients, by paired differences with 95 % intervals; every choice is made on
    the sites' own patients only (out of fold, or a validation split)."""
    from common.client import CallError
    from common.tomlconfig import ConfigError
    from coordinator.fuse_rounds import FuseError

    from .fleet import SimulationError
    from .render import seeds_table, summarize, write_report, write_summary
    from .report import Measured, build_report
    from .reportfile import Report
    from .run import ENGINES
    from .run import simulate as run_consortium
    from .scenario import load_scenario, partition, scale_scenario

    if engine not in ENGINES:
        raise fail(f"--engine {engine!r} is not one of {', '.join(ENGINES)}", EXIT_BAD_INPUT)
    if ray_address is not None and engine != "ray":
        raise fail("--ray-address is for --engine ray", EXIT_BAD_INPUT)
    try:
        scn = (
            scale_scenario(sites or 10, quick=quick)
            if scenario == "scale"
            else load_scenario(scenario, sites)
        )
    except ConfigError as exc:
        raise fail(str(exc), EXIT_BAD_INPUT) from None
    if quick and scenario != "scale":
        scn = scn.quick()
    changes: dict[str, str] = {}
    for item in settings:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise fail(f"--set {item!r}: expected KEY=VALUE, e.g. fuse_sites=all", EXIT_BAD_INPUT)
        changes[key.strip()] = value.strip()
    if changes:
        try:
            scn = scn.with_settings(changes)
        except ConfigError as exc:
            raise fail(str(exc), EXIT_BAD_INPUT) from None
    if references_from is not None:
        needed = [
            references_from / (f"seed-{k}" if seeds is not None else "") / name
            for k in range(seeds or 1)
            for name in ("report.json", "test-scores.npz")
        ]
        missing = [str(p) for p in needed if not p.is_file()]
        if missing:
            raise fail(
                f"--references-from {references_from}: no earlier run there ({missing[0]} is "
                "missing)",
                EXIT_BAD_INPUT,
            )
    logging.getLogger("flwr").setLevel(
        logging.WARNING
    )  # the in-process baseline aggregates with Flower's FedAvg
    folder = out or Path("runs") / f"{scn.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise fail(f"{folder} is not an empty folder; give a new --out", EXIT_BAD_INPUT)
    t0 = time.monotonic()

    def say(line: str) -> None:
        typer.echo(line)

    def on_term(*_: Any) -> None:
        raise KeyboardInterrupt

    runs = (
        [(scn, folder)]
        if seeds is None
        else [(scn.with_seed(k), folder / f"seed-{k}") for k in range(seeds)]
    )
    reports: list[Report] = []
    measured: list[Measured] = []
    files: list[Path] = []
    # Ctrl-C and SIGTERM both stop the run (SIGINT explicitly: a shell's background job starts
    # with it ignored)
    previous = {sig: signal.signal(sig, on_term) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for one, where in runs:
            t = time.monotonic()
            typer.echo(
                f"scenario {one.name}{' (quick)' if quick else ''}, seed {one.spec.seed}: "
                f"{one.spec.description}"
            )
            part = partition(one)
            try:
                loaded = time.monotonic() - t
                run = run_consortium(
                    one, part, where, say, parallel, engine=engine, ray_address=ray_address
                )
                say(
                    "measuring every model on the held-out test patients"
                    + (
                        ", with the references: each hospital alone, "
                        "FedAvg over every site and over the paired "
                        "sites, and the central ceiling"
                        if one.spec.compare
                        else ""
                    )
                )
                earlier = None
                if references_from is not None:
                    earlier = (
                        references_from
                        if seeds is None
                        else references_from / f"seed-{one.spec.seed}"
                    )
                report, scores = build_report(
                    run, one, part, {"load data and split": loaded}, earlier
                )
                reports.append(report)
                measured.append(scores)
            finally:
                part.close()
            files = write_report(reports[-1], where, measured[-1])
        if seeds is not None:
            files = write_summary(summarize(reports, measured), folder)
    except KeyboardInterrupt:
        raise fail("interrupted; every process of the run was stopped", EXIT_INTERRUPTED) from None
    except (ConfigError, SimulationError) as exc:
        raise fail(
            str(exc), EXIT_BAD_INPUT if isinstance(exc, ConfigError) else EXIT_FAILED
        ) from None
    except OSError as exc:  # e.g. the disk is full
        raise fail(f"{exc.filename or folder}: {exc.strerror or exc}", EXIT_FAILED) from None
    except (
        FuseError,
        CallError,
        RuntimeError,
        ValueError,
    ) as exc:  # a step of the run failed: its own message
        raise fail(f"{type(exc).__name__}: {exc} (logs in {folder})", EXIT_FAILED) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if reports[0].summary:
        typer.echo("")
        typer.echo("\n".join(seeds_table(summarize(reports, measured))))
        typer.echo("")
    failed = sorted(
        {f"seed {r.seed}: {name}" for r in reports for name, ok in r.checks.items() if not ok}
    )
    also = ", ".join(f.name for f in files if f != files[1])
    typer.echo(f"done in {time.monotonic() - t0:.0f} s; report: {files[1]} (also {also})")
    if failed:
        raise fail(f"report checks failed: {'; '.join(failed)}", EXIT_FAILED)
