"""The consortium's certificate authority: a folder with the CA key, its certificate, an index
of what it issued and a revocation list (``mmlego ca ...``).

    CA_DIR/ca.key      CA private key (0600)      CA_DIR/index.json  issued certificates
    CA_DIR/ca.crt      CA certificate             CA_DIR/crl.pem     revoked serials, signed
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .files import write_private, write_public
from .identity import Identity

log = logging.getLogger("mmlego.ca")

CA_KEY, CA_CERT, INDEX, CRL = "ca.key", "ca.crt", "index.json", "crl.pem"


class CAError(ValueError):
    """A CA operation that cannot be done (no CA, a duplicate name, an unknown certificate)."""


@dataclass
class IssuedCert:
    serial: int
    name: str
    role: str
    modalities: list[str]
    paired: bool
    not_after: str
    revoked_at: str | None = None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class CertificateAuthority:
    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        for name in (CA_KEY, CA_CERT, INDEX):
            if not (self.folder / name).is_file():
                raise CAError(
                    f"{self.folder} is not a CA folder (no {name}); "
                    f"create one with: mmlego ca init --dir {self.folder}"
                )
        self.key = serialization.load_pem_private_key(
            (self.folder / CA_KEY).read_bytes(), password=None
        )
        self.cert = x509.load_pem_x509_certificate((self.folder / CA_CERT).read_bytes())

    @classmethod
    def init(
        cls, folder: str | os.PathLike[str], name: str = "mmlego consortium CA", days: int = 3650
    ) -> CertificateAuthority:
        root = Path(folder)
        if (root / CA_KEY).exists():
            raise CAError(f"{root} already holds a CA; refusing to overwrite it")
        root.mkdir(parents=True, exist_ok=True)
        key = new_key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        write_private(root / CA_KEY, key_pem(key))
        write_public(root / CA_CERT, cert.public_bytes(serialization.Encoding.PEM))
        write_public(root / INDEX, b"[]")
        ca = cls(root)
        ca.write_crl()
        log.info("created CA %s", folder, extra={"event": "ca-created"})
        return ca

    # ---- index --------------------------------------------------------------------------------
    def issued(self) -> list[IssuedCert]:
        return [IssuedCert(**e) for e in json.loads((self.folder / INDEX).read_text())]

    def _save(self, entries: list[IssuedCert]) -> None:
        write_public(
            self.folder / INDEX, json.dumps([asdict(e) for e in entries], indent=1).encode()
        )

    def active(self, name: str) -> IssuedCert | None:
        now = _now().isoformat()
        return next(
            (
                e
                for e in self.issued()
                if e.name == name and e.revoked_at is None and e.not_after > now
            ),
            None,
        )

    # ---- issuing ------------------------------------------------------------------------------
    def issue(
        self,
        identity: Identity,
        public_key: ec.EllipticCurvePublicKey,
        days: int = 365,
        hosts: tuple[str, ...] = (),
        not_before: dt.datetime | None = None,
        replacing: int | None = None,
    ) -> x509.Certificate:
        """Sign a certificate binding ``identity`` to ``public_key``; servers get ``hosts`` as
        DNS/IP names. A name has one valid certificate, except while certificate ``replacing`` is
        rotated."""
        current = self.active(identity.name)
        if identity.role != "server" and current and current.serial != replacing:
            raise CAError(
                f"{identity.name!r} already has a valid certificate; "
                f"revoke it first (mmlego ca revoke {identity.name})"
            )
        import ipaddress

        names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in identity.uris()]
        for h in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                names.append(x509.DNSName(h))
        start = not_before or _now() - dt.timedelta(minutes=5)
        usage = (
            ExtendedKeyUsageOID.SERVER_AUTH
            if identity.role == "server"
            else ExtendedKeyUsageOID.CLIENT_AUTH
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.COMMON_NAME, identity.name),
                        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, identity.role),
                    ]
                )
            )
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.cert.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
            .sign(self.key, hashes.SHA256())  # type: ignore[arg-type]
        )
        entries = self.issued()
        entries.append(
            IssuedCert(
                cert.serial_number,
                identity.name,
                identity.role,
                list(identity.modalities),
                identity.paired,
                cert.not_valid_after_utc.isoformat(),
            )
        )
        self._save(entries)
        log.info(
            "issued a %s certificate for %s (serial %d, until %s)",
            identity.role,
            identity.name,
            cert.serial_number,
            cert.not_valid_after_utc.isoformat(),
            extra={
                "event": "certificate-issued",
                "name": identity.name,
                "role": identity.role,
                "serial": str(cert.serial_number),
            },
        )
        return cert

    def revoke(self, name_or_serial: str) -> list[IssuedCert]:
        """Revoke every valid certificate of a name (or the one with that serial); rewrites the
        CRL."""
        entries = self.issued()
        hits = [
            e
            for e in entries
            if e.revoked_at is None
            and (e.name == name_or_serial or str(e.serial) == name_or_serial)
        ]
        if not hits:
            raise CAError(f"no unrevoked certificate with name or serial {name_or_serial!r}")
        for e in hits:
            e.revoked_at = _now().isoformat()
        self._save(entries)
        self.write_crl()
        for e in hits:
            log.info(
                "revoked the certificate of %s (serial %d)",
                e.name,
                e.serial,
                extra={"event": "certificate-revoked", "name": e.name, "serial": str(e.serial)},
            )
        return hits

    def write_crl(self, days: int = 30) -> x509.CertificateRevocationList:
        now = _now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now - dt.timedelta(minutes=5))
            .next_update(now + dt.timedelta(days=days))
        )
        for e in self.issued():
            if e.revoked_at:
                builder = builder.add_revoked_certificate(
                    x509.RevokedCertificateBuilder()
                    .serial_number(e.serial)
                    .revocation_date(dt.datetime.fromisoformat(e.revoked_at))
                    .build()
                )
        crl = builder.sign(self.key, hashes.SHA256())  # type: ignore[arg-type]
        write_public(self.folder / CRL, crl.public_bytes(serialization.Encoding.PEM))
        return crl


def revoked_serials(crl_pem: bytes, ca_cert: x509.Certificate) -> set[int]:
    """Serials on a CRL, after checking that ``ca_cert`` signed it."""
    crl = x509.load_pem_x509_crl(crl_pem)
    if not crl.is_signature_valid(ca_cert.public_key()):  # type: ignore[arg-type]
        raise ValueError("the revocation list is not signed by the consortium CA")
    return {r.serial_number for r in crl}
