"""site.toml: who the site is, where its data and keys are, and how it trains (written by
``mmlego ca enroll``; the data folder and task are filled in by the site's engineer)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from common.client import TLSFiles
from common.tomlconfig import ConfigError, Strict, read_toml


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


class TrainSection(Strict):
    epochs: int = Field(default=50, ge=1)
    patience: int = Field(default=10, ge=1)
    batch_size: int = Field(default=32, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    n_tokens: int = Field(default=4, ge=1)
    token_dim: int = Field(default=64, ge=1)
    depth: int = Field(default=2, ge=1)  # update steps S
    val_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    seed: int = 0
    device: str = "auto"  # "auto" (CUDA when present), "cpu", "cuda", "cuda:1"


class SiteFile(Strict):
    site: str
    modalities: list[str]
    paired: bool = False
    coordinator: str = "127.0.0.1:50051"
    insecure: bool = False  # plaintext to a coordinator on loopback started with --insecure
    data: str = "data"
    task: str = ""
    blocks: str = "blocks"  # where trained, signed blocks are written
    tls: TLSSection = Field(default_factory=TLSSection)
    signing: SigningSection = Field(default_factory=SigningSection)
    flower: FlowerSection = Field(default_factory=FlowerSection)
    train: TrainSection = Field(default_factory=TrainSection)


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
    tls: TLSFiles
    signing_key: Path
    train: TrainSection
    flower: FlowerSection
    node_key: Path


def load_site_config(path: str | Path) -> SiteConfig:
    p = Path(path)
    f = read_toml(p, SiteFile)
    base = p.resolve().parent
    return SiteConfig(path=p, site=f.site, modalities=tuple(f.modalities), paired=f.paired, coordinator=f.coordinator,
                      insecure=f.insecure, data=base / f.data, task=f.task, blocks=base / f.blocks,
                      tls=TLSFiles(base / f.tls.cert, base / f.tls.key, base / f.tls.ca), signing_key=base / f.signing.key,
                      train=f.train, flower=f.flower, node_key=base / f.flower.node_key)


__all__ = ["ConfigError", "SiteConfig", "load_site_config"]
