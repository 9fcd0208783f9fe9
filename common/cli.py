"""The ``mmlego`` command line: parses, validates, makes one call into library code.

Exit codes: 0 success, 1 a run failed, 2 bad usage or input (typer's own usage errors too),
3 an optional dependency is missing, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import typer

from .addresses import LOCAL_REGISTRY, LOCAL_SUPERLINK
from .version import code_version

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_MISSING_DEPENDENCY, EXIT_INTERRUPTED = 1, 2, 3, 130

app = typer.Typer(
    name="mmlego",
    help="Multimodal Lego (MM-Lego) across hospitals.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"mmlego: error: {message}", err=True)
    return typer.Exit(code)


@app.callback()
def main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
    log_format: str = typer.Option(
        "text",
        "--log-format",
        envvar="MMLEGO_LOG_FORMAT",
        help="text, or json: one JSON object per log line (for log collectors).",
    ),
) -> None:
    from .logs import configure

    try:
        configure(logging.INFO if verbose else logging.WARNING, log_format)
    except ValueError as exc:
        raise fail(str(exc), EXIT_BAD_INPUT) from None


@app.command()
def version() -> None:
    """Print the mmlego version."""
    typer.echo(f"mmlego {code_version()}")


def _load_dataset(name: str):  # type: ignore[no-untyped-def]
    from .data import DatasetUnavailable, load_builtin

    try:
        return load_builtin(name)
    except KeyError as exc:
        raise fail(str(exc.args[0]), EXIT_BAD_INPUT) from None
    except DatasetUnavailable as exc:
        raise fail(str(exc), EXIT_MISSING_DEPENDENCY) from None


def _dataset_names(text: str, folders: bool = False) -> list[str]:
    """Built-in dataset names (and with ``folders``, site data folders: paths holding data.toml)."""
    from .data import BUILTIN
    from .data.sitefolder import CONFIG_NAME

    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [
        n for n in names if n not in BUILTIN and not (folders and (Path(n) / CONFIG_NAME).is_file())
    ]
    if not names or unknown:
        also = " or a site data folder (a path holding data.toml)" if folders else ""
        raise fail(
            f"unknown dataset {unknown[0] if unknown else text!r}; "
            f"known: {', '.join(BUILTIN)}{also}",
            EXIT_BAD_INPUT,
        )
    return names


@app.command()
def demo(
    dataset: str = typer.Option("nki70", help="Built-in dataset to run on."),
    splits: int = typer.Option(5, min=1, max=20, help="Random 70/15/15 splits (seeds 0..N-1)."),
    epochs: int = typer.Option(50, min=1, help="Maximum training epochs per block."),
    fourier: str = typer.Option("2d", help="Fourier mode of the latent: 2d (paper) or 1d."),
) -> None:
    """Train one LegoBlock per modality on a real dataset, LegoMerge and LegoFuse them, and print
    the test metric of every model (mean +- std over splits)."""
    from .bench import demo as run_demo

    if fourier not in ("2d", "1d"):
        raise fail(f"--fourier must be 2d or 1d, got {fourier!r}", EXIT_BAD_INPUT)
    data = _load_dataset(dataset)
    typer.echo(
        f"{data.name}: {len(data)} patients, modalities {', '.join(data.modalities)}; "
        f"{splits} random 70/15/15 splits, a block trained per modality"
    )
    run_demo(dataset, splits, epochs, fourier, typer.echo)


datasets_app = typer.Typer(
    help="Built-in real datasets (list, export as site data folders), a synthetic slide cohort, "
    "and a check of any site data folder.",
    no_args_is_help=True,
)
app.add_typer(datasets_app, name="datasets")


@datasets_app.command("list")
def datasets_list() -> None:
    """Show every built-in dataset: size, events or classes, modalities, task, source, licence."""
    import numpy as np

    from .data import BUILTIN, DatasetUnavailable

    for name, entry in BUILTIN.items():
        try:
            d = entry.loader()
        except DatasetUnavailable as exc:
            typer.echo(
                f"{name:<13} not available ({str(exc).split('install it: ')[-1]})  "
                f"{entry.description}"
            )
            continue
        counts: Any = np.bincount(d.label) if d.label is not None else []
        target = (
            f"{int(d.event.sum())} events"
            if d.event is not None
            else f"{d.n_classes} classes ({' '.join(map(str, counts))})"
        )
        mods = " | ".join(
            f"{m} ({v.kind}, {v.n_features} features)" for m, v in d.modalities.items()
        )
        typer.echo(
            f"{name:<13} n={len(d):<5} {target:<22} {d.task:<14} {mods}; "
            f"from {entry.package} ({entry.licence})"
        )


@datasets_app.command("export")
def datasets_export(
    name: str = typer.Argument(..., help="Built-in dataset name."),
    out: Path = typer.Option(..., "--out", help="Folder to write (created)."),
    split_by: str | None = typer.Option(
        None,
        "--split-by",
        help="Write one site folder per value of this column "
        "(the dataset's group column, e.g. 'study' for ovarian).",
    ),
) -> None:
    """Write a built-in dataset in the site-folder format (data.toml + CSV files)."""
    from .data.export import export_by_group, export_site_folder

    data = _load_dataset(name)
    if split_by is not None:
        group = data.meta.get("group")
        if group is None or split_by not in (group, "group"):
            raise fail(
                f"dataset {name!r} cannot be split by {split_by!r}; "
                f"{'its group column is ' + repr(group) if group else 'it has no group column'}",
                EXIT_BAD_INPUT,
            )
        for folder in export_by_group(data, out):
            typer.echo(f"wrote {folder}")
        return
    typer.echo(f"wrote {export_site_folder(data, out)}")


@datasets_app.command("slides")
def datasets_slides(
    out: Path = typer.Option(..., "--out", help="Folder to write (created; must be empty)."),
    slides: int = typer.Option(
        200, "--slides", min=2, max=100_000, help="Slides (a few patients have two)."
    ),
    features: int = typer.Option(
        1024,
        "--features",
        min=1,
        max=8192,
        help="Features per instance (1024: UNI, ResNet50-trunc).",
    ),
    median_instances: int = typer.Option(
        6000, "--median-instances", min=1, help="Median instances (patches) per slide."
    ),
    max_instances: int = typer.Option(25000, "--max-instances", min=1, help="Largest slide."),
    genes: int = typer.Option(
        32, "--genes", min=0, help="Features of a genes table beside the slides (0: none)."
    ),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Write a SYNTHETIC whole-slide-image cohort (per-slide HDF5 feature files as CLAM / TRIDENT
    write them, a slides table, survival labels, a genes table): a bag folder to try and \
benchmark."""
    from .data.slidecohort import SlideCohort, write_slide_cohort

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise fail(f"{out} is not an empty folder; give a new --out", EXIT_BAD_INPUT)
    cohort = SlideCohort(
        slides=slides,
        features=features,
        median_instances=median_instances,
        max_instances=max(max_instances, median_instances),
        min_instances=min(100, median_instances),
        genes=genes,
        seed=seed,
    )
    typer.echo(
        f"wrote {write_slide_cohort(out, cohort)} "
        f"(synthetic: {cohort.patients} patients, {slides} slides)"
    )


