"""A minimal, seeded training loop: one prepared run (:class:`TrainRun`: Adam, the loss scaler,
the batch reader), early stopping on validation with a real copy of the best weights, CUDA with
mixed precision when present, else CPU."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from ..artifacts.manifest import DPAccount
from ..data.bags import Sampling
from ..data.dataset import MultimodalDataset
from ..lego.inputs import ModalityInput
from ..tasks import TaskSpec, bin_index, metric, scores, task_loss
from .batches import BatchReader, evaluation_batches, shuffled
from .dp import DPBudget, PrivateRun, make_private

log = logging.getLogger("mmlego.train")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 50  # upper bound; early stopping usually ends sooner
    batch_size: int = 32
    lr: float = 1e-3  # Adam
    weight_decay: float = 1e-5
    patience: int = 10  # epochs without a better validation metric before stopping
    seed: int = 0  # shuffling, dropout and the instances drawn from each bag
    device: str = "auto"  # "auto" (CUDA if present), "cpu", "cuda", "cuda:1", ...
    amp: bool = True  # mixed precision on CUDA (bf16 where supported, else fp16 + loss scaling)
    select_initial: bool = False  # also consider the starting weights (for fine-tuning)
    # processes that read bags from per-slide files (0: read in this process); unused for
    # in-memory data
    workers: int = 2


@dataclass
class FitResult:
    best_epoch: int  # 0 = the starting weights (only with select_initial)
    best_metric: float
    epochs_run: int
    train_seconds: float
    samples_per_second: float
    device: str
    history: list[dict[str, float]] = field(default_factory=list)
    privacy: DPAccount | None = None  # DP-SGD runs: the budget spent


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but CUDA is not available here")
    return dev


def batch_targets(
    data: MultimodalDataset, spec: TaskSpec, idx: np.ndarray, device: torch.device
) -> dict[str, torch.Tensor]:
    if spec.kind == "survival":
        assert data.time is not None and data.event is not None
        if not spec.bin_edges:
            raise ValueError(
                "survival task has no bin edges; compute them on the training split first"
            )
        return {
            "bin": bin_index(data.time[idx], spec.bin_edges).to(device),
            "event": torch.as_tensor(data.event[idx], dtype=torch.float32, device=device),
        }
    assert data.label is not None
    return {"label": torch.as_tensor(data.label[idx], dtype=torch.long, device=device)}


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[None]:
    if device.type != "cuda" or not enabled:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    data: MultimodalDataset,
    batch_size: int = 256,
    device: torch.device | None = None,
    amp: bool = True,
    reader: BatchReader | None = None,
    workers: int = 0,
    rows: np.ndarray | None = None,
) -> torch.Tensor:
    """Logits for every patient of ``data`` (or its ``rows``), in order. Bags are read whole (or
    their fixed evaluation subset), at most :data:`EVAL_ELEMENTS` instance features a batch."""
    device = device or next(model.parameters()).device
    # only the modules in training mode are switched, and back after: a merge of hundreds of blocks
    # (each loaded in evaluation mode) has tens of thousands, and eval() sets every one
    training = [m for m in model.modules() if m.training]
    for m in training:
        m.training = False
    out = []
    own = reader is None
    reader = reader or BatchReader(data, device, workers)
    plan = (
        evaluation_batches(data, batch_size)
        if rows is None
        else [rows[b] for b in evaluation_batches(data.subset(rows), batch_size)]
    )
    try:
        for _, inputs in reader(plan):
            with _autocast(device, amp):
                out.append(model(inputs).float().cpu())
    finally:
        if own:
            reader.close()
        for m in training:
            m.training = True
    return torch.cat(out) if out else torch.zeros(0, 0)


def predict_scores(
    model: nn.Module, data: MultimodalDataset, spec: TaskSpec, **kw: object
) -> np.ndarray:
    """Risk (survival) or class probabilities for every patient of ``data``."""
    return scores(spec, predict_logits(model, data, **kw)).numpy()  # type: ignore[arg-type]


def evaluate(model: nn.Module, data: MultimodalDataset, spec: TaskSpec, **kw: object) -> float:
    return metric(spec, predict_scores(model, data, spec, **kw), data.targets())


class Interrupted(RuntimeError):
    """Training stopped because its ``stop`` callable said so (a daemon shutting down)."""


Penalty = Callable[[], torch.Tensor]


@dataclass
class TrainRun:
    """One prepared training run: the model on its device, the optimizer and loss scaler, the
    shuffling generator and the batch reader. :meth:`epoch` is one pass, :meth:`step` one update.
    With ``private`` (DP-SGD) the model computes per-sample gradients, the optimizer clips and
    noises them, and the epoch's batches are Poisson draws."""

    model: nn.Module
    spec: TaskSpec
    config: TrainConfig
    device: torch.device
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    gen: torch.Generator
    reader: BatchReader
    penalty: Penalty | None = None  # added to every batch's loss (FedProx's proximal term)
    # DP-SGD: Poisson batches, per-sample clipping and noise (common.train.dp)
    private: PrivateRun | None = None
    epochs_done: int = 0
    # train on these rows of the data only (a fold run); None: every row
    rows: np.ndarray | None = None
    own_reader: bool = True  # close the reader with the run (False: it is shared by several runs)

    def step(self, inputs: dict[str, ModalityInput], targets: dict[str, torch.Tensor]) -> float:
        """One optimizer step on a batch; returns the batch's task loss."""
        with _autocast(self.device, self.config.amp):
            logits = self.model(inputs)
        batch = loss = task_loss(self.spec, logits, targets)
        if self.penalty is not None:
            loss = loss + self.penalty()
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return batch.item()

    def epoch(self, data: MultimodalDataset, stop: Callable[[], bool] | None = None) -> float:
        """One pass over ``data`` in shuffled mini-batches (bags: this epoch's instances); returns
        the summed task loss. ``stop`` is asked before every batch and ends with
        :class:`Interrupted`."""
        self.model.train()
        self.epochs_done += 1
        sampling = Sampling(train=True, seed=self.config.seed, epoch=self.epochs_done)
        total = 0.0
        n = len(data) if self.rows is None else len(self.rows)
        plan = (
            self.private.batches()
            if self.private is not None
            else shuffled(n, self.config.batch_size, self.gen)
        )
        if self.rows is not None:
            plan = [
                self.rows[b] for b in plan
            ]  # positions among the run's rows -> rows of the data
        for rows, inputs in self.reader(plan, sampling):
            if stop is not None and stop():
                raise Interrupted("training stopped on request")
            total += self.step(inputs, batch_targets(data, self.spec, rows, self.device)) * len(
                rows
            )
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return total

    def close(self) -> None:
        if self.own_reader:
            self.reader.close()
        if self.private is not None:
            self.private.close()


