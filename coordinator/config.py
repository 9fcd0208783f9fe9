"""coordinator.toml: its one schema (defaults named once), the writer and the loader."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field

from common.addresses import LOCAL_REGISTRY, LOCAL_SUPERLINK
from common.tomlconfig import Strict, TLSSection, read_toml, render_toml

HEADER = "mmlego coordinator configuration; paths are relative to this file."


class ServerSection(Strict):
    listen: str = Field(default=LOCAL_REGISTRY, description="host:port; port 0 picks a free one")
    insecure: bool = Field(
        default=False, description="plaintext; allowed only on a loopback address"
    )
    workers: int = Field(
        default=64,
        ge=1,
        le=1024,
        description="concurrent RPCs served (an upload holds one for its duration)",
    )


class ServerTLSSection(TLSSection):
    """The coordinator's [tls]: the server credentials ``mmlego coordinator init`` writes, and the
    CA's revocation list."""

    cert: str = "server.crt"
    key: str = "server.key"
    crl: str | None = Field(
        default=None,
        description="a copy of the CA's revocation list; re-read when it changes",
        examples=["crl.pem"],
    )


class StoreSection(Strict):
    path: str = "store"
    max_block_mb: float = Field(default=1024, gt=0, description="largest accepted block")
    max_open_uploads_per_site: int = Field(default=8, ge=1)
    upload_ttl_hours: float = Field(
        default=24, gt=0, description="unfinished uploads older than this are removed on start"
    )
    verify_on_start: bool = Field(default=True, description="re-hash every stored blob on start")
    busy_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="a database locked longer than this: the call is refused (UNAVAILABLE)",
    )


class FlowerSection(Strict):
    superlink: str = Field(
        default=LOCAL_SUPERLINK,
        description="the Flower SuperLink beside the coordinator (`mmlego coordinator superlink`)",
    )
    home: str = Field(
        default="flower", description="FLWR_HOME of the coordinator's Flower processes and CLI"
    )
    round_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="a round goes on without sites that did not answer by then",
    )
    discovery_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="how long to wait for the sites that take part in a fuse run to connect",
    )
    min_sites: int = Field(
        default=1,
        ge=1,
        description="fewer sites answering a round and the run fails (paired ones, or with "
        "--sites all any holding one of the model's modalities)",
    )
    expect_sites: int = Field(
        default=0,
        ge=0,
        description="sites taking part that discovery waits for (paired ones, or with --sites all "
        "every site holding one of the model's modalities; 0: min_sites), up to its timeout",
    )
    run_timeout_s: float = Field(default=3600.0, gt=0, description="a whole fuse run")
    dp_clipping_norm: float = Field(
        default=0.0,
        ge=0,
        description="> 0: central DP (server-side fixed clipping) in fuse rounds",
    )
    dp_noise_multiplier: float = Field(
        default=0.0, ge=0, description="Gaussian noise std = multiplier * clipping norm / sites"
    )
    dp_delta: float = Field(
        default=1e-5,
        gt=0,
        lt=1,
        description="the delta at which the card reports the epsilon spent",
    )
    simulation: bool = Field(
        default=False,
        description="true: Flower's simulation engine runs the sites' ClientApps as Ray actors, "
        "no SuperNodes (simulate --engine ray)",
    )  # the sites named in the store's flower-partitions.json, on the cluster RAY_ADDRESS names


class EvaluationSection(Strict):
    """Federated evaluation: sites score candidates and versions on their validation patients."""

    deadline_s: float = Field(
        default=600.0,
        ge=0,
        description="longest wait for the sites' scores of a merge, a fuse round or an "
        "evaluation (0: off)",
    )
    z: float = Field(
        default=1.0,
        ge=0,
        description="a candidate replaces the uniform merge only with a gain above z standard "
        "errors",
    )
    sites_per_job: int = Field(
        default=0,
        ge=0,
        description="a job asks at most this many sites, stratified by the modalities they hold "
        "and their size (0: every site)",
    )