def _cap(n: int) -> str:
    return f"at most {n}" if n else "all"


@datasets_app.command("check")
def datasets_check(
    folder: Path = typer.Argument(..., help="A site data folder (with data.toml)."),
) -> None:
    """Validate a site data folder and summarise it; a problem is reported with file, column, row
    (or slide). Bags of per-slide files are checked from the files' headers: no feature value \
is read."""
    import numpy as np

    from .data.bags import BagData
    from .data.errors import DataError
    from .data.sitefolder import load_site_folder

    try:
        data = load_site_folder(folder)
    except DataError as exc:
        raise fail(str(exc), EXIT_BAD_INPUT) from None
    target = (
        f"{int(data.event.sum())} events" if data.event is not None else f"{data.n_classes} classes"
    )
    typer.echo(f"{data.name}: {len(data)} patients, {data.task}, {target}")
    if data.holdout is not None:
        typer.echo(
            f"  split column: {int(data.holdout.sum())} validation patients "
            "(never trained on; the site scores model versions on them), "
            f"{int((~data.holdout).sum())} training patients"
        )
    for m, mod in data.modalities.items():
        if isinstance(mod, BagData):
            sizes = mod.sizes()[mod.sizes() > 0]
            slides = sum(len(b) for b in mod.bags)
            dtypes = sorted({s.dtype for b in mod.bags for s in b})
            typer.echo(
                f"  {m}: bag of {mod.n_features} features ({', '.join(dtypes)}), "
                f"{slides} slides of {sizes.size} patients; "
                f"instances per bag min {sizes.min()}, median {int(np.median(sizes))}, "
                f"max {sizes.max()} ({int(sizes.sum())} in all); "
                f"training reads {_cap(mod.max_instances)} instances of a bag each epoch "
                f"(a fresh random subset), evaluation {_cap(mod.eval_max_instances)}"
            )
            continue
        steps = f", up to {mod.x.shape[1]} steps" if mod.kind == "sequence" else ""
        typer.echo(
            f"  {m}: {mod.kind}, {mod.n_features} features{steps}, "
            f"present for {int(mod.present.sum())} patients"
        )


