"""A consortium for transport tests: CA, server credentials, site and admin kits (and bad ones),
and a real coordinator on 127.0.0.1 with mutual TLS and a real SQLite store."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from common.artifacts import load_signing_key, save_block
from common.client import RegistryClient, Retry, TLSFiles
from common.lego import LegoBlock
from common.pki import CertificateAuthority, Identity, enroll_admin, enroll_site, server_credentials
from common.pki.ca import key_pem, new_key
from common.records import TaskRecord
from coordinator.config import (
    CoordinatorConfig,
    CoordinatorFile,
    EvaluationSection,
    ServerSection,
    ServerTLSSection,
    StoreSection,
    render_config,
)
from coordinator.server import serve
from tests.factories import SURV, block

TASK = TaskRecord(
    "t1",
    SURV,
    latent_rows=6,
    latent_dim=8,
    fourier="2d",
    init_seed=7,
    modalities=("genes", "clinical"),
)
NO_RETRY = Retry(attempts=1)


@dataclass
class Consortium:
    root: Path
    ca: CertificateAuthority

    def kit(self, name: str) -> Path:
        return self.root / "kits" / name

    def tls(self, name: str) -> TLSFiles:
        k = self.kit(name)
        return TLSFiles(k / "tls.crt", k / "tls.key", k / "ca.crt")

    def config(self, **changes: object) -> CoordinatorConfig:
        """A coordinator configuration; federated evaluation off unless ``evaluation`` is given
        (tests of other parts merge without sites scoring)."""
        s = self.root / "server"
        cfg = CoordinatorConfig(
            host="127.0.0.1",
            port=0,
            insecure=False,
            workers=16,
            cert=s / "server.crt",
            key=s / "server.key",
            ca=s / "ca.crt",
            crl=self.root / "ca" / "crl.pem",
            store=self.root / "store",
            max_block_bytes=64 << 20,
            max_open_uploads_per_site=8,
            upload_ttl_s=3600.0,
            verify_on_start=True,
            evaluation=EvaluationSection(deadline_s=0.0),
        )
        return replace(cfg, **changes)  # type: ignore[arg-type]

    def coordinator_toml(
        self, path: Path, listen: str, crl: bool = False, **sections: object
    ) -> Path:
        """Write a coordinator.toml at ``path`` (through the one writer): this consortium's server
        credentials (and with ``crl`` the CA's revocation list), the store beside the file, and
        ``sections`` (e.g. ``evaluation=EvaluationSection(deadline_s=0)``); the rest defaults."""
        s = self.root / "server"
        tls = ServerTLSSection(
            cert=str(s / "server.crt"),
            key=str(s / "server.key"),
            ca=str(s / "ca.crt"),
            crl=str(self.root / "ca" / "crl.pem") if crl else None,
        )
        f = CoordinatorFile(
            server=ServerSection(listen=listen),
            tls=tls,
            store=StoreSection(path=str(path.parent / "store")),
        )
        path.write_text(render_config(f.model_copy(update=sections)))
        return path


def write_kit(out: Path, cert_pem: bytes, key_pem_bytes: bytes, ca_pem: bytes) -> None:
    out.mkdir(parents=True)
    (out / "tls.crt").write_bytes(cert_pem)
    (out / "tls.key").write_bytes(key_pem_bytes)
    (out / "ca.crt").write_bytes(ca_pem)


@pytest.fixture(scope="session")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Consortium:
    return new_consortium(tmp_path_factory.mktemp("consortium"))


def new_consortium(root: Path) -> Consortium:
    """The consortium of the fixture above, in ``root`` (bench/fuzz_bench.py makes one too)."""
    ca = CertificateAuthority.init(root / "ca")
    server_credentials(ca, "coordinator", ["127.0.0.1"], root / "server")
    c = Consortium(root, ca)
    enroll_site(ca, "hosp-a", ["genes"], c.kit("hosp-a"))
    enroll_site(ca, "hosp-b", ["clinical"], c.kit("hosp-b"), paired=True)
    enroll_site(ca, "hosp-c", ["clinical"], c.kit("hosp-c"), paired=True)
    enroll_site(ca, "hosp-r", ["genes"], c.kit("hosp-r"))  # revoked by a test
    enroll_admin(ca, "ops", c.kit("ops"))
    pem = serialization.Encoding.PEM
    ca_pem = ca.cert.public_bytes(pem)
    # A certificate whose validity ended yesterday.
    key, sign = new_key(), ed25519.Ed25519PrivateKey.generate()
    raw = sign.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    old = ca.issue(
        Identity("hosp-old", "site", ("genes",), False, raw),
        key.public_key(),
        days=1,
        not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=3),
    )
    write_kit(c.kit("hosp-old"), old.public_bytes(pem), key_pem(key), ca_pem)
    # A kit from another consortium's CA, with the same site name as a real one.
    other = CertificateAuthority.init(root / "other-ca")
    enroll_site(other, "hosp-a", ["genes"], c.kit("rogue"))
    (c.kit("rogue") / "ca.crt").write_bytes(
        ca_pem
    )  # it trusts our server, but our CA did not issue it
    return c


@contextmanager
def serving(consortium: Consortium, cfg: CoordinatorConfig) -> Iterator[str]:
    """A coordinator on ``cfg`` (in this process) holding the test task; yields its address."""
    with serve(cfg) as running:
        address = f"127.0.0.1:{running.port}"
        with RegistryClient(address, consortium.tls("ops")) as admin:
            admin.create_task(TASK)
        yield address


@pytest.fixture()
def coordinator(consortium: Consortium, tmp_path: Path) -> Iterator[tuple[str, CoordinatorConfig]]:
    cfg = consortium.config(store=tmp_path / "store")
    with serving(consortium, cfg) as address:
        yield address, cfg


def signed_block(
    consortium: Consortium,
    site: str,
    out: Path,
    modality: str = "genes",
    seed: int = 0,
    b: LegoBlock | None = None,
    task_id: str = "t1",
) -> Path:
    b = b or block(modality=modality, seed=seed)
    save_block(
        b,
        out,
        site=site,
        task_id=task_id,
        train_stats={"n_train": 40.0},
        signing_key=load_signing_key(consortium.kit(site) / "signing.key"),
    )
    return out


def stored(cfg: CoordinatorConfig) -> tuple[int, int]:
    """(block records, blob files) in the store."""
    import sqlite3

    with sqlite3.connect(cfg.store / "registry.sqlite") as con:
        n = con.execute("SELECT COUNT(*) FROM blocks").fetchone()[0]
    return n, len(list((cfg.store / "blobs").glob("*/*")))
