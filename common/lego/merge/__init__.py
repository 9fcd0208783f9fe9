"""Merge operators of LegoMerge: latent merges and head merges, each in a registry by name."""

from .head import HEAD_MERGES, merge_heads, merge_heads_linear, spherical_mean
from .latent import LATENT_MERGES, merge_latents, merge_latents_arithmetic
from .registry import Registry

__all__ = [
    "HEAD_MERGES",
    "LATENT_MERGES",
    "Registry",
    "merge_heads",
    "merge_heads_linear",
    "merge_latents",
    "merge_latents_arithmetic",
    "spherical_mean",
]
