"""Block artifacts: safetensors weights, manifest, hashing."""

from .blockfile import IntegrityError, build_block, load_block, parse_weights, save_block, weights_bytes
from .hashing import sha256_bytes, sha256_file
from .manifest import BlockManifest

__all__ = [
    "BlockManifest",
    "IntegrityError",
    "build_block",
    "load_block",
    "parse_weights",
    "save_block",
    "sha256_bytes",
    "sha256_file",
    "weights_bytes",
]