def prepare(
    model: nn.Module,
    data: MultimodalDataset,
    spec: TaskSpec,
    config: TrainConfig,
    proximal_mu: float = 0.0,
    reader: BatchReader | None = None,
    rows: np.ndarray | None = None,
) -> TrainRun:
    """Seed, move ``model`` to the configured device, and build the optimizer (Adam), the loss
    scaler (fp16 only), the shuffling generator and the batch reader of ``data`` (or use
    ``reader``, shared with other runs and closed by its owner). ``rows``: train on those rows of
    ``data`` only. ``proximal_mu`` > 0 adds FedProx's mu/2 ||w - w_start||^2 to every batch's
    loss."""
    device = resolve_device(config.device)
    model.to(device)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    fp16 = device.type == "cuda" and config.amp and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=fp16)
    penalty = None
    if proximal_mu > 0:
        start = [p.detach().clone() for p in model.parameters()]

        def penalty() -> torch.Tensor:
            sq = [(p - s).pow(2).sum() for p, s in zip(model.parameters(), start, strict=True)]
            return 0.5 * proximal_mu * torch.stack(sq).sum()

    own = reader is None
    reader = reader if reader is not None else BatchReader(data, device, config.workers)
    return TrainRun(
        model, spec, config, device, opt, scaler, gen, reader, penalty, rows=rows, own_reader=own
    )


def train_epochs(
    model: nn.Module,
    data: MultimodalDataset,
    spec: TaskSpec,
    config: TrainConfig,
    proximal_mu: float = 0.0,
) -> dict[str, float]:
    """Exactly ``config.epochs`` epochs of Adam from the model's current weights, no early stopping
    (one LegoFuse round at a site). ``proximal_mu`` > 0 adds FedProx's mu/2 ||w - w_start||^2."""
    run = prepare(model, data, spec, config, proximal_mu)
    try:
        total = sum(run.epoch(data) for _ in range(config.epochs))
    finally:
        run.close()
    return {
        "train_loss": total / max(1, len(data) * config.epochs),
        "num-examples": float(len(data)),
    }


