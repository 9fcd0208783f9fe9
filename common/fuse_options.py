"""The options of a LegoFuse run, spelt once for the two commands that start one
(``mmlego coordinator fuse`` on the coordinator's machine, ``mmlego admin fuse`` over the
admin API); torch-free, like the CLIs that read it."""

from __future__ import annotations

import typer

from .fuse_sites import DEFAULT_FUSE_SITES

MODEL = typer.Option(..., "--model", help="The merge or ensemble version to fine-tune.")
ROUNDS = typer.Option(
    6, min=1, help="The most rounds; the best round on consortium validation is kept."
)
PATIENCE = typer.Option(
    2, min=1, help="Stop after this many rounds without a better validation metric."
)
EPOCHS = typer.Option(1, min=1, help="Local epochs per round at each site.")
MODE = typer.Option("", help="stack or weave (default: the task's fuse_mode)")
LR = typer.Option(5e-4, min=0.0, help="Learning rate of the sites' local training.")
PROXIMAL_MU = typer.Option(
    0.0, min=0.0, help="> 0: FedProx, mu/2 ||w - w_global||^2 in the sites' local training."
)
SITES = typer.Option(
    DEFAULT_FUSE_SITES,
    "--sites",
    help="Who trains: paired (the sites with paired data, on their patients having every "
    "modality of the model they hold) or all (every site holding one of the model's "
    "modalities, on its patients having one; its SuperNode must run).",
)
SITES_PER_ROUND = typer.Option(
    0,
    min=0,
    help="At most this many of the sites taking part train in each round, in a seeded rotation "
    "fair over rounds (0: every one).",
)
EXPECT_SITES = typer.Option(
    0,
    "--expect-sites",
    "--expect-paired",
    min=0,
    help="Sites taking part to wait for before the first round (default: the "
    "coordinator's flower.expect_sites, else min_sites).",
)
DEADLINE = typer.Option(
    0.0,
    min=0.0,
    help="Seconds the sites get to score each round (0: evaluation.deadline_s of the "
    "coordinator's configuration).",
)
UNVALIDATED = typer.Option(
    False,
    "--unvalidated",
    help="Do not ask the sites to score rounds: run every round "
    "and store the last, marked as not measured.",
)
FOLDS = typer.Option(
    None,
    min=0,
    help="Fold runs beside the full run, so that the sites score every "
    "round out of fold (default: as many as the parent's blocks were cross-fitted "
    "with; 0: none).",
)
