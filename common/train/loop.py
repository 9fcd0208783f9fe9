"""A minimal, seeded training loop: Adam, early stopping on validation with a real copy of the
best weights, CUDA with mixed precision when present, else CPU."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..data.dataset import MultimodalDataset
from ..lego.inputs import ModalityInput
from ..tasks import TaskSpec, bin_index, metric, scores, task_loss

log = logging.getLogger("mmlego.train")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 50  # upper bound; early stopping usually ends sooner
    batch_size: int = 32
    lr: float = 1e-3  # Adam
    weight_decay: float = 1e-5
    patience: int = 10  # epochs without a better validation metric before stopping
    seed: int = 0  # shuffling and dropout
    device: str = "auto"  # "auto" (CUDA if present), "cpu", "cuda", "cuda:1", ...
    amp: bool = True  # mixed precision on CUDA (bf16 where supported, else fp16 + loss scaling)
    select_initial: bool = False  # also consider the starting weights (for fine-tuning)


@dataclass
class FitResult:
    best_epoch: int  # 0 = the starting weights (only with select_initial)
    best_metric: float
    epochs_run: int
    train_seconds: float
    samples_per_second: float
    device: str
    history: list[dict[str, float]] = field(default_factory=list)


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but CUDA is not available here")
    return dev


def batch_targets(data: MultimodalDataset, spec: TaskSpec, idx: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
    if spec.kind == "survival":
        assert data.time is not None and data.event is not None
        if not spec.bin_edges:
            raise ValueError("survival task has no bin edges; compute them on the training split first")
        return {"bin": bin_index(data.time[idx], spec.bin_edges).to(device),
                "event": torch.as_tensor(data.event[idx], dtype=torch.float32, device=device)}
    assert data.label is not None
    return {"label": torch.as_tensor(data.label[idx], dtype=torch.long, device=device)}


def batch_inputs(data: MultimodalDataset, idx: np.ndarray, device: torch.device) -> dict[str, ModalityInput]:
    t = torch.as_tensor(idx)
    return {k: v.to(device) for k, v in data.inputs(t).items()}


def _batches(n: int, size: int, gen: torch.Generator | None) -> Iterator[np.ndarray]:
    order = torch.randperm(n, generator=gen).numpy() if gen is not None else np.arange(n)
    for i in range(0, n, size):
        yield order[i:i + size]


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[None]:
    if device.type != "cuda" or not enabled:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


@torch.no_grad()
def predict_logits(model: nn.Module, data: MultimodalDataset, batch_size: int = 256,
                   device: torch.device | None = None, amp: bool = True) -> torch.Tensor:
    device = device or next(model.parameters()).device
    was = model.training
    model.eval()
    out = []
    for idx in _batches(len(data), batch_size, None):
        with _autocast(device, amp):
            out.append(model(batch_inputs(data, idx, device)).float().cpu())
    model.train(was)
    return torch.cat(out)


def predict_scores(model: nn.Module, data: MultimodalDataset, spec: TaskSpec, **kw: object) -> np.ndarray:
    """Risk (survival) or class probabilities for every patient of ``data``."""
    return scores(spec, predict_logits(model, data, **kw)).numpy()  # type: ignore[arg-type]


def evaluate(model: nn.Module, data: MultimodalDataset, spec: TaskSpec, **kw: object) -> float:
    return metric(spec, predict_scores(model, data, spec, **kw), data.targets())


@torch.no_grad()
def _validate(model: nn.Module, data: MultimodalDataset, spec: TaskSpec, device: torch.device, amp: bool) -> tuple[float, float]:
    logits = predict_logits(model, data, device=device, amp=amp)
    idx = np.arange(len(data))
    loss = float(task_loss(spec, logits, {k: v.cpu() for k, v in batch_targets(data, spec, idx, torch.device("cpu")).items()}))
    return metric(spec, scores(spec, logits).numpy(), data.targets()), loss


class Interrupted(RuntimeError):
    """Training stopped because its ``stop`` callable said so (a daemon shutting down)."""


def run_epoch(model: nn.Module, data: MultimodalDataset, spec: TaskSpec, opt: torch.optim.Optimizer,
              scaler: torch.amp.GradScaler, gen: torch.Generator, device: torch.device, config: TrainConfig,
              penalty: Callable[[], torch.Tensor] | None = None, stop: Callable[[], bool] | None = None) -> float:
    """One pass over ``data`` in shuffled mini-batches; returns the summed task loss. ``penalty``
    is added to every batch's loss (FedProx's proximal term); ``stop`` is asked before every
    batch and ends training with :class:`Interrupted`."""
    model.train()
    total = 0.0
    for idx in _batches(len(data), config.batch_size, gen):
        if stop is not None and stop():
            raise Interrupted("training stopped on request")
        inputs = batch_inputs(data, idx, device)
        targets = batch_targets(data, spec, idx, device)
        with _autocast(device, config.amp):
            batch_loss = task_loss(spec, model(inputs), targets)
        loss = batch_loss + penalty() if penalty is not None else batch_loss
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        total += batch_loss.item() * len(idx)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return total


def train_epochs(model: nn.Module, data: MultimodalDataset, spec: TaskSpec, config: TrainConfig,
                 proximal_mu: float = 0.0) -> dict[str, float]:
    """Exactly ``config.epochs`` epochs of Adam from the model's current weights, no early stopping
    (one LegoFuse round at a site). ``proximal_mu`` > 0 adds FedProx's mu/2 ||w - w_start||^2."""
    device = resolve_device(config.device)
    model.to(device)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and config.amp and not torch.cuda.is_bf16_supported())
    penalty = None
    if proximal_mu > 0:
        start = [p.detach().clone() for p in model.parameters()]

        def penalty() -> torch.Tensor:
            sq = [(p - s).pow(2).sum() for p, s in zip(model.parameters(), start, strict=True)]
            return 0.5 * proximal_mu * torch.stack(sq).sum()

    total = sum(run_epoch(model, data, spec, opt, scaler, gen, device, config, penalty) for _ in range(config.epochs))
    return {"train_loss": total / max(1, len(data) * config.epochs), "num-examples": float(len(data))}


