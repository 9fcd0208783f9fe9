"""Ed25519 signatures of block manifests: a site signs the exact manifest bytes (which carry the
weights' sha256); anyone with the site's certificate can check them."""

from __future__ import annotations

from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519


class SignatureError(ValueError):
    """A signature that does not verify, or a key that cannot be used."""


def load_signing_key(path: str | Path) -> ed25519.Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"{path} is not a PEM private key: {exc}") from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise SignatureError(f"{path} is not an Ed25519 signing key")
    return key


def public_bytes(key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def sign(manifest: bytes, key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.sign(manifest)


def verify(manifest: bytes, signature: bytes, public_key: bytes) -> None:
    """Raise :class:`SignatureError` unless ``signature`` is the holder of ``public_key``'s over
    ``manifest``."""
    if len(public_key) != 32:
        raise SignatureError("no Ed25519 signing key is enrolled for the signer")
    try:
        ed25519.Ed25519PublicKey.from_public_bytes(public_key).verify(signature, manifest)
    except InvalidSignature:
        raise SignatureError(
            "the manifest's signature does not verify against the signer's enrolled key"
        ) from None
