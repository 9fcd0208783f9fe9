"""The ``mmlego`` command line: parses, validates, makes one call into library code.

Exit codes: 0 success, 1 a run failed, 2 bad usage or input (typer's own usage errors too),
3 an optional dependency is missing.
"""

from __future__ import annotations

import logging
import sys

import typer

from .version import code_version

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_MISSING_DEPENDENCY = 1, 2, 3

app = typer.Typer(name="mmlego", help="Multimodal Lego (MM-Lego) across hospitals.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


def fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"mmlego: error: {message}", err=True)
    return typer.Exit(code)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details.")) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
def version() -> None:
    """Print the mmlego version."""
    typer.echo(f"mmlego {code_version()}")


@app.command()
def demo(
    dataset: str = typer.Option("nki70", help="Built-in dataset to run on."),
    splits: int = typer.Option(5, min=1, max=20, help="Random 70/15/15 splits (seeds 0..N-1)."),
    epochs: int = typer.Option(50, min=1, help="Maximum training epochs per block."),
    fourier: str = typer.Option("2d", help="Fourier mode of the latent: 2d (paper) or 1d."),
) -> None:
    """Train one LegoBlock per modality on a real dataset, LegoMerge and LegoFuse them, and print
    the test metric of every model (mean +- std over splits)."""
    from dataclasses import replace

    from .data import DatasetUnavailable, load_builtin
    from .experiment import ExperimentConfig, run_split, summarise

    if fourier not in ("2d", "1d"):
        raise fail(f"--fourier must be 2d or 1d, got {fourier!r}", EXIT_BAD_INPUT)
    try:
        data = load_builtin(dataset)
    except KeyError as exc:
        raise fail(str(exc.args[0]), EXIT_BAD_INPUT) from None
    except DatasetUnavailable as exc:
        raise fail(str(exc), EXIT_MISSING_DEPENDENCY) from None
    cfg = ExperimentConfig(fourier=fourier)
    cfg = replace(cfg, train=replace(cfg.train, epochs=epochs))
    typer.echo(f"{data.name}: {len(data)} patients, modalities {', '.join(data.modalities)}; "
               f"{splits} random 70/15/15 splits, blocks trained per modality on CPU/GPU as available")
    results = []
    for seed in range(splits):
        res = run_split(data, seed, cfg, progress=sys.stderr.isatty())
        results.append(res)
        typer.echo(f"  split {seed}: " + "  ".join(f"{k} {v:.3f}" for k, v in res.test.items()))
    summary = summarise(results)
    metric = results[0].metric
    width = max(len(m) for m in summary)
    typer.echo(f"\ntest {metric}, mean +- std over {splits} splits")
    for method, (mean, std) in summary.items():
        typer.echo(f"  {method:<{width}}  {mean:.3f} +- {std:.3f}")
    best_block = max((v for k, v in summary.items() if k.startswith("block:")), key=lambda t: t[0])
    typer.echo(f"  merge uplift vs best block: {summary['legomerge'][0] - best_block[0]:+.3f}")


def run() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":
    run()
