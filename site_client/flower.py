"""A site's Flower SuperNode: TLS to the consortium's SuperLink (our CA), authenticated with the
node key from the site's enrolment kit; its node config names the site's site.toml, which the
ClientApp reads. Telemetry, update checks and runtime dependency installation are off."""

from __future__ import annotations

from common.flowerenv import flower_tool

from .config import SiteConfig


def supernode_command(cfg: SiteConfig, port: int | None = None) -> list[str]:
    for what, path in (("Flower node key", cfg.node_key), ("CA certificate", cfg.tls.ca)):
        if not path.is_file():
            raise FileNotFoundError(f"{what} {path} not found (it comes with the enrolment kit)")
    return [
        flower_tool("flower-supernode"),
        "--root-certificates",
        str(cfg.tls.ca),
        "--auth-supernode-private-key",
        str(cfg.node_key),
        "--superlink",
        cfg.flower.superlink,
        "--port",
        str(cfg.flower.port if port is None else port),
        "--node-config",
        f'site-config="{cfg.path.resolve()}"',
    ]