def _validate(
    model: nn.Module,
    data: MultimodalDataset,
    spec: TaskSpec,
    device: torch.device,
    amp: bool,
    reader: BatchReader,
) -> tuple[float, float]:
    logits = predict_logits(model, data, device=device, amp=amp, reader=reader)
    idx = np.arange(len(data))
    loss = float(
        task_loss(
            spec,
            logits,
            {k: v.cpu() for k, v in batch_targets(data, spec, idx, torch.device("cpu")).items()},
        )
    )
    return metric(spec, scores(spec, logits).numpy(), data.targets()), loss


def fit(
    model: nn.Module,
    train: MultimodalDataset,
    val: MultimodalDataset,
    spec: TaskSpec,
    config: TrainConfig = TrainConfig(),
    progress: bool = False,
    label: str = "train",
    stop: Callable[[], bool] | None = None,
    private: DPBudget | None = None,
) -> FitResult:
    """Train ``model`` (a function of :data:`Inputs` returning logits) in place and leave it
    holding the weights that were best on ``val`` (by metric, then by lower loss). ``stop`` is
    asked before every batch; when it says yes, :class:`Interrupted` is raised. ``private``:
    DP-SGD with Opacus at that budget (``model`` a :class:`~common.train.dp.PrivateBlock`); the
    result carries the epsilon spent."""
    run = prepare(model, train, spec, config)
    try:
        if private is not None:
            run.model, run.optimizer, run.private = make_private(
                run.model, run.optimizer, len(train), config.batch_size, config.epochs, private
            )
        with BatchReader(val, run.device, config.workers) as val_reader:
            res = _fit(run, train, val, val_reader, progress, label, stop)
        return res if run.private is None else replace(res, privacy=run.private.account())
    finally:
        run.close()


def _fit(
    run: TrainRun,
    train: MultimodalDataset,
    val: MultimodalDataset,
    val_reader: BatchReader,
    progress: bool,
    label: str,
    stop: Callable[[], bool] | None,
) -> FitResult:
    model, spec, config, device = run.model, run.spec, run.config, run.device

    def snapshot() -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in model.state_dict().items()}  # a real copy

    best: tuple[float, float] = (-np.inf, -np.inf)
    best_state, best_epoch, stale = snapshot(), 0, 0
    history: list[dict[str, float]] = []
    if config.select_initial:
        m, loss = _validate(model, val, spec, device, config.amp, val_reader)
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
        total = run.epoch(train, stop)
        seen += len(train)
        busy += time.perf_counter() - t0
        m, vloss = _validate(model, val, spec, device, config.amp, val_reader)
        history.append(
            {"epoch": epoch, "train_loss": total / len(train), "val_metric": m, "val_loss": vloss}
        )
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
    log.info(
        "%s: best epoch %d of %d, val %s %.4f", label, best_epoch, epoch, spec.metric_name, best[0]
    )
    return FitResult(
        best_epoch,
        float(best[0]),
        epoch,
        busy,
        seen / busy if busy > 0 else 0.0,
        str(device),
        history,
    )


@dataclass
class FoldFit:
    """K fold copies trained in lockstep: the epoch count chosen on their out-of-fold metric."""

    best_epoch: int  # epochs of the chosen weights (each copy holds its weights of that epoch)
    best_metric: float  # the out-of-fold metric over every patient at that epoch
    epochs_run: int
    train_seconds: float
    history: list[dict[str, float]] = field(
        default_factory=list
    )  # epoch, out-of-fold metric and loss
    privacy: list[DPAccount] = field(
        default_factory=list
    )  # DP-SGD runs: the budget each copy spent


