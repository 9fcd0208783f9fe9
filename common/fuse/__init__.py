"""LegoFuse across sites: the fine-tuning a site runs in one round, FedAvg, and the centralized
procedure that federated rounds must reproduce."""

from .federated import FuseConfig, centralized_fuse, fused_model, local_round, paired_only

__all__ = ["FuseConfig", "centralized_fuse", "fused_model", "local_round", "paired_only"]
