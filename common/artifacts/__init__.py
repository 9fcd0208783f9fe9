"""Block artifacts: safetensors weights, protobuf manifest, signatures, hashing."""

from .blockfile import (
    BlockFiles,
    IntegrityError,
    build_block,
    check_manifest,
    expected_tensors,
    load_block,
    parse_weights,
    read_block_files,
    save_block,
    weights_bytes,
)
from .hashing import sha256_bytes, sha256_file
from .manifest import BlockManifest
from .signing import SignatureError, load_signing_key, public_bytes, sign, verify

__all__ = [
    "BlockFiles",
    "BlockManifest",
    "IntegrityError",
    "SignatureError",
    "build_block",
    "check_manifest",
    "expected_tensors",
    "load_block",
    "load_signing_key",
    "parse_weights",
    "public_bytes",
    "read_block_files",
    "save_block",
    "sha256_bytes",
    "sha256_file",
    "sign",
    "verify",
    "weights_bytes",
]