def fit_folds(
    models: list[nn.Module],
    data: MultimodalDataset,
    fold_of: np.ndarray,
    spec: TaskSpec,
    config: TrainConfig = TrainConfig(),
    label: str = "folds",
    stop: Callable[[], bool] | None = None,
    private: DPBudget | None = None,
) -> FoldFit:
    """Cross-fitting: model k trains on the rows of ``data`` whose fold (``fold_of``, (n,)) is not
    k, one epoch each in turn; after every epoch each predicts its held-out fold, and the metric
    of those out-of-fold predictions over every row (ties: lower loss) chooses the epoch count,
    with early stopping after ``config.patience`` epochs without a better one. Every model is
    left holding its weights of the chosen epoch. The runs share one batch reader (bags read by
    one set of workers, not K)."""
    device = resolve_device(config.device)
    held = [np.flatnonzero(fold_of == k) for k in range(len(models))]
    if any(h.size == 0 for h in held) or len(fold_of) != len(data):
        raise ValueError(f"{label}: every one of the {len(models)} folds needs patients of its own")
    runs: list[TrainRun] = []
    with BatchReader(data, device, config.workers) as reader:
        try:
            for k, model in enumerate(models):
                run = prepare(
                    model, data, spec, config, reader=reader, rows=np.flatnonzero(fold_of != k)
                )
                if private is not None:
                    assert run.rows is not None
                    run.model, run.optimizer, run.private = make_private(
                        run.model,
                        run.optimizer,
                        len(run.rows),
                        config.batch_size,
                        config.epochs,
                        private,
                    )
                runs.append(run)
            res = _fit_folds(runs, data, held, reader, device, label, stop)
            return (
                res
                if private is None
                else replace(res, privacy=[r.private.account() for r in runs if r.private])
            )
        finally:
            for run in runs:
                run.close()


def _fit_folds(
    runs: list[TrainRun],
    data: MultimodalDataset,
    held: list[np.ndarray],
    reader: BatchReader,
    device: torch.device,
    label: str,
    stop: Callable[[], bool] | None,
) -> FoldFit:
    spec, config = runs[0].spec, runs[0].config
    targets = batch_targets(data, spec, np.arange(len(data)), torch.device("cpu"))

    def snapshot() -> list[dict[str, torch.Tensor]]:
        return [
            {k: v.detach().clone() for k, v in r.model.state_dict().items()} for r in runs
        ]  # real copies

    best: tuple[float, float] = (-np.inf, -np.inf)
    best_state, best_epoch, stale, busy = snapshot(), 0, 0, 0.0
    history: list[dict[str, float]] = []
    epoch = 0
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        for run in runs:
            run.epoch(data, stop)
        busy += time.perf_counter() - t0
        parts = [
            predict_logits(r.model, data, device=device, amp=config.amp, reader=reader, rows=h)
            for r, h in zip(runs, held, strict=True)
        ]
        oof = torch.empty(
            len(data), parts[0].shape[1]
        )  # (n, outputs): each row predicted by the copy that never saw it
        for h, part in zip(held, parts, strict=True):
            oof[torch.as_tensor(h)] = part
        m = metric(spec, scores(spec, oof).numpy(), data.targets())
        loss = float(task_loss(spec, oof, targets))
        history.append({"epoch": epoch, "oof_metric": m, "oof_loss": loss})
        if (m, -loss) > best:
            best, best_state, best_epoch, stale = (m, -loss), snapshot(), epoch, 0
        else:
            stale += 1
            if stale >= config.patience:
                break
    for run, state in zip(runs, best_state, strict=True):
        run.model.load_state_dict(state)
    log.info(
        "%s: %d fold copies, best epoch %d of %d, out-of-fold %s %.4f",
        label,
        len(runs),
        best_epoch,
        epoch,
        spec.metric_name,
        best[0],
    )
    return FoldFit(best_epoch, float(best[0]), epoch, busy, history)


def train_fixed(
    model: nn.Module,
    data: MultimodalDataset,
    spec: TaskSpec,
    config: TrainConfig,
    stop: Callable[[], bool] | None = None,
    private: DPBudget | None = None,
) -> FitResult:
    """Exactly ``config.epochs`` epochs on every row of ``data``, no validation (a cross-fitted
    block's final training, its epoch count chosen out of fold); ``private``: DP-SGD planned for
    those epochs, the result carrying the epsilon spent."""
    run = prepare(model, data, spec, config)
    try:
        if private is not None:
            run.model, run.optimizer, run.private = make_private(
                run.model, run.optimizer, len(data), config.batch_size, config.epochs, private
            )
        t0 = time.perf_counter()
        for _ in range(config.epochs):
            run.epoch(data, stop)
        busy = time.perf_counter() - t0
        seen = len(data) * config.epochs
        return FitResult(
            config.epochs,
            float("nan"),
            config.epochs,
            busy,
            seen / busy if busy > 0 else 0.0,
            str(run.device),
            privacy=run.private.account() if run.private is not None else None,
        )
    finally:
        run.close()
