"""Comparison models of the benchmark: plain encoders, late concatenation, early fusion,
classical."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

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
        parts = [
            pooled(self.encoders[m], inputs[m]) * present[:, k : k + 1]
            if m in inputs
            else torch.zeros(b, self.dims[k], device=device)
            for k, m in enumerate(self.modalities)
        ]
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
        return (
            np.stack(
                [
                    mod.read(i).mean(axis=0) if n else np.zeros(mod.n_features, dtype=np.float32)
                    for i, n in enumerate(mod.sizes())
                ]
            )
            if len(mod.bags)
            else np.zeros((0, mod.n_features))
        )
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
            out = np.concatenate(
                [
                    mean,
                    last,
                    np.where(np.isfinite(big), big, 0),
                    np.where(np.isfinite(small), small, 0),
                ],
                axis=1,
            )
    return np.where(mod.present.numpy()[:, None], out, 0.0)


def design_matrix(
    data: MultimodalDataset,
    modalities: Sequence[str],
    indicators: bool = False,
    widths: dict[str, int] | None = None,
) -> np.ndarray:
    """The modalities' summary features side by side (zeros where a patient lacks one); with
    ``indicators``, one 0/1 column per modality saying whether the patient has it. ``widths``
    (modality -> columns) lets data without a modality at all give zeros of the right width."""
    return _design(data, modalities, indicators, widths)[0]


def _design(
    data: MultimodalDataset,
    modalities: Sequence[str],
    indicators: bool,
    widths: dict[str, int] | None,
) -> tuple[np.ndarray, dict[str, int]]:
    cols, found = [], {}
    for m in modalities:
        if m in data.modalities:
            cols.append(summary_features(data.modalities[m]))
        elif widths is not None:
            cols.append(np.zeros((len(data), widths[m])))
        else:
            raise ValueError(f"the data has no modality {m!r}")
        found[m] = cols[-1].shape[1]
        if indicators:
            has = (
                data.modalities[m].present.numpy()
                if m in data.modalities
                else np.zeros(len(data), dtype=bool)
            )
            cols.append(has[:, None].astype(np.float64))
    return np.concatenate(cols, axis=1).astype(np.float64), found


class Classical:
    """``classical``: elastic-net Cox (scikit-survival) for survival, L2 logistic regression
    (scikit-learn) for classification; the penalty is chosen on the validation split. With
    ``indicators``, a column per modality says whether the patient has it (missing ones are
    zeros)."""

    def __init__(self, task: TaskSpec, modalities: Sequence[str], indicators: bool = False) -> None:
        self.task = task
        self.modalities = list(modalities)
        self.indicators = indicators
        self.model: object = None
        self.val_metric = float("nan")
        self._c = 1.0
        self._widths: dict[str, int] | None = None

    def _x(self, data: MultimodalDataset) -> np.ndarray:
        return design_matrix(data, self.modalities, self.indicators, self._widths)

    def fit(self, train: MultimodalDataset, val: MultimodalDataset) -> Classical:
        xt, self._widths = _design(train, self.modalities, self.indicators, None)
        xv = self._x(val)
        mu, sd = xt.mean(axis=0), xt.std(axis=0)
        sd[sd < 1e-8] = 1.0
        self._scale = (mu, sd)
        xt, xv = (xt - mu) / sd, (xv - mu) / sd
        best: tuple[float, Any] = (-np.inf, None)
        if self.task.kind == "survival":
            path: Any = self._path(xt, train)
            for a in path.alphas_:
                v = metric(self.task, path.predict(xv, alpha=a), val.targets())
                if v > best[0]:
                    best = (v, a)
            self._alpha = best[1]
            best = (best[0], path)
        else:
            for c in (0.001, 0.01, 0.1, 1.0, 10.0):
                m = self._logistic(xt, train, c)
                v = metric(self.task, self._probs(m, xv), val.targets())
                if v > best[0]:
                    best, self._c = (v, m), c
        self.val_metric, self.model = best
        return self

    def refit(self, data: MultimodalDataset) -> Classical:
        """The same model class and penalty fitted again on ``data`` (the training and validation
        patients together): the penalty stays the one chosen on validation."""
        out = copy.copy(self)
        x = self._x(data)
        mu, sd = x.mean(axis=0), x.std(axis=0)
        sd[sd < 1e-8] = 1.0
        out._scale = (mu, sd)
        x = (x - mu) / sd
        if self.task.kind == "survival":
            out.model = self._path(x, data, alphas=self.model.alphas_)  # type: ignore[attr-defined]
        else:
            out.model = self._logistic(x, data, self._c)
        return out

    def _path(
        self, x: np.ndarray, data: MultimodalDataset, alphas: np.ndarray | None = None
    ) -> object:
        import warnings

        from sksurv.linear_model import CoxnetSurvivalAnalysis
        from sksurv.util import Surv

        assert data.time is not None and data.event is not None
        y = Surv.from_arrays(data.event.astype(bool), data.time)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for ratio in (0.01, 0.05, 0.2):  # a smaller penalty can diverge on small sets
                try:
                    if alphas is not None:
                        return CoxnetSurvivalAnalysis(
                            l1_ratio=0.5, alphas=alphas, max_iter=20000
                        ).fit(x, y)
                    return CoxnetSurvivalAnalysis(
                        l1_ratio=0.5, n_alphas=30, alpha_min_ratio=ratio, max_iter=20000
                    ).fit(x, y)
                except ArithmeticError:
                    if alphas is not None:
                        alphas = alphas[
                            alphas >= self._alpha
                        ]  # drop the smaller penalties that diverged
                    continue
        raise RuntimeError("elastic-net Cox did not converge for any penalty")

    def _logistic(self, x: np.ndarray, data: MultimodalDataset, c: float) -> object:
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=c, max_iter=2000).fit(x, data.label)

    def _probs(self, m: object, x: np.ndarray) -> np.ndarray:
        probs = np.zeros((len(x), self.task.n_classes))
        probs[:, m.classes_] = m.predict_proba(x)  # type: ignore[attr-defined]
        return probs

    def scores(self, data: MultimodalDataset) -> np.ndarray:
        mu, sd = self._scale
        x = (self._x(data) - mu) / sd
        if self.task.kind == "survival":
            return self.model.predict(x, alpha=self._alpha)  # type: ignore[attr-defined]
        return self._probs(self.model, x)
