"""site.toml: who the site is, where its data and keys are, and how it trains (written by
``mmlego ca enroll``; the data folder and task are filled in by the site's engineer)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from common.client import TLSFiles
from common.sitetoml import EvaluationSection, FlowerSection, SiteFile
from common.tomlconfig import ConfigError, read_toml
from common.train.siteblock import BlockTraining, SitePrivacy


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
    evaluation: EvaluationSection = field(default_factory=EvaluationSection)
    privacy: SitePrivacy = field(default_factory=SitePrivacy)


def load_site_config(path: str | Path) -> SiteConfig:
    p = Path(path)
    f = read_toml(p, SiteFile)
    base = p.resolve().parent
    return SiteConfig(
        path=p,
        site=f.site,
        modalities=tuple(f.modalities),
        paired=f.paired,
        coordinator=f.coordinator,
        insecure=f.insecure,
        data=base / f.data,
        task=f.task,
        blocks=base / f.blocks,
        state=base / f.state,
        tls=TLSFiles(base / f.tls.cert, base / f.tls.key, base / f.tls.ca),
        signing_key=base / f.signing.key,
        train=f.train,
        flower=f.flower,
        node_key=base / f.flower.node_key,
        min_cell_size=f.privacy.min_cell_size,
        evaluation=f.evaluation,
        privacy=f.privacy,
    )


__all__ = ["ConfigError", "SiteConfig", "load_site_config"]
