"""The Flower ServerApp of LegoFuse rounds (started by the SuperLink for ``flwr run``): loads the
merge version from the registry's store, finds the paired sites, runs the rounds with deadlines
and stores the fused version. Run config keys: model-id, coordinator-config, mode, rounds, epochs,
lr, batch-size, proximal-mu, seed, min-sites, round-timeout, discovery-timeout, expect-paired."""

from __future__ import annotations

import logging
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from common.fuse import FuseConfig

from .config import load_config
from .fuse_rounds import FuseError, GridTransport, discover, run_rounds
from .fusing import starting_model, state_of, store_fused
from .registry import Registry

log = logging.getLogger("mmlego.coordinator")
app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    rc = context.run_config
    cfg = FuseConfig(mode=str(rc.get("mode", "stack")), rounds=int(rc.get("rounds", 2)), epochs=int(rc.get("epochs", 1)),
                     lr=float(rc.get("lr", 5e-4)), batch_size=int(rc.get("batch-size", 32)),
                     proximal_mu=float(rc.get("proximal-mu", 0.0)), seed=int(rc.get("seed", 0)))
    registry = Registry.open(load_config(Path(str(rc["coordinator-config"]))), recover=False)
    try:
        parent, start = starting_model(registry, str(rc["model-id"]), cfg)
        transport = GridTransport(grid)
        min_sites = int(rc.get("min-sites", 1))
        nodes = discover(transport, float(rc.get("discovery-timeout", 60)), int(rc.get("expect-paired", min_sites)))
        paired = [n for n in nodes if n.paired]
        log.info("fuse %s: nodes %s; paired %s", parent.model_id, [n.site for n in nodes], [n.site for n in paired])
        outcome = run_rounds(transport, paired, state_of(start), cfg, parent.model_id, float(rc.get("round-timeout", 600)),
                             min_sites)
        record = store_fused(registry, parent, outcome, cfg, actor="flower-serverapp")
        print(f"mmlego fuse: stored {record.model_id}", flush=True)
    except FuseError as exc:
        print(f"mmlego fuse: failed: {exc}", flush=True)
        raise
    finally:
        registry.close()
