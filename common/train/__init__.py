"""Training and evaluation of blocks and multimodal models."""

from .loop import (
    FitResult,
    Interrupted,
    TrainConfig,
    evaluate,
    fit,
    predict_logits,
    predict_scores,
    resolve_device,
)

__all__ = [
    "FitResult",
    "Interrupted",
    "TrainConfig",
    "evaluate",
    "fit",
    "predict_logits",
    "predict_scores",
    "resolve_device",
]
