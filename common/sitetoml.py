"""site.toml: its one schema, and the one function that writes it (enrolment kits, simulations).

The site client reads it (:mod:`site_client.config`); the CA writes a kit's copy and the simulator
writes one per simulated site, both through :func:`render`, so every written file is one the
schema accepts and names every setting with what it does (its field's description)."""

from __future__ import annotations

from pydantic import Field, field_validator

from .addresses import LOCAL_REGISTRY, LOCAL_SUPERLINK
from .tomlconfig import Strict, TLSSection, render_toml
from .train.siteblock import BlockTraining, SitePrivacy


class SigningSection(Strict):
    key: str = "signing.key"


class FlowerSection(Strict):
    node_key: str = "flower-node.key"
    node_pub: str = "flower-node.pub"
    superlink: str = Field(
        default=LOCAL_SUPERLINK,
        description="the consortium's Flower SuperLink (paired sites, and those with supernode)",
    )
    port: int = Field(
        default=9094,
        ge=0,
        le=65535,
        description="this SuperNode's local port (loopback; one per SuperNode on a machine)",
    )
    supernode: bool = Field(
        default=False,
        description="run a SuperNode without paired data too, to train in LegoFuse runs over "
        "every site (coordinator fuse --sites all); a paired site always runs one",
    )


class EvaluationSection(Strict):
    """Federated evaluation: the site scores candidates on its patients (aggregate counts only):
    with ``folds`` = K >= 2 on every patient, each through fold copies of the site's own blocks
    that never saw it (cross-fitting); with 0 on a validation split. Every distinct candidate
    scored counts against ``max_eval_queries`` per task, because scores asked for without limit
    leak labels."""

    enabled: bool = Field(
        default=True,
        description="score model versions and candidates on the site's patients (pair counts only)",
    )
    folds: int = Field(
        default=5,
        ge=0,
        description="K-fold cross-fitting: blocks' epochs and every score on all patients, out "
        "of fold; 0: a validation split",
    )  # 0: a validation split of [train] val_fraction
    max_eval_queries: int = Field(
        default=200,
        ge=0,
        description="distinct candidates scored per task at most (repeated scores leak labels)",
    )
    poll_s: float = Field(
        default=10.0,
        gt=0,
        description="how often the daemon asks the coordinator for evaluation jobs",
    )
    score_fused: bool = Field(
        default=True,
        description="also score fused models, whose trained weights cannot be checked against "
        "signed blocks",
    )

    @field_validator("folds")
    @classmethod
    def _folds(cls, v: int) -> int:
        if v == 1:
            raise ValueError("folds = 1 cannot cross-fit: use 0 (a validation split) or 2 or more")
        return v


class SiteFile(Strict):
    site: str
    modalities: list[str]
    paired: bool = False
    coordinator: str = LOCAL_REGISTRY
    insecure: bool = False  # plaintext to a coordinator on loopback started with --insecure
    data: str = Field(
        default="data", description="the site data folder (data.toml), relative to this file"
    )
    task: str = Field(default="", description="the task id the operator created (or pass --task)")
    blocks: str = Field(default="blocks", description="trained, signed blocks (writable)")
    state: str = Field(
        default=".",
        description="the site's Flower home, pulled model versions, its evaluation ledger "
        "(writable)",
    )
    tls: TLSSection = Field(default_factory=TLSSection)
    signing: SigningSection = Field(default_factory=SigningSection)
    flower: FlowerSection = Field(default_factory=FlowerSection)
    train: BlockTraining = Field(default_factory=BlockTraining)
    privacy: SitePrivacy = Field(default_factory=SitePrivacy)
    evaluation: EvaluationSection = Field(default_factory=EvaluationSection)


def render(f: SiteFile, header: str = "") -> str:
    """``f`` as site.toml text: every setting, commented where a person needs to know more."""
    return render_toml(f, header)
