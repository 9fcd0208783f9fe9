"""Enrolment kits: everything a site (or an operator) needs, written by the CA into one folder.

Site kit:  tls.crt, tls.key (0600)      mutual-TLS identity for the registry (role, modalities,
           ca.crt                        paired flag and the signing key are bound into tls.crt)
           signing.key (0600), signing.pub   Ed25519, signs the site's blocks
           flower-node.key (0600), flower-node.pub
                                         ECDSA P-384 in OpenSSH format (Flower node auth)
           site.toml                     ready configuration (data folder and task to fill in)
Admin kit: tls.crt, tls.key, ca.crt, admin.toml.
Server:    server.crt, server.key, ca.crt (the coordinator's TLS server identity).
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from ..addresses import LOCAL_REGISTRY, LOCAL_SUPERLINK
from .ca import CAError, CertificateAuthority, key_pem, new_key
from .files import write_private, write_public
from .identity import Identity, check_name, identity_from_cert


def _prepare(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; a kit is written into a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)


def _pem_cert(cert: object) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)  # type: ignore[attr-defined]


def enroll_site(
    ca: CertificateAuthority,
    site: str,
    modalities: list[str],
    out: str | os.PathLike[str],
    paired: bool = False,
    coordinator: str = LOCAL_REGISTRY,
    days: int = 365,
    superlink: str = LOCAL_SUPERLINK,
) -> Path:
    check_name("site", site)
    if not modalities:
        raise ValueError("a site needs at least one --modality")
    for m in modalities:
        check_name("modality", m)
    root = Path(out)
    _prepare(root)
    signing = ed25519.Ed25519PrivateKey.generate()
    raw_pub = signing.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    tls_key = new_key()
    identity = Identity(site, "site", tuple(dict.fromkeys(modalities)), paired, raw_pub)
    cert = ca.issue(identity, tls_key.public_key(), days=days)
    node = ec.generate_private_key(ec.SECP384R1())
    write_private(root / "tls.key", key_pem(tls_key))
    write_public(root / "tls.crt", _pem_cert(cert))
    write_public(root / "ca.crt", _pem_cert(ca.cert))
    write_private(
        root / "signing.key",
        signing.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    write_public(
        root / "signing.pub",
        signing.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    write_private(
        root / "flower-node.key",
        node.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ),
    )
    write_public(
        root / "flower-node.pub",
        node.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        + b"\n",
    )
    from ..sitetoml import FlowerSection, SiteFile, render

    site_file = SiteFile(
        site=site,
        modalities=list(identity.modalities),
        paired=paired,
        coordinator=coordinator,
        flower=FlowerSection(superlink=superlink),
    )
    write_public(
        root / "site.toml",
        render(
            site_file,
            f"Site kit for {site}; keys in this folder. Fill in the data folder "
            "and the task before `mmlego site run`.",
        ).encode(),
    )
    return root


def renew_kit(
    ca: CertificateAuthority, kit: str | os.PathLike[str], days: int = 365
) -> tuple[int, int]:
    """Rotate the TLS certificate of a site (or admin) kit: a new key and certificate with the same
    identity (name, role, modalities, paired flag, signing key), written over tls.key / tls.crt
    in ``kit``; then the old certificate is revoked (the CRL is rewritten). Returns (old serial,
    new serial). The site restarts its daemon to use the new files."""
    root = Path(kit)
    try:
        old = x509.load_pem_x509_certificate((root / "tls.crt").read_bytes())
    except FileNotFoundError:
        raise CAError(f"{root / 'tls.crt'} not found: not a kit folder") from None
    except ValueError:
        raise CAError(f"{root / 'tls.crt'} is not a PEM certificate") from None
    try:
        old.verify_directly_issued_by(ca.cert)
    except (ValueError, TypeError, InvalidSignature):
        raise CAError(
            f"{root / 'tls.crt'} was not issued by this CA ({ca.cert.subject.rfc4514_string()})"
        ) from None
    identity = identity_from_cert(old)
    current = ca.active(identity.name)
    if current is None or current.serial != old.serial_number:
        raise CAError(
            f"{root / 'tls.crt'} (serial {old.serial_number}) is not {identity.name!r}'s valid "
            "certificate at this CA (revoked, expired or already rotated)"
        )
    key = new_key()
    cert = ca.issue(identity, key.public_key(), days=days, replacing=old.serial_number)
    write_private(root / "tls.key.new", key_pem(key))
    write_public(root / "tls.crt.new", _pem_cert(cert))
    os.replace(root / "tls.key.new", root / "tls.key")
    os.replace(root / "tls.crt.new", root / "tls.crt")
    ca.revoke(str(old.serial_number))
    return old.serial_number, cert.serial_number


def enroll_admin(
    ca: CertificateAuthority,
    name: str,
    out: str | os.PathLike[str],
    coordinator: str = LOCAL_REGISTRY,
    days: int = 365,
) -> Path:
    check_name("admin", name)
    root = Path(out)
    _prepare(root)
    key = new_key()
    cert = ca.issue(Identity(name, "admin"), key.public_key(), days=days)
    write_private(root / "tls.key", key_pem(key))
    write_public(root / "tls.crt", _pem_cert(cert))
    write_public(root / "ca.crt", _pem_cert(ca.cert))
    from ..admin.kitfile import KIT_FILE, AdminToml, render

    write_public(root / KIT_FILE, render(AdminToml(admin=name, coordinator=coordinator)).encode())
    return root


def server_credentials(
    ca: CertificateAuthority,
    name: str,
    hosts: list[str],
    out: str | os.PathLike[str],
    days: int = 365,
) -> Path:
    """TLS server key and certificate for the coordinator (or a Flower SuperLink) at ``hosts``."""
    check_name("server", name)
    if not hosts:
        raise ValueError("a server certificate needs at least one --host (DNS name or IP address)")
    root = Path(out)
    _prepare(root)
    key = new_key()
    cert = ca.issue(Identity(name, "server"), key.public_key(), days=days, hosts=tuple(hosts))
    write_private(root / "server.key", key_pem(key))
    write_public(root / "server.crt", _pem_cert(cert))
    write_public(root / "ca.crt", _pem_cert(ca.cert))
    return root
