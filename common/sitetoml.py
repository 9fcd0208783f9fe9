"""site.toml: its one schema, and the one function that writes it (enrolment kits, simulations).

The site client reads it (:mod:`site_client.config`); the CA writes a kit's copy and the simulator
writes one per simulated site, both through :func:`render`, so every written file is one the
schema accepts and names every setting with what it does."""

from __future__ import annotations

from pydantic import Field, field_validator

from .tomlconfig import Strict
from .train.siteblock import BlockTraining, SitePrivacy


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


class EvaluationSection(Strict):
    """Federated evaluation: the site scores candidates on its patients (aggregate counts only):
    with ``folds`` = K >= 2 on every patient, each through fold copies of the site's own blocks
    that never saw it (cross-fitting); with 0 on a validation split. Every distinct candidate
    scored counts against ``max_eval_queries`` per task, because scores asked for without limit
    leak labels."""

    enabled: bool = True
    folds: int = Field(
        default=5, ge=0
    )  # K-fold cross-fitting of blocks and scores; 0: a validation split ([train] val_fraction)
    max_eval_queries: int = Field(
        default=200, ge=0
    )  # distinct candidates this site scores per task, at most
    poll_s: float = Field(default=10.0, gt=0)  # how often the daemon asks for evaluation jobs
    score_fused: bool = True  # also score fused models (their trainable weights cannot be checked against signed blocks)

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
    coordinator: str = "127.0.0.1:50051"
    insecure: bool = False  # plaintext to a coordinator on loopback started with --insecure
    data: str = "data"
    task: str = ""
    blocks: str = "blocks"  # where trained, signed blocks are written
    state: str = (
        "."  # where the site writes the rest: its Flower home, pulled model versions (writable)
    )
    tls: TLSSection = Field(default_factory=TLSSection)
    signing: SigningSection = Field(default_factory=SigningSection)
    flower: FlowerSection = Field(default_factory=FlowerSection)
    train: BlockTraining = Field(default_factory=BlockTraining)
    privacy: SitePrivacy = Field(default_factory=SitePrivacy)
    evaluation: EvaluationSection = Field(default_factory=EvaluationSection)


def _value(v: object) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return repr(v)


NOTES = {
    "data": "the site data folder (data.toml), relative to this file",
    "task": "the task id the operator created (or pass --task)",
    "blocks": "trained, signed blocks (writable)",
    "state": "the site's Flower home, pulled model versions, its evaluation ledger (writable)",
    "flower.superlink": "the consortium's Flower SuperLink (paired sites)",
    "flower.port": "this SuperNode's local port (loopback; one per SuperNode on a machine)",
    "privacy.min_cell_size": "no count of fewer patients leaves the site (block stats, class weights, fuse rounds, evaluation)",
    "privacy.block_epsilon": "set (e.g. 3.0): train blocks with DP-SGD at this epsilon; the task must give public ranges",
    "privacy.block_delta": "DP delta of a block; 0: 1 / (10 x its training patients)",
    "privacy.max_grad_norm": "DP-SGD: each patient's gradient is clipped to this norm",
    "privacy.block_lr": "DP-SGD's learning rate (used instead of [train] lr)",
    "evaluation.enabled": "score model versions and candidates on the site's patients (pair counts only)",
    "evaluation.folds": "K-fold cross-fitting: blocks' epochs and every score on all patients, out of fold; 0: a validation split",
    "evaluation.max_eval_queries": "distinct candidates scored per task at most (repeated scores leak labels)",
    "evaluation.poll_s": "how often the daemon asks the coordinator for evaluation jobs",
    "evaluation.score_fused": "also score fused models, whose trained weights cannot be checked against signed blocks",
    "train.val_fraction": "with [evaluation] folds = 0: validation patients drawn at random when the data has no split column",
}


def render(f: SiteFile, header: str = "") -> str:
    """``f`` as site.toml text: every setting, commented where a person needs to know more."""
    lines = [f"# {line}" for line in header.splitlines()]
    data = f.model_dump()
    sections = {k: v for k, v in data.items() if isinstance(v, dict)}
    for k, v in data.items():
        if k not in sections:
            lines.append(f"{k} = {_value(v)}" + (f"  # {NOTES[k]}" if k in NOTES else ""))
    for name, values in sections.items():
        lines += ["", f"[{name}]"]
        lines += [
            ("# " if v is None else "")
            + f"{k} = {_value(v) if v is not None else ''}".rstrip()
            + (f"  # {NOTES[f'{name}.{k}']}" if f"{name}.{k}" in NOTES else "")
            for k, v in values.items()
        ]
    return "\n".join(lines) + "\n"
