"""The Flower ServerApp of LegoFuse rounds (started by the SuperLink for ``flwr run``): loads the
merge version from the registry's store, finds the paired sites, runs the rounds with deadlines
and stores the fused version. Run config keys: model-id, coordinator-config, mode, rounds, epochs,
lr, batch-size, proximal-mu, seed, min-sites, round-timeout, discovery-timeout, expect-paired,
node-sites ("<node id>=<site>,...": who registered each node key; a node claiming another site is left out),
dp-clipping-norm, dp-noise-multiplier and dp-delta (central DP when the norm is > 0)."""

from __future__ import annotations

import logging
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from common.fuse import FuseConfig

from .config import load_config
from .fuse_rounds import FuseError, GridTransport, NodeInfo, Privacy, discover, run_rounds
from .fusing import starting_model, store_fused
from .registry import Registry

log = logging.getLogger("mmlego.coordinator")
app = ServerApp()


def enrolled(registry: Registry, nodes: list[NodeInfo]) -> list[NodeInfo]:
    """Modalities and the paired flag as the site's certificate says (the registry saw it), not as
    the node says; nodes of sites the registry never saw, or withdrew, are left out."""
    out = []
    for n in nodes:
        site = registry.store.db.site(n.site)
        if site is None or site.withdrawn:
            log.warning("node %s (%s) is not an active site of this registry; left out", n.node_id, n.site)
            continue
        out.append(NodeInfo(n.node_id, n.site, site.modalities, site.paired))
    return out


def parse_node_sites(text: str) -> dict[int, str]:
    out = {}
    for item in filter(None, text.split(",")):
        node, _, site = item.partition("=")
        out[int(node)] = site
    return out


@app.main()
def main(grid: Grid, context: Context) -> None:
    if not log.handlers and not logging.getLogger().handlers:  # the run's output (`flwr run --stream`) shows the rounds
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s mmlego: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    rc = context.run_config
    cfg = FuseConfig(mode=str(rc.get("mode", "stack")), rounds=int(rc.get("rounds", 2)), epochs=int(rc.get("epochs", 1)),
                     lr=float(rc.get("lr", 5e-4)), batch_size=int(rc.get("batch-size", 32)),
                     proximal_mu=float(rc.get("proximal-mu", 0.0)), seed=int(rc.get("seed", 0)))
    registry = Registry.open(load_config(Path(str(rc["coordinator-config"]))), recover=False)
    try:
        parent, start = starting_model(registry, str(rc["model-id"]), cfg)
        transport = GridTransport(grid)
        min_sites = int(rc.get("min-sites", 1))
        registered = parse_node_sites(str(rc.get("node-sites", "")))  # from `mmlego coordinator flower-register`

        def vet(claims: list[NodeInfo]) -> list[NodeInfo]:
            for n in claims:
                if registered.get(n.node_id) != n.site:
                    log.warning("node %s says it is %s but its key is registered as %s; left out", n.node_id, n.site,
                                registered.get(n.node_id, "nobody"))
            return enrolled(registry, [n for n in claims if registered.get(n.node_id) == n.site])

        nodes = discover(transport, float(rc.get("discovery-timeout", 60)), int(rc.get("expect-paired", min_sites)), vet=vet)
        paired = [n for n in nodes if n.paired]
        log.info("fuse %s: nodes %s; paired %s", parent.model_id, [n.site for n in nodes], [n.site for n in paired])
        clip = float(rc.get("dp-clipping-norm", 0.0))
        privacy = Privacy(float(rc.get("dp-noise-multiplier", 0.0)), clip, float(rc.get("dp-delta", 1e-5))) if clip > 0 else None
        outcome = run_rounds(transport, paired, start, cfg, parent.model_id, float(rc.get("round-timeout", 600)),
                             min_sites, privacy)
        record = store_fused(registry, parent, outcome, cfg, actor="flower-serverapp",
                             privacy=outcome.privacy)
        print(f"mmlego fuse: stored {record.model_id}", flush=True)
    except FuseError as exc:
        print(f"mmlego fuse: failed: {exc}", flush=True)
        raise
    finally:
        registry.close()