class MetricsSection(Strict):
    """The plaintext HTTP endpoint with /metrics (Prometheus) and /healthz. It shows counts and
    latencies, never data; bind it to an address only the monitoring can reach."""

    listen: str = Field(
        default="",
        description='e.g. "127.0.0.1:9464": /metrics (Prometheus) and /healthz over plain HTTP; '
        '"" = off',
    )


class CoordinatorFile(Strict):
    """coordinator.toml: the one schema, its defaults named here and nowhere else."""

    server: ServerSection = Field(default_factory=ServerSection)
    tls: ServerTLSSection = Field(default_factory=ServerTLSSection)
    store: StoreSection = Field(default_factory=StoreSection)
    flower: FlowerSection = Field(default_factory=FlowerSection)
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    evaluation: EvaluationSection = Field(default_factory=EvaluationSection)


_DEFAULT = CoordinatorFile()


@dataclass(frozen=True)
class CoordinatorConfig:
    """Resolved configuration: paths are absolute (relative ones are taken from the file's
    folder); the defaults are the schema's."""

    host: str
    port: int
    insecure: bool
    workers: int
    cert: Path
    key: Path
    ca: Path
    crl: Path | None
    store: Path
    max_block_bytes: int
    max_open_uploads_per_site: int
    upload_ttl_s: float
    verify_on_start: bool
    busy_timeout_s: float = _DEFAULT.store.busy_timeout_s
    flower: FlowerSection = field(default_factory=FlowerSection)
    flower_home: Path = Path(_DEFAULT.flower.home)
    path: Path | None = None  # the file it was read from
    metrics_listen: str = _DEFAULT.metrics.listen  # host:port of /metrics and /healthz; "" = off
    evaluation: EvaluationSection = field(default_factory=EvaluationSection)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def split_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"address {text!r} must be host:port")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_config(path: str | Path, insecure: bool | None = None) -> CoordinatorConfig:
    """Read and validate ``path``; raise ``ValueError`` naming the file and the field."""
    p = Path(path)
    f = read_toml(p, CoordinatorFile)
    try:
        host, port = split_address(f.server.listen)
    except ValueError as exc:
        raise ValueError(f"{p}: server.listen: {exc}") from None
    if f.metrics.listen:
        try:
            split_address(f.metrics.listen)
        except ValueError as exc:
            raise ValueError(f"{p}: metrics.listen: {exc}") from None
    plain = f.server.insecure if insecure is None else insecure
    if plain and not is_loopback(host):
        raise ValueError(
            f"{p}: plaintext (insecure) serving is allowed only on a loopback address, not {host!r}"
        )
    base = p.resolve().parent

    def at(x: str) -> Path:
        return (base / x).resolve()

    return CoordinatorConfig(
        host=host,
        port=port,
        insecure=plain,
        workers=f.server.workers,
        cert=at(f.tls.cert),
        key=at(f.tls.key),
        ca=at(f.tls.ca),
        crl=at(f.tls.crl) if f.tls.crl else None,
        store=at(f.store.path),
        max_block_bytes=int(f.store.max_block_mb * (1 << 20)),
        max_open_uploads_per_site=f.store.max_open_uploads_per_site,
        upload_ttl_s=f.store.upload_ttl_hours * 3600,
        verify_on_start=f.store.verify_on_start,
        busy_timeout_s=f.store.busy_timeout_s,
        flower=f.flower,
        flower_home=at(f.flower.home),
        path=p.resolve(),
        metrics_listen=f.metrics.listen,
        evaluation=f.evaluation,
    )


def render_config(f: CoordinatorFile, header: str = HEADER) -> str:
    """``f`` as coordinator.toml text: every setting, each with what it does (paths relative to
    the file's folder); :func:`load_config` reads it back."""
    return render_toml(f, header)
