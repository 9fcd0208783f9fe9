"""The consortium CA and enrolment kits: identities bound into certificates, key files 0600,
revocation, and a real mutual-TLS handshake with the issued credentials."""

import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from common.admin import AdminKit
from common.admin.kitfile import AdminToml
from common.pki import (
    CAError,
    CertificateAuthority,
    enroll_admin,
    enroll_site,
    identity_from_cert,
    revoked_serials,
    server_credentials,
)
from common.sitetoml import FlowerSection, SiteFile
from common.tomlconfig import read_toml


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority.init(tmp_path / "ca", name="test consortium")


def cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_init_refuses_to_overwrite_and_load_needs_a_ca(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    with pytest.raises(CAError, match="already holds a CA"):
        CertificateAuthority.init(tmp_path / "ca")
    with pytest.raises(CAError, match="not a CA folder"):
        CertificateAuthority(tmp_path / "nothing")
    assert stat.S_IMODE((tmp_path / "ca" / "ca.key").stat().st_mode) == 0o600


def test_site_kit_binds_identity_and_keys(tmp_path: Path, ca: CertificateAuthority) -> None:
    kit = enroll_site(ca, "hosp-a", ["genes", "clinical"], tmp_path / "kit", paired=True)
    names = sorted(p.name for p in kit.iterdir())
    assert names == [
        "ca.crt",
        "flower-node.key",
        "flower-node.pub",
        "signing.key",
        "signing.pub",
        "site.toml",
        "tls.crt",
        "tls.key",
    ]
    for private in ("tls.key", "signing.key", "flower-node.key"):
        assert stat.S_IMODE((kit / private).stat().st_mode) == 0o600, private
    c = cert(kit / "tls.crt")
    c.verify_directly_issued_by(ca.cert)
    ident = identity_from_cert(c)
    assert (ident.name, ident.role, ident.modalities, ident.paired) == (
        "hosp-a",
        "site",
        ("genes", "clinical"),
        True,
    )
    signing = serialization.load_pem_private_key((kit / "signing.key").read_bytes(), password=None)
    ident.verifier().verify(signing.sign(b"block"), b"block")  # type: ignore[call-arg]
    node = serialization.load_ssh_private_key((kit / "flower-node.key").read_bytes(), password=None)
    assert isinstance(node, ec.EllipticCurvePrivateKey) and node.curve.name == "secp384r1"
    assert (kit / "flower-node.pub").read_text().startswith("ecdsa-sha2-nistp384 ")
    assert 'modalities = ["genes", "clinical"]' in (kit / "site.toml").read_text()


def test_names_that_look_like_paths_are_refused(tmp_path: Path, ca: CertificateAuthority) -> None:
    for bad in ("../etc", "Hosp A", "", "a/b"):
        with pytest.raises(ValueError, match="not allowed"):
            enroll_site(ca, bad, ["genes"], tmp_path / "k")
    with pytest.raises(ValueError, match="modality name"):
        enroll_site(ca, "hosp", ["../x"], tmp_path / "k2")
    assert not (tmp_path / "k").exists() and ca.issued() == []


def test_one_valid_certificate_per_name_and_revocation(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    enroll_site(ca, "hosp-a", ["genes"], tmp_path / "k1")
    with pytest.raises(CAError, match="already has a valid certificate"):
        enroll_site(ca, "hosp-a", ["genes"], tmp_path / "k2")
    serial = cert(tmp_path / "k1" / "tls.crt").serial_number
    revoked = ca.revoke("hosp-a")
    assert [r.serial for r in revoked] == [serial]
    assert serial in revoked_serials((tmp_path / "ca" / "crl.pem").read_bytes(), ca.cert)
    enroll_site(ca, "hosp-a", ["genes"], tmp_path / "k3")  # re-enrolment after revocation
    with pytest.raises(CAError, match="no unrevoked certificate"):
        ca.revoke("nobody")


def test_crl_from_another_ca_is_rejected(tmp_path: Path, ca: CertificateAuthority) -> None:
    other = CertificateAuthority.init(tmp_path / "other")
    with pytest.raises(ValueError, match="not signed by the consortium CA"):
        revoked_serials((tmp_path / "other" / "crl.pem").read_bytes(), ca.cert)
    assert other.cert.subject != ca.cert.subject


def test_kit_folder_must_be_new_or_empty(tmp_path: Path, ca: CertificateAuthority) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    with pytest.raises(FileExistsError):
        enroll_admin(ca, "ops", tmp_path / "full")
    assert (tmp_path / "full" / "x").read_text() == "keep me"


def test_real_mutual_tls_handshake_with_issued_credentials(
    tmp_path: Path, ca: CertificateAuthority
) -> None:
    server = server_credentials(ca, "coordinator", ["127.0.0.1", "localhost"], tmp_path / "srv")
    admin = enroll_admin(ca, "ops", tmp_path / "adm")
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(server / "server.crt", server / "server.key")
    sctx.load_verify_locations(server / "ca.crt")
    sctx.verify_mode = ssl.CERT_REQUIRED
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.load_cert_chain(admin / "tls.crt", admin / "tls.key")
    cctx.load_verify_locations(admin / "ca.crt")
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)
    port = listener.getsockname()[1]
    seen: dict[str, object] = {}

    def serve() -> None:
        conn, _ = listener.accept()
        with sctx.wrap_socket(conn, server_side=True) as tls:
            der = tls.getpeercert(binary_form=True)
            seen["peer"] = identity_from_cert(x509.load_der_x509_certificate(der))
            tls.sendall(b"ok")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            cctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            assert tls.recv(2) == b"ok"
    finally:
        t.join(timeout=10)
        listener.close()
    assert seen["peer"].name == "ops" and seen["peer"].role == "admin"  # type: ignore[attr-defined]


def test_a_kit_s_config_files_hold_the_schema_defaults_but_for_who_and_where(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    site = enroll_site(
        ca, "hosp-a", ["genes", "clinical"], tmp_path / "site", True, "coord:1", superlink="link:2"
    )
    assert read_toml(site / "site.toml", SiteFile) == SiteFile(
        site="hosp-a",
        modalities=["genes", "clinical"],
        paired=True,
        coordinator="coord:1",
        flower=FlowerSection(superlink="link:2"),
    )
    admin = enroll_admin(ca, "ops", tmp_path / "admin", "coord:1")
    assert read_toml(admin / "admin.toml", AdminToml) == AdminToml(
        admin="ops", coordinator="coord:1"
    )
    kit = AdminKit.load(admin)
    assert (
        kit.name == "ops" and kit.tls.cert == admin / "tls.crt" and kit.tls.ca == admin / "ca.crt"
    )