def fit(model: nn.Module, train: MultimodalDataset, val: MultimodalDataset, spec: TaskSpec,
        config: TrainConfig = TrainConfig(), progress: bool = False, label: str = "train",
        stop: Callable[[], bool] | None = None) -> FitResult:
    """Train ``model`` (a function of :data:`Inputs` returning logits) in place and leave it
    holding the weights that were best on ``val`` (by metric, then by lower loss). ``stop`` is
    asked before every batch; when it says yes, :class:`Interrupted` is raised."""
    device = resolve_device(config.device)
    model.to(device)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    fp16 = device.type == "cuda" and config.amp and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=fp16)

    def snapshot() -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in model.state_dict().items()}  # a real copy

    best: tuple[float, float] = (-np.inf, -np.inf)
    best_state, best_epoch, stale = snapshot(), 0, 0
    history: list[dict[str, float]] = []
    if config.select_initial:
        m, loss = _validate(model, val, spec, device, config.amp)
        best, best_state = (m, -loss), snapshot()
        history.append({"epoch": 0, "val_metric": m, "val_loss": loss})
    seen, busy = 0, 0.0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.epochs, desc=label, unit="ep", leave=False, file=sys.stderr)
    epoch = 0
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        total = run_epoch(model, train, spec, opt, scaler, gen, device, config, stop=stop)
        seen += len(train)
        busy += time.perf_counter() - t0
        m, vloss = _validate(model, val, spec, device, config.amp)
        history.append({"epoch": epoch, "train_loss": total / len(train), "val_metric": m, "val_loss": vloss})
        if (m, -vloss) > best:
            best, best_state, best_epoch, stale = (m, -vloss), snapshot(), epoch, 0
        else:
            stale += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix({spec.metric_name: f"{m:.3f}", "best": f"{best[0]:.3f}"})
        if stale >= config.patience:
            break
    if bar is not None:
        bar.close()
    model.load_state_dict(best_state)
    log.info("%s: best epoch %d of %d, val %s %.4f", label, best_epoch, epoch, spec.metric_name, best[0])
    return FitResult(best_epoch, float(best[0]), epoch, busy, seen / busy if busy > 0 else 0.0, str(device), history)
