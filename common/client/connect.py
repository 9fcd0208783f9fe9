"""Channels to the coordinator: mutual TLS with a kit's files, or plaintext on loopback."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

CHUNK_BYTES = 1 << 20  # weights per upload/download message (the protocol's limit)
MAX_MESSAGE = 2 << 20  # a chunk or a manifest, with room for framing
INSECURE_CERT_KEY = "mmlego-client-cert-bin"


@dataclass(frozen=True)
class TLSFiles:
    cert: Path
    key: Path
    ca: Path

    def check(self) -> None:
        for what, p in (("certificate", self.cert), ("key", self.key), ("CA certificate", self.ca)):
            if not p.is_file():
                raise FileNotFoundError(
                    f"TLS {what} {p} not found (it comes with the enrolment kit)"
                )


def open_channel(
    address: str, tls: TLSFiles, insecure: bool = False
) -> tuple[grpc.Channel, tuple[tuple[str, bytes], ...]]:
    """A channel and the metadata to send on every call (plaintext mode only: the certificate)."""
    tls.check()
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        ("grpc.max_send_message_length", MAX_MESSAGE),
    ]
    if insecure:
        return grpc.insecure_channel(address, options=options), (
            (INSECURE_CERT_KEY, tls.cert.read_bytes()),
        )
    creds = grpc.ssl_channel_credentials(
        root_certificates=tls.ca.read_bytes(),
        private_key=tls.key.read_bytes(),
        certificate_chain=tls.cert.read_bytes(),
    )
    return grpc.secure_channel(address, creds, options=options), ()
