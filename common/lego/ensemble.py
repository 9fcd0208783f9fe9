"""LegoEnsemble: the (weighted) mean of the blocks' predictions, a model of its own beside
LegoMerge. It averages what a clinician reads off a model: the survival curve (so the risk,
-sum_j S_j, is the mean of the blocks' risks) or the class probabilities, over the blocks whose
modality each patient has. It returns logits that give back exactly that mean (hazard logits of
the mean survival curve; log mean probabilities), so every consumer of logits works unchanged."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .inputs import Inputs, batch_size, presence
from .legomerge import BlockSet

CLAMP = 1e-12  # hazards and probabilities are kept inside (CLAMP, 1 - CLAMP) before the logit


class LegoEnsemble(BlockSet):
    """Per sample, the weighted mean over the present blocks of each block's prediction."""

    def forward(self, inputs: Inputs) -> torch.Tensor:
        b = batch_size(inputs)
        device = self._block_list[0].latent.device
        present = presence(inputs, self.modalities, b, device)  # (b, M)
        missing = (~present.any(dim=1)).nonzero().flatten()
        if missing.numel():
            raise ValueError(
                f"samples {missing.tolist()[:10]} have none of the ensemble's modalities"
            )
        survival = self.task.kind == "survival"
        total = torch.zeros(b, self.task.n_outputs, dtype=torch.float64, device=device)
        weight = torch.zeros(b, 1, dtype=torch.float64, device=device)
        for m, block in enumerate(self._block_list):
            rows = present[:, m].nonzero().flatten()
            if not rows.numel():
                continue
            logits = block(*inputs[block.modality].rows(rows)).double()
            pred = (
                torch.exp(torch.cumsum(F.logsigmoid(-logits), dim=1))
                if survival
                else torch.softmax(logits, dim=1)
            )
            w = 1.0 if self.weights is None else self.weights[m]
            total[rows] += w * pred
            weight[rows] += w
        mean = total / weight  # (b, K): the mean survival curve S_j, or the mean probabilities
        if not survival:
            return torch.log(mean.clamp_min(CLAMP)).float()
        previous = torch.cat([torch.ones_like(mean[:, :1]), mean[:, :-1]], dim=1)
        hazard = (1.0 - mean / previous.clamp_min(CLAMP)).clamp(CLAMP, 1.0 - CLAMP)
        return (torch.log(hazard) - torch.log1p(-hazard)).float()
