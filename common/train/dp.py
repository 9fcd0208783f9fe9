"""Differentially private block training: DP-SGD with Opacus (per-sample gradients, clipping,
Gaussian noise, Poisson sampling, the RDP accountant), none of it written here by hand.

What a DP block releases and how each part is covered (README, "Differentially private blocks"):

- the weights: DP-SGD over the training patients, noise calibrated by Opacus so that the planned
  epochs spend at most ``block_epsilon`` at ``block_delta``; the accountant's figure for the steps
  actually run goes on the manifest;
- the input scaling: the task's public ranges (task.toml ``[public_ranges]``), never the site's
  data (a DP mean and std of 70-160 features from a few hundred patients would drown in noise);
- the stopping epoch and the validation metric: computed on the site's validation patients, who
  are never trained on; choosing among the iterates (every one of them covered by the
  accountant) is post-processing for the training patients. Validation patients are not covered
  by epsilon (the manifest's validation metric comes from them; the minimum cell size is the only
  rule there, as in federated evaluation);
- class weights: none (uniform), so no class count leaves; the events count is withheld; the
  number of training patients is public, as DP-SGD's sampling rate (batch / n) reveals it.

The noise and the Poisson draws come from a generator seeded from the operating system, never
from the site's configured seed: noise an attacker could replay would protect nothing.
"""

from __future__ import annotations

import functools
import math
import secrets
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..artifacts.manifest import DPAccount
from ..lego.block import LegoBlock
from ..lego.inputs import Inputs

ACCOUNTANT = "rdp"  # Opacus's Renyi-DP accountant


class DPError(ValueError):
    """A DP setting that cannot work; the message names the setting."""


@dataclass(frozen=True)
class DPBudget:
    """site.toml's DP settings for blocks: the target epsilon, delta (0: 1 / (10 n)), clipping,
    and DP-SGD's learning rate. The defaults are from a development study (bench/privacy_bench.py
    --dev, on splits never reported; docs/RESULTS.md section 9): clipped, noised gradients did best
    with a tighter clip and a larger step than non-private training's."""

    epsilon: float
    delta: float = 0.0
    max_grad_norm: float = 0.1
    lr: float = 3e-3

    def check(self) -> None:
        if not (math.isfinite(self.epsilon) and self.epsilon > 0):
            raise DPError(f"[privacy] block_epsilon must be a positive number, got {self.epsilon}")
        if not (0 <= self.delta < 1) or not math.isfinite(self.delta):
            raise DPError(
                "[privacy] block_delta must be at least 0 and below 1 "
                f"(0: 1 / (10 x training patients)), got {self.delta}"
            )
        if not (math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0):
            raise DPError(
                f"[privacy] max_grad_norm must be a positive number, got {self.max_grad_norm}"
            )
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise DPError(f"[privacy] block_lr must be a positive number, got {self.lr}")

    def delta_for(self, n: int) -> float:
        """The delta used for ``n`` training patients: the configured one, or 1 / (10 n), an order
        of magnitude under the 1 / n at which releasing one patient's record outright would pass."""
        return self.delta if self.delta > 0 else 1.0 / (10.0 * max(n, 1))


def sample_rate(n: int, batch_size: int) -> float:
    return min(1.0, batch_size / max(n, 1))


@functools.lru_cache(maxsize=64)
def noise_multiplier(budget: DPBudget, n: int, batch_size: int, epochs: int) -> float:
    """Opacus's noise multiplier for ``epochs`` epochs of Poisson batches of expected size
    ``batch_size`` over ``n`` patients at (epsilon, delta); :class:`DPError` when the budget is
    too small for the planned epochs (or for even one). Its search takes ~1.5 s: remembered."""
    from opacus.accountants.utils import get_noise_multiplier

    budget.check()
    q, delta = sample_rate(n, batch_size), budget.delta_for(n)

    def sigma(e: int) -> float:
        return float(
            get_noise_multiplier(
                target_epsilon=budget.epsilon,
                target_delta=delta,
                sample_rate=q,
                steps=steps_per_epoch(q) * e,
                accountant=ACCOUNTANT,
            )
        )

    try:
        return sigma(epochs)
    except ValueError:
        try:
            sigma(1)
        except ValueError:
            raise DPError(
                f"[privacy] block_epsilon = {budget.epsilon} is too small for even one epoch "
                f"of {n} patients "
                f"(batch {batch_size}, delta {delta:.3g}): no noise level reaches it"
            ) from None
        raise DPError(
            f"[privacy] block_epsilon = {budget.epsilon} is too small for {epochs} epochs "
            f"of {n} patients; "
            "plan fewer [train] epochs or a larger budget"
        ) from None


def steps_per_epoch(q: float) -> int:
    return max(1, round(1.0 / q))


class _Latent(nn.Module):
    """L0 in a module of its own that takes a batch of ones (b, 1, 1) and returns L0 for each
    sample: Opacus then sees a batch dimension, and the output depends on the input (a backward
    hook fires only then), so L0 gets a per-sample gradient. Holds the block's own Parameter."""

    def __init__(self, value: nn.Parameter) -> None:
        super().__init__()
        self.value = value

    def forward(self, ones: torch.Tensor) -> torch.Tensor:
        return ones * self.value.unsqueeze(0)


