"""The MM-Lego method: encoders, Fourier latent, LegoBlock, LegoMerge, LegoFuse, recipes."""

from .block import LatentStep, LegoBlock
from .config import BlockConfig
from .encoders import (
    BagEncoder,
    EncoderConfig,
    TabularEncoder,
    build_encoder,
    known_encoders,
    register_encoder,
)
from .ensemble import LegoEnsemble
from .fourier import FOURIER_MODES, to_frequency, to_spatial
from .head import LegoHead
from .inputs import Inputs, ModalityInput, SingleModality
from .legofuse import FUSE_MODES, LegoFuse
from .legomerge import LegoMerge, check_compatible, merged_head
from .merge import HEAD_MERGES, LATENT_MERGES, merge_heads, merge_latents, spherical_mean
from .recipe import RECIPE_KINDS, Recipe

__all__ = [
    "FOURIER_MODES",
    "FUSE_MODES",
    "HEAD_MERGES",
    "LATENT_MERGES",
    "RECIPE_KINDS",
    "BagEncoder",
    "BlockConfig",
    "EncoderConfig",
    "Inputs",
    "LatentStep",
    "LegoBlock",
    "LegoEnsemble",
    "LegoFuse",
    "LegoHead",
    "LegoMerge",
    "ModalityInput",
    "Recipe",
    "SingleModality",
    "TabularEncoder",
    "build_encoder",
    "check_compatible",
    "known_encoders",
    "merge_heads",
    "merge_latents",
    "merged_head",
    "register_encoder",
    "spherical_mean",
    "to_frequency",
    "to_spatial",
]