@app.command()
def bench(
    datasets: str = typer.Option(
        ",".join(("nki70", "gse7390", "ovarian", "pbc", "mfeat")),
        "--datasets",
        help=(
            "Comma-separated built-in datasets or site data folders (e.g. a bag folder of slides)."
        ),
    ),
    folds: int = typer.Option(
        5, "--folds", min=1, max=50, help="Repeated random 70/15/15 splits (seeds 0..N-1)."
    ),
    quick: bool = typer.Option(False, "--quick", help="One split and a few epochs (for CI)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    workers: int = typer.Option(
        2, "--workers", min=1, max=64, help="Parallel processes (each gets its share of the cores)."
    ),
    ablations: bool = typer.Option(
        False,
        "--ablations",
        help="Also LegoMerge without shared init and with the 1-D Fourier mode.",
    ),
    no_figure6: bool = typer.Option(
        False, "--no-figure6", help="Skip the patient-overlap experiment (Figure 6)."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Folder for results.json, results.md and the plots."
    ),
) -> None:
    """The paper's Table 2 and Figure 6 on the built-in real datasets (or your own site data \
folders)."""
    from .bench import BenchConfig, benchmark
    from .data import BUILTIN, DatasetUnavailable
    from .data.errors import DataError
    from .data.sitefolder import load_site_folder

    names = _dataset_names(datasets, folders=True)
    for n in names:
        try:
            BUILTIN[n].loader() if n in BUILTIN else load_site_folder(n)
        except DatasetUnavailable as exc:
            raise fail(str(exc), EXIT_MISSING_DEPENDENCY) from None
        except DataError as exc:
            raise fail(str(exc), EXIT_BAD_INPUT) from None
    try:
        from .train import resolve_device

        resolve_device(device)
    except (ValueError, RuntimeError) as exc:
        raise fail(f"--device: {exc}", EXIT_BAD_INPUT) from None
    cfg = BenchConfig.make(
        names, folds, quick=quick, device=device, ablations=ablations, figure6=not no_figure6
    )
    doc = benchmark(
        cfg, out, workers=workers, device=device, quick=quick, show_progress=sys.stderr.isatty()
    )
    typer.echo((out / "results.md").read_text())
    typer.echo(
        f"wrote {out / 'results.json'}, {out / 'results.md'} and {len(doc['meta']['plots'])} plots "
        f"in {doc['meta']['wall_seconds']:.0f} s"
    )


ca_app = typer.Typer(
    help="The consortium certificate authority: create it, enrol sites and operators, revoke.",
    no_args_is_help=True,
)
app.add_typer(ca_app, name="ca")
CA_DIR = typer.Option(Path("ca"), "--dir", help="The CA folder.")


def _ca(folder: Path):  # type: ignore[no-untyped-def]
    from .pki import CAError, CertificateAuthority

    try:
        return CertificateAuthority(folder)
    except CAError as exc:
        raise fail(str(exc), EXIT_BAD_INPUT) from None


def _pki_call(fn: Any, *args: Any, **kw: Any) -> Any:
    from .pki import CAError

    try:
        return fn(*args, **kw)
    except (CAError, ValueError, FileExistsError) as exc:
        raise fail(str(exc), EXIT_BAD_INPUT) from None


@ca_app.command("init")
def ca_init(
    folder: Path = CA_DIR,
    name: str = typer.Option("mmlego consortium CA", help="The CA's common name."),
    days: int = typer.Option(3650, min=1, help="Validity of the CA certificate."),
) -> None:
    """Create a new consortium CA (refuses to overwrite one)."""
    from .pki import CertificateAuthority

    _pki_call(CertificateAuthority.init, folder, name=name, days=days)
    typer.echo(
        f"created CA in {folder} (keep {folder / 'ca.key'} offline; hand out {folder / 'ca.crt'})"
    )


