"""LegoFuse across sites: the fine-tuning a site runs in one round, FedAvg, and the centralized
procedure that federated rounds must reproduce."""

from ..fuse_sites import FUSE_SITES, check_fuse_sites
from .federated import (
    FuseConfig,
    centralized_fuse,
    fused_model,
    fused_of,
    local_round,
    paired_only,
    round_patients,
)

__all__ = [
    "FUSE_SITES",
    "FuseConfig",
    "centralized_fuse",
    "check_fuse_sites",
    "fused_model",
    "fused_of",
    "local_round",
    "paired_only",
    "round_patients",
]
