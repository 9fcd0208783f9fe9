"""site.toml: who the site is, where its data and keys are, and how it trains (written by
``mmlego ca enroll``; the data folder and task are filled in by the site's engineer)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from common.client import TLSFiles
from common.tomlconfig import ConfigError, Strict, read_toml
from common.train.siteblock import BlockTraining, SitePrivacy


class TLSSection(Strict):
    cert: str = "tls.crt"
    key: str = "tls.key"
    ca: str = "ca.crt"


class SigningSection(Strict):
    key: str = "signing.key"


class FlowerSection(Strict):
    node_key: str = "flower-node.key"
    node_pub: str = "flower-node.pub"
    superlink: str = "127.0.0.1:9093"  # the consortium's SuperLink
    port: int = Field(default=9094, ge=0, le=65535)  # this SuperNode's local runtime API


class SiteFile(Strict):
    site: str
    modalities: list[str]
    paired: bool = False
    coordinator: str = "127.0.0.1:50051"
    insecure: bool = False  # plaintext to a coordinator on loopback started with --insecure
    data: str = "data"
    task: str = ""
    blocks: str = "blocks"  # where trained, signed blocks are written
    state: str = "."  # where the site writes the rest: its Flower home, pulled model versions (writable)
    tls: TLSSection = Field(default_factory=TLSSection)
    signing: SigningSection = Field(default_factory=SigningSection)
    flower: FlowerSection = Field(default_factory=FlowerSection)
    train: BlockTraining = Field(default_factory=BlockTraining)
    privacy: SitePrivacy = Field(default_factory=SitePrivacy)


@dataclass(frozen=True)
class SiteConfig:
    path: Path
    site: str
    modalities: tuple[str, ...]
    paired: bool
    coordinator: str
    insecure: bool
    data: Path
    task: str
    blocks: Path
    state: Path
    tls: TLSFiles
    signing_key: Path
    train: BlockTraining
    flower: FlowerSection
    node_key: Path
    min_cell_size: int


def load_site_config(path: str | Path) -> SiteConfig:
    p = Path(path)
    f = read_toml(p, SiteFile)
    base = p.resolve().parent
    return SiteConfig(path=p, site=f.site, modalities=tuple(f.modalities), paired=f.paired, coordinator=f.coordinator,
                      insecure=f.insecure, data=base / f.data, task=f.task, blocks=base / f.blocks, state=base / f.state,
                      tls=TLSFiles(base / f.tls.cert, base / f.tls.key, base / f.tls.ca), signing_key=base / f.signing.key,
                      train=f.train, flower=f.flower, node_key=base / f.flower.node_key,
                      min_cell_size=f.privacy.min_cell_size)


__all__ = ["ConfigError", "SiteConfig", "load_site_config"]
