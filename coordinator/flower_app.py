"""The Flower ServerApp of LegoFuse rounds (started by the SuperLink for ``flwr run``): loads the
starting version from the registry's store, finds the sites that take part (``FuseConfig.sites``:
the paired ones, or every site holding one of the model's modalities), runs the rounds with
deadlines, has the sites score every round's global model against the parent (federated
evaluation through the registry), keeps the best round, and stores it as a new version only if it
beats the parent on consortium validation by more than ``[evaluation] z`` standard errors. Its
settings are :class:`coordinator.fuse_run.RunSettings` and :class:`common.fuse.FuseConfig`; what
happened is written to the run's record in the store (``fuse_runs``), where the operator's
``coordinator fuse`` reads it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from common.fuse import FuseConfig
from common.fuse.history import curve_to_json

from . import fuse_run
from .config import load_config
from .errors import RegistryError
from .fuse_rounds import (
    FuseError,
    GridTransport,
    NodeInfo,
    Privacy,
    discover,
    run_rounds,
    takes_part,
)
from .fusing import starting_model, store_fused
from .registry import Registry

log = logging.getLogger("mmlego.coordinator")
app = ServerApp()


def enrolled(registry: Registry, nodes: list[NodeInfo]) -> list[NodeInfo]:
    """Modalities and the paired flag as the site's certificate says (the registry saw it), not as
    the node says; nodes of sites the registry never saw, or withdrew, are left out."""
    out = []
    for n in nodes:
        site = registry.site(n.site)
        if site is None or site.withdrawn:
            log.warning(
                "node %s (%s) is not an active site of this registry; left out", n.node_id, n.site
            )
            continue
        out.append(NodeInfo(n.node_id, n.site, site.modalities, site.paired))
    return out


def parse_node_sites(text: str) -> dict[int, str]:
    out = {}
    for item in filter(None, text.split(",")):
        node, _, site = item.partition("=")
        out[int(node)] = site
    return out


def simulated_sites(partitions: str) -> set[str]:
    """The sites of a simulation engine's partition file (``RunSettings.partitions``); none
    without one."""
    if not partitions:
        return set()
    return {str(e["site"]) for e in json.loads(Path(partitions).read_text())}


def _progress_log() -> None:
    if (
        not log.handlers and not logging.getLogger().handlers
    ):  # the run's output (`flwr run --stream`) shows the rounds
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s mmlego: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


@app.main()
def main(grid: Grid, context: Context) -> None:
    _progress_log()
    rc = context.run_config
    settings, cfg = fuse_run.RunSettings.from_run_config(rc), FuseConfig.from_run_config(rc)
    config = load_config(Path(settings.coordinator_config))
    registry = Registry.open(config, recover=False)
    try:
        run(registry, grid, settings, cfg, simulation=config.flower.simulation)
    finally:
        registry.close()


def run(
    registry: Registry,
    grid: Grid,
    settings: fuse_run.RunSettings,
    cfg: FuseConfig,
    simulation: bool = False,
) -> None:
    """One fuse run; its outcome goes to the run's record (``settings.run_key``). ``simulation``
    (the coordinator's ``[flower] simulation``): nodes are admitted by the partition file, not by
    registered node keys; a deployment ignores a partition file in the run config."""
    store = registry.store
    fuse_run.begin(store, settings.run_key, settings.model_id)
    try:
        validated = registry.evaluating and not settings.unvalidated
        parent, start, cfg = starting_model(registry, settings.model_id, cfg, judged=validated)
        transport = GridTransport(grid)
        registered = parse_node_sites(
            settings.node_sites
        )  # from `mmlego coordinator flower-register`
        simulated = simulated_sites(settings.partitions) if simulation else set()

        def vet(claims: list[NodeInfo]) -> list[NodeInfo]:
            if (
                simulation
            ):  # the simulation engine: no node keys; its nodes are the sites of the partition file
                return enrolled(registry, [n for n in claims if n.site in simulated])
            for n in claims:
                if registered.get(n.node_id) != n.site:
                    log.warning(
                        "node %s says it is %s but its key is registered as %s; left out",
                        n.node_id,
                        n.site,
                        registered.get(n.node_id, "nobody"),
                    )
            return enrolled(registry, [n for n in claims if registered.get(n.node_id) == n.site])

        counts = takes_part(cfg.sites, start.modalities)
        nodes = discover(
            transport, settings.discovery_timeout, settings.expect_sites, vet=vet, counts=counts
        )
        taking_part = [n for n in nodes if counts(n)]
        log.info(
            "fuse %s: nodes %s; %s %s",
            parent.model_id,
            [n.site for n in nodes],
            "paired" if cfg.sites == "paired" else "taking part (sites = all)",
            [n.site for n in taking_part],
        )
        privacy = (
            Privacy(settings.dp_noise_multiplier, settings.dp_clipping_norm, settings.dp_delta)
            if settings.dp_clipping_norm > 0
            else None
        )
        judge = (
            fuse_run.RoundJudge(
                registry,
                registry.task(parent.task_id),
                parent,
                start,
                cfg.mode,
                settings.eval_deadline,
            )
            if validated
            else None
        )
        outcome = run_rounds(
            transport,
            taking_part,
            start,
            cfg,
            parent.model_id,
            settings.round_timeout,
            settings.min_sites,
            privacy,
            judge,
            on_round=lambda history: fuse_run.progress(store, settings.run_key, history),
        )
        curve = curve_to_json(outcome.history)
        if judge is not None:
            best, z = outcome.verdicts[outcome.best_round], registry.evaluation.z
            log.info(
                "fuse %s: best round %d: %+.4f over the parent (standard error %.4f)",
                parent.model_id,
                outcome.best_round,
                best.diff,
                best.se_diff,
            )
            if not best.bound(z) > 0:  # a NaN standard error proves nothing either
                reason = (
                    f"no round beat the parent {parent.model_id} on consortium validation by "
                    f"more than {z:g} standard errors (best: round {outcome.best_round}, "
                    f"{best.diff:+.4f}, standard error {best.se_diff:.4f}); "
                    "no fused version was stored"
                )
                fuse_run.finish(
                    store,
                    settings.run_key,
                    "not-stored",
                    reason=reason,
                    curve=curve,
                    rounds=len(outcome.history),
                    history=outcome.history,
                )
                print(f"mmlego fuse: not stored: {reason}", flush=True)
                return
            validation = {
                "evaluated": True,
                "kept_round": outcome.best_round,
                "z": z,
                "curve": curve,
                "reason": f"round {outcome.best_round}: {best.diff:+.4f} over the parent "
                f"(standard error {best.se_diff:.4f}), the best of {len(outcome.history)} rounds",
                "per_site": dict(best.summary().per_site),
            }
        else:
            why = (
                "--unvalidated"
                if settings.unvalidated
                else "federated evaluation is off ([evaluation] deadline_s = 0)"
            )
            validation = {
                "evaluated": False,
                "reason": f"not measured: {why}; the last of {len(outcome.history)} rounds",
            }
        record = store_fused(
            registry,
            parent,
            outcome,
            cfg,
            actor="flower-serverapp",
            privacy=outcome.privacy,
            validation=validation,
        )
        fuse_run.finish(
            store,
            settings.run_key,
            "stored",
            record.model_id,
            curve=curve,
            rounds=len(outcome.history),
            history=outcome.history,
        )
        print(f"mmlego fuse: stored {record.model_id}", flush=True)
    except (FuseError, RegistryError) as exc:
        reason = exc.message if isinstance(exc, RegistryError) else str(exc)
        fuse_run.finish(store, settings.run_key, "failed", reason=reason)
        print(f"mmlego fuse: failed: {reason}", flush=True)
        raise
    except BaseException as exc:  # a crash is recorded too, so the operator is not left guessing
        fuse_run.finish(
            store,
            settings.run_key,
            "failed",
            reason=f"{type(exc).__name__} in the ServerApp (its log has more)",
        )
        raise