class PrivateBlock(nn.Module):
    """A LegoBlock's modules, registered so that every trainable tensor gets a per-sample
    gradient from Opacus (the same Parameter objects: training this trains the block). Bags run
    padded (a packed batch has no per-patient first dimension)."""

    def __init__(self, block: LegoBlock, modality: str) -> None:
        super().__init__()
        self.encoder, self.steps, self.head, self.scaling = (
            block.encoder,
            block.steps,
            block.head,
            block.scaling,
        )
        self.l0 = _Latent(block.latent)
        self.modality = modality
        self._block = (block,)  # not a submodule: its modules are registered above
        if hasattr(
            block.encoder, "pack_below"
        ):  # while training: a packed batch has no per-patient first dimension
            block.encoder.pack_below = 0.0  # type: ignore[assignment]

    def release(self) -> None:
        """The block as it was: its bag encoder packs mostly-padded batches again."""
        vars(self._block[0].encoder).pop("pack_below", None)

    def forward(self, inputs: Inputs) -> torch.Tensor:
        item = inputs[self.modality]
        if item.offsets is not None:
            raise DPError(
                "DP training needs bags padded in memory; bags read from per-slide files are packed"
            )
        block = self._block[0]
        tokens, mask = block.encode(item.x, item.mask)
        ones = torch.ones(
            tokens.shape[0], 1, 1, dtype=tokens.dtype, device=tokens.device, requires_grad=True
        )
        return block.head(block.update(tokens, mask, latent=self.l0(ones)))


@dataclass
class PrivateRun:
    """The DP parts of a training run: the per-sample-gradient model, the accountant, and the
    Poisson batches (drawn with secret randomness)."""

    module: Any  # opacus GradSampleModule
    accountant: Any
    budget: DPBudget
    n: int
    batch_size: int
    sigma: float
    gen: torch.Generator

    @property
    def q(self) -> float:
        return sample_rate(self.n, self.batch_size)

    def batches(self) -> list[np.ndarray]:
        """One epoch of Poisson batches (every patient in each with probability q); an empty
        draw is a step too (counted by the accountant, nothing to train on)."""
        from opacus.utils.uniform_sampler import UniformWithReplacementSampler

        out = []
        sampler = UniformWithReplacementSampler(
            num_samples=self.n,
            sample_rate=self.q,
            generator=self.gen,
            steps=steps_per_epoch(self.q),
        )
        for rows in sampler:
            if len(rows) == 0:
                self.accountant.step(noise_multiplier=self.sigma, sample_rate=self.q)
            else:
                out.append(np.asarray(rows, dtype=np.int64))
        return out

    def account(self) -> DPAccount:
        delta = self.budget.delta_for(self.n)
        steps = sum(s for _, _, s in self.accountant.history)
        spent = float(self.accountant.get_epsilon(delta=delta)) if steps else 0.0
        return DPAccount(
            epsilon=round(spent, 6),
            delta=delta,
            target_epsilon=self.budget.epsilon,
            noise_multiplier=self.sigma,
            sample_rate=self.q,
            steps=int(steps),
            max_grad_norm=self.budget.max_grad_norm,
        )

    def close(self) -> None:
        self.module._close()  # hooks and per-sample gradients off the block's parameters
        if isinstance(self.module._module, PrivateBlock):
            self.module._module.release()


def _expected_warnings() -> None:
    """Opacus's hook on the first layer fires on its output's gradient (the data needs none)."""
    warnings.filterwarnings(
        "ignore",
        message=(
            "Full backward hook is firing when gradients are computed with respect to module "
            "outputs"
        ),
    )


def make_private(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    n: int,
    batch_size: int,
    epochs: int,
    budget: DPBudget,
) -> tuple[Any, torch.optim.Optimizer, PrivateRun]:
    """Wrap ``model`` (a :class:`PrivateBlock`) and its optimizer for DP-SGD with Opacus."""
    from opacus import GradSampleModule
    from opacus.accountants import RDPAccountant
    from opacus.optimizers import DPOptimizer

    _expected_warnings()
    sigma = noise_multiplier(budget, n, batch_size, epochs)
    gen = torch.Generator().manual_seed(secrets.randbits(63))
    module = GradSampleModule(model, batch_first=True, loss_reduction="mean", strict=False)
    q = sample_rate(n, batch_size)
    dp_opt = DPOptimizer(
        optimizer,
        noise_multiplier=sigma,
        max_grad_norm=budget.max_grad_norm,
        expected_batch_size=max(1, round(q * n)),
        loss_reduction="mean",
        generator=gen,
    )
    accountant = RDPAccountant()
    dp_opt.attach_step_hook(accountant.get_optimizer_hook_fn(sample_rate=q))
    return module, dp_opt, PrivateRun(module, accountant, budget, n, batch_size, sigma, gen)


def per_sample_gradients(
    model: nn.Module, loss: Callable[[torch.Tensor], torch.Tensor], inputs: Inputs
) -> dict[str, torch.Tensor]:
    """Opacus's per-sample gradients of ``loss(model(inputs))`` (a mean over the batch) for every
    trainable tensor of ``model``: name -> (b, *shape). For tests and audits."""
    from opacus import GradSampleModule

    _expected_warnings()
    module = GradSampleModule(model, batch_first=True, loss_reduction="mean", strict=False)
    try:
        module.zero_grad(set_to_none=True)
        loss(module(inputs)).backward()
        return {
            name: p.grad_sample.detach().clone()  # type: ignore[attr-defined]
            for name, p in model.named_parameters()
            if p.requires_grad
        }
    finally:
        module._close()