@ca_app.command("enroll")
def ca_enroll(
    site: str = typer.Argument(..., help="Site name (lower-case letters, digits, . _ -)."),
    modality: list[str] = typer.Option(
        ..., "--modality", help="A modality the site may upload; repeat for more."
    ),
    paired: bool = typer.Option(
        False, "--paired", help="The site holds paired data (takes part in LegoFuse rounds)."
    ),
    out: Path = typer.Option(..., "--out", help="New folder for the site kit."),
    coordinator: str = typer.Option(
        LOCAL_REGISTRY, help="Registry address written into site.toml."
    ),
    superlink: str = typer.Option(
        LOCAL_SUPERLINK, help="Flower SuperLink address written into site.toml."
    ),
    days: int = typer.Option(365, min=1),
    folder: Path = CA_DIR,
) -> None:
    """Issue a site kit: TLS certificate and key, CA certificate, signing key, Flower node key, \
site.toml."""
    from .pki import enroll_site

    kit = _pki_call(
        enroll_site,
        _ca(folder),
        site,
        modality,
        out,
        paired=paired,
        coordinator=coordinator,
        days=days,
        superlink=superlink,
    )
    typer.echo(
        f"wrote site kit for {site!r} "
        f"({', '.join(modality)}{', paired' if paired else ''}) to {kit}"
    )


@ca_app.command("enroll-admin")
def ca_enroll_admin(
    name: str = typer.Argument(..., help="Operator name."),
    out: Path = typer.Option(..., "--out"),
    coordinator: str = typer.Option(LOCAL_REGISTRY),
    days: int = typer.Option(365, min=1),
    folder: Path = CA_DIR,
) -> None:
    """Issue an operator (admin) kit."""
    from .pki import enroll_admin

    typer.echo(
        f"wrote admin kit for {name!r} to "
        f"{_pki_call(enroll_admin, _ca(folder), name, out, coordinator=coordinator, days=days)}"
    )


@ca_app.command("server-cert")
def ca_server_cert(
    name: str = typer.Argument("coordinator"),
    host: list[str] = typer.Option(
        ..., "--host", help="DNS name or IP address clients connect to; repeat for more."
    ),
    out: Path = typer.Option(..., "--out"),
    days: int = typer.Option(365, min=1),
    folder: Path = CA_DIR,
) -> None:
    """Issue the TLS server certificate of the coordinator (or a Flower SuperLink)."""
    from .pki import server_credentials

    written = _pki_call(server_credentials, _ca(folder), name, host, out, days=days)
    typer.echo(f"wrote server credentials for {', '.join(host)} to {written}")


@ca_app.command("renew")
def ca_renew(
    kit: Path = typer.Option(
        ..., "--kit", help="The site or admin kit folder whose TLS certificate to rotate."
    ),
    days: int = typer.Option(365, min=1),
    folder: Path = CA_DIR,
) -> None:
    """Rotate a kit's TLS certificate: new key and certificate, same identity; the old one is \
revoked."""
    from .pki import renew_kit

    old, new = _pki_call(renew_kit, _ca(folder), kit, days=days)
    typer.echo(
        f"rotated the TLS certificate in {kit}: serial {old} revoked, {new} issued; "
        f"{folder / 'crl.pem'} updated "
        "(restart the site's daemon to use it)"
    )


@ca_app.command("revoke")
def ca_revoke(
    who: str = typer.Argument(..., help="Name or serial number."), folder: Path = CA_DIR
) -> None:
    """Revoke a certificate and rewrite the revocation list (crl.pem)."""
    for e in _pki_call(_ca(folder).revoke, who):
        typer.echo(f"revoked {e.role} {e.name!r} (serial {e.serial}); {folder / 'crl.pem'} updated")


@ca_app.command("list")
def ca_list(folder: Path = CA_DIR) -> None:
    """Every certificate the CA issued, with its state."""
    for e in _ca(folder).issued():
        state = f"revoked {e.revoked_at}" if e.revoked_at else f"valid until {e.not_after}"
        extra = (
            f" modalities={','.join(e.modalities)}{' paired' if e.paired else ''}"
            if e.role == "site"
            else ""
        )
        typer.echo(f"{e.role:<6} {e.name:<20} serial={e.serial} {state}{extra}")


def add_plugins() -> None:
    """Command groups of the other packages (``mmlego coordinator``, ``mmlego site``), found through
    the ``mmlego.commands`` entry points so that ``common`` imports neither."""
    from importlib.metadata import entry_points

    known = {g.name for g in app.registered_groups}
    for ep in sorted(entry_points(group="mmlego.commands"), key=lambda e: e.name):
        if ep.name not in known:  # once, however often it is called
            app.add_typer(ep.load(), name=ep.name)


def run() -> None:
    """Console entry point."""
    add_plugins()
    app()


if __name__ == "__main__":
    run()
