"""Who a certificate speaks for: name, role (site/admin), enrolled modalities, paired flag and
the Ed25519 key that signs the site's blocks, all bound into the certificate by the CA."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

Role = Literal["site", "admin", "server"]
ROLES: tuple[str, ...] = ("site", "admin", "server")
URN = "urn:mmlego:"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def check_name(kind: str, value: str) -> str:
    """Site, admin and modality names: lower-case letters, digits, '.', '_', '-' (no paths)."""
    if not NAME_RE.match(value):
        raise ValueError(
            f"{kind} name {value!r} is not allowed: "
            "use 1-63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value


@dataclass(frozen=True)
class Identity:
    name: str
    role: Role
    modalities: tuple[str, ...] = ()
    paired: bool = False
    signing_key: bytes = field(
        default=b"", repr=False
    )  # raw Ed25519 public key (32 bytes), sites only
    serial: int = 0

    def uris(self) -> list[str]:
        out = [f"{URN}role:{self.role}"] + [f"{URN}modality:{m}" for m in self.modalities]
        if self.paired:
            out.append(f"{URN}paired")
        if self.signing_key:
            out.append(
                f"{URN}ed25519:{base64.urlsafe_b64encode(self.signing_key).decode().rstrip('=')}"
            )
        return out

    def verifier(self) -> ed25519.Ed25519PublicKey:
        if len(self.signing_key) != 32:
            raise ValueError(f"{self.name!r} has no enrolled signing key")
        return ed25519.Ed25519PublicKey.from_public_bytes(self.signing_key)


def identity_from_cert(cert: x509.Certificate) -> Identity:
    """Read the identity the CA wrote into ``cert``; raise if it carries none."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not cns:
        raise ValueError("certificate has no common name")
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as exc:
        raise ValueError("certificate carries no mmlego identity") from exc
    role, modalities, paired, key = None, [], False, b""
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if not uri.startswith(URN):
            continue
        kind, _, value = uri[len(URN) :].partition(":")
        if kind == "role":
            role = value
        elif kind == "modality":
            modalities.append(value)
        elif kind == "paired":
            paired = True
        elif kind == "ed25519":
            key = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    if role not in ROLES:
        raise ValueError(f"certificate has no valid mmlego role (got {role!r})")
    return Identity(str(cns[0].value), role, tuple(modalities), paired, key, cert.serial_number)  # type: ignore[arg-type]
