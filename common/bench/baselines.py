"""Comparison models of the benchmark: plain encoders, late concatenation, early fusion, classical."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..data.bags import BagData
from ..data.dataset import ModalityData, MultimodalDataset
from ..lego import BlockConfig, EncoderConfig, LegoBlock, LegoFuse, build_encoder
from ..lego.encoders import run_encoder
from ..lego.inputs import Inputs, ModalityInput, batch_size, presence
from ..tasks import TaskSpec, metric


def pooled(encoder: nn.Module, item: ModalityInput) -> torch.Tensor:
    """Mean of an encoder's valid tokens: (b, D); zeros for a sample with none."""
    tokens, tmask = run_encoder(encoder, item.x, item.mask, item.offsets)
    w = tmask.float().unsqueeze(-1)
    return (tokens * w).sum(dim=1) / w.sum(dim=1).clamp_min(1.0)


class EncoderModel(nn.Module):
    """``encoder:<m>``: the plain SNN / attention-MIL encoder with a linear head."""

    def __init__(self, config: EncoderConfig, modality: str, n_outputs: int) -> None:
        super().__init__()
        self.modality = modality
        self.encoder = build_encoder(config)
        self.head = nn.Linear(config.token_dim, n_outputs)

    def forward(self, inputs: Inputs) -> torch.Tensor:
        item = inputs[self.modality]
        return self.head(pooled(self.encoder, item))


class LateConcat(nn.Module):
    """``late-concat``: one encoder per modality, pooled embeddings concatenated (zeros where a
    modality is absent), a linear head; trained end to end."""

    def __init__(self, configs: dict[str, EncoderConfig], n_outputs: int) -> None:
        super().__init__()
        self.modalities = list(configs)
        self.dims = [c.token_dim for c in configs.values()]
        self.encoders = nn.ModuleDict({m: build_encoder(c) for m, c in configs.items()})
        self.head = nn.Linear(sum(self.dims), n_outputs)

    def forward(self, inputs: Inputs) -> torch.Tensor:
        device = self.head.weight.device
        b = batch_size(inputs)
        present = presence(inputs, self.modalities, b, device)
        parts = [pooled(self.encoders[m], inputs[m]) * present[:, k : k + 1] if m in inputs
                 else torch.zeros(b, self.dims[k], device=device) for k, m in enumerate(self.modalities)]
        return self.head(torch.cat(parts, dim=1))


def early_fusion(configs: Sequence[BlockConfig]) -> LegoFuse:
    """``early-fusion``: an end-to-end iterative cross-attention model over all modalities
    (HEALNet-style: one shared latent, each layer attends to each modality in turn). Built as
    the weave architecture from freshly initialised, untrained blocks, so that it differs from
    LegoFuse only by not starting from trained blocks."""
    return LegoFuse([LegoBlock(c) for c in configs], mode="weave")


# ---- classical models on hand-made features ---------------------------------------------------

def summary_features(mod: ModalityData | BagData) -> np.ndarray:
    """A modality as a flat table: tabular as is; a fixed-length bag flattened; a variable-length
    sequence summarised per feature by mean, last, min and max over its real steps; bags of
    per-slide files by the mean of their instances (each read once, its evaluation subset)."""
    if isinstance(mod, BagData):
        return np.stack([mod.read(i).mean(axis=0) if n else np.zeros(mod.n_features, dtype=np.float32)
                         for i, n in enumerate(mod.sizes())]) if len(mod.bags) else np.zeros((0, mod.n_features))
    x = mod.x.numpy()
    if mod.kind == "tabular":
        out = x
    else:
        assert mod.mask is not None
        mask = mod.mask.numpy()
        if mask[mod.present.numpy()].all():
            out = x.reshape(len(x), -1)
        else:
            m = mask[..., None]
            count = np.maximum(m.sum(axis=1), 1)
            mean = (x * m).sum(axis=1) / count
            last_idx = np.maximum(mask.sum(axis=1) - 1, 0)
            last = x[np.arange(len(x)), last_idx]
            big = np.where(m, x, np.inf).min(axis=1)
            small = np.where(m, x, -np.inf).max(axis=1)
            out = np.concatenate([mean, last, np.where(np.isfinite(big), big, 0), np.where(np.isfinite(small), small, 0)], axis=1)
    return np.where(mod.present.numpy()[:, None], out, 0.0)


def design_matrix(data: MultimodalDataset, modalities: Sequence[str]) -> np.ndarray:
    return np.concatenate([summary_features(data.modalities[m]) for m in modalities], axis=1).astype(np.float64)


class Classical:
    """``classical``: elastic-net Cox (scikit-survival) for survival, L2 logistic regression
    (scikit-learn) for classification; the penalty is chosen on the validation split."""

    def __init__(self, task: TaskSpec, modalities: Sequence[str]) -> None:
        self.task = task
        self.modalities = list(modalities)
        self.model: object = None
        self.val_metric = float("nan")

    def fit(self, train: MultimodalDataset, val: MultimodalDataset) -> Classical:
        xt, xv = design_matrix(train, self.modalities), design_matrix(val, self.modalities)
        mu, sd = xt.mean(axis=0), xt.std(axis=0)
        sd[sd < 1e-8] = 1.0
        self._scale = (mu, sd)
        xt, xv = (xt - mu) / sd, (xv - mu) / sd
        best = (-np.inf, None)
        if self.task.kind == "survival":
            import warnings

            from sksurv.linear_model import CoxnetSurvivalAnalysis
            from sksurv.util import Surv

            assert train.time is not None and train.event is not None
            y = Surv.from_arrays(train.event.astype(bool), train.time)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for ratio in (0.01, 0.05, 0.2):  # a smaller penalty can diverge on small sets
                    try:
                        path = CoxnetSurvivalAnalysis(l1_ratio=0.5, n_alphas=30, alpha_min_ratio=ratio, max_iter=20000).fit(xt, y)
                        break
                    except ArithmeticError:
                        continue
                else:
                    raise RuntimeError("elastic-net Cox did not converge for any penalty")
                for a in path.alphas_:
                    v = metric(self.task, path.predict(xv, alpha=a), val.targets())
                    if v > best[0]:
                        best = (v, a)
                self._alpha = best[1]
                best = (best[0], path)
        else:
            from sklearn.linear_model import LogisticRegression

            for c in (0.001, 0.01, 0.1, 1.0, 10.0):
                m = LogisticRegression(C=c, max_iter=2000).fit(xt, train.label)
                probs = np.zeros((len(xv), self.task.n_classes))
                probs[:, m.classes_] = m.predict_proba(xv)
                v = metric(self.task, probs, val.targets())
                if v > best[0]:
                    best = (v, m)
        self.val_metric, self.model = best
        return self

    def scores(self, data: MultimodalDataset) -> np.ndarray:
        mu, sd = self._scale
        x = (design_matrix(data, self.modalities) - mu) / sd
        if self.task.kind == "survival":
            return self.model.predict(x, alpha=self._alpha)  # type: ignore[attr-defined]
        probs = np.zeros((len(x), self.task.n_classes))
        probs[:, self.model.classes_] = self.model.predict_proba(x)  # type: ignore[attr-defined]
        return probs
