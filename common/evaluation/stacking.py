"""Stacked recipes: weights for blocks (or for modalities) fitted on the sites' out-of-fold
predictions, without a single prediction leaving a site.

The model a stack fits is linear in a short weight vector ``beta`` (one weight per *component*:
a block alone, or the ensemble of one modality's blocks): a patient's linear predictor is
``sum_g beta_g x_g`` over the components whose modality the patient has (survival: ``x_g`` is
the component's risk, minus the sum of its survival curve; classification: the logits are
``sum_g beta_g log p_g``). The loss is the Cox partial likelihood (Breslow ties) or the
cross-entropy; both are convex in ``beta``. A site computes, at the weights the coordinator
sends, the loss, gradient and Hessian summed over its patients, each patient scored by the
component models rebuilt from the site's fold copies that never saw it (cross-fitting), and for
each of its folds apart (the Cox risk sets stay within one site and one fold, so the folds' sums
add up to the site's). Only sums over at least ``min_cell_size`` patients and events leave it:
when a fold is smaller, the site sends its total only.

The coordinator sums the sites' statistics and takes damped Newton steps (:func:`newton`), a
job per step. At the last point it also has, per fold, what the fit on every other fold would
be (one Newton step without that fold's sums) and how that fit does on the fold left out (the
second-order expansion of the fold's own loss): :func:`shrinkage` picks, on this out-of-fold
loss, how far the fitted weights are pulled back towards the uniform ones. The result drives a
weighted LegoMerge and a weighted ensemble (:func:`block_weights`), which are then scored like
any other candidate; nothing is published on the fit alone."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# stack jobs (Newton steps) a merge opens at most, each waited for up to the evaluation deadline
# before the merge's scoring job: a caller waiting for a merge allows for all of them
STACK_JOBS = 4

MAX_COMPONENTS = 16  # weights of one stack, at most (a site holds n x G x G numbers to sum)
MAX_POINTS = 4  # weight vectors a site is asked about in one job
SHRINKS = (0.0, 0.25, 0.5, 0.75, 1.0)  # the fraction of the fit kept, tried out of fold
RIDGE = 1e-4  # added to the Hessian's diagonal, times its mean diagonal: a flat direction stays
MAX_STEP = 2.0  # a Newton step moves the weights by at most this times their norm (or 1)
FLOOR = 0.02  # a published weight is at least this share of the largest one (weights are > 0)
EPS = 1e-9


@dataclass(frozen=True)
class StackStats:
    """A site's sums at one point of a stack job: over its patients of one fold (``fold`` >= 0)
    or over all of them (``fold`` = -1: the site sends this when a fold is under its minimum
    cell size); ``hessian`` is G x G, row by row."""

    point: int
    fold: int
    patients: int
    events: int
    loss: float
    gradient: tuple[float, ...]
    hessian: tuple[float, ...]

    def problem(self, components: int, points: int, max_folds: int) -> str | None:
        """Why these numbers cannot be (wrong sizes, non-finite, a point or fold out of range, a
        Hessian that is not symmetric positive semi-definite), or None."""
        g = components
        if not 0 <= self.point < points:
            return f"point {self.point} is not one of the job's {points}"
        if not -1 <= self.fold < max_folds:
            return f"fold {self.fold} cannot be (-1 for all patients, else 0..{max_folds - 1})"
        if self.patients < 1 or not 0 <= self.events <= self.patients:
            return f"patients {self.patients} and events {self.events} cannot be"
        if len(self.gradient) != g or len(self.hessian) != g * g:
            return f"a gradient of {g} and a Hessian of {g * g} numbers were expected"
        values = (self.loss, *self.gradient, *self.hessian)
        if not all(math.isfinite(v) for v in values) or self.loss < 0:
            return "the loss, gradient and Hessian must be finite (the loss >= 0)"
        h = np.asarray(self.hessian, dtype=np.float64).reshape(g, g)
        scale = max(1.0, float(np.abs(h).max()))
        if not np.allclose(h, h.T, atol=1e-6 * scale):
            return "the Hessian is not symmetric"
        if float(np.linalg.eigvalsh((h + h.T) / 2).min()) < -1e-6 * scale:
            return "the Hessian is not positive semi-definite (the losses are convex)"
        return None


# ---- the site's side --------------------------------------------------------------------------
def features(
    kind: str, scores: Sequence[np.ndarray | None], masks: Sequence[np.ndarray], n: int
) -> tuple[np.ndarray, np.ndarray]:
    """The stack's inputs from each component's scores of ``n`` patients (None or a mask:
    patients it did not score): ``x`` (n, G) risks, or (n, G, K) log-probabilities, 0 where
    absent; ``present`` (n, G)."""
    g = len(scores)
    present = np.zeros((n, g), dtype=bool)
    width = next((s.shape[1] for s in scores if s is not None and s.ndim == 2), 0)
    x = np.zeros((n, g, width) if kind == "classification" else (n, g), dtype=np.float64)
    for j, (s, m) in enumerate(zip(scores, masks, strict=True)):
        if s is None:
            continue
        present[:, j] = m
        if kind == "classification":
            x[m, j] = np.log(np.clip(s[m], 1e-12, 1.0))
        else:
            x[m, j] = s[m]
    return x, present


def loss_grad_hess(
    kind: str, x: np.ndarray, targets: Mapping[str, np.ndarray], beta: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """The loss (a sum over the patients of ``x``), its gradient and Hessian in ``beta``."""
    if kind == "survival":
        return _cox(x, np.asarray(targets["time"], float), np.asarray(targets["event"]), beta)
    return _softmax(x, np.asarray(targets["label"], dtype=int), beta)


def _cox(
    x: np.ndarray, time: np.ndarray, event: np.ndarray, beta: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """Breslow's negative log partial likelihood: every patient with an event against everyone
    still at risk (time >= its time)."""
    event = event.astype(bool)
    order = np.argsort(-time, kind="stable")
    x, time, event = x[order], time[order], event[order]
    eta = x @ beta
    shift = float(eta.max()) if eta.size else 0.0
    w = np.exp(eta - shift)
    s0 = np.cumsum(w)
    s1 = np.cumsum(w[:, None] * x, axis=0)
    s2 = np.cumsum(w[:, None, None] * x[:, :, None] * x[:, None, :], axis=0)
    # a risk set holds every patient whose time is >= the event's: the end of its tie group
    last = np.searchsorted(-time, -time, side="right") - 1
    idx = last[event]
    if idx.size == 0:
        g = x.shape[1]
        return 0.0, np.zeros(g), np.zeros((g, g))
    r0, r1, r2 = s0[idx], s1[idx], s2[idx]
    mean = r1 / r0[:, None]
    # each event's term is >= 0 (its risk set holds it); rounding takes one whose risk set is itself
    # alone (the last event to happen) just below 0, which the coordinator would refuse
    loss = float(np.sum(np.maximum(np.log(r0) + shift - eta[event], 0.0)))
    grad = np.sum(mean - x[event], axis=0)
    hess = np.sum(r2 / r0[:, None, None] - mean[:, :, None] * mean[:, None, :], axis=0)
    return loss, grad, hess


def _softmax(
    x: np.ndarray, label: np.ndarray, beta: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """Cross-entropy of softmax(sum_g beta_g x_g) (x: n, G, K)."""
    logits = np.einsum("ngk,g->nk", x, beta)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    n = np.arange(len(label))
    loss = float(-np.sum(np.log(np.clip(p[n, label], 1e-300, 1.0))))  # >= 0 despite rounding
    xbar = np.einsum("ngk,nk->ng", x, p)  # E_p[x_g]
    grad = np.sum(xbar - x[n, :, label], axis=0)
    second = np.einsum("ngk,nhk,nk->gh", x, x, p)
    hess = second - np.einsum("ng,nh->gh", xbar, xbar)
    return loss, grad, hess


def site_stats(
    kind: str,
    x: np.ndarray,
    present: np.ndarray,
    targets: Mapping[str, np.ndarray],
    points: Sequence[Sequence[float]],
    fold_of: np.ndarray | None,
    folds: int,
    min_cell: int,
) -> list[StackStats]:
    """A site's statistics at every point: per fold when every fold holds ``min_cell`` patients,
    events and censored patients (or patients of the smallest class), else the site's total
    when it does; nothing otherwise. Patients scored by no component are left out."""
    rows = np.flatnonzero(present.any(axis=1))
    if fold_of is None or folds < 2:
        groups = [(-1, rows)]
    else:
        groups = [(k, rows[fold_of[rows] == k]) for k in range(folds)]
        if not all(_enough(kind, targets, r, min_cell) for _, r in groups):
            groups = [(-1, rows)]
    if not all(_enough(kind, targets, r, min_cell) for _, r in groups):
        return []
    out = []
    for p, point in enumerate(points):
        beta = np.asarray(point, dtype=np.float64)
        for fold, r in groups:
            sub = {k: np.asarray(v)[r] for k, v in targets.items()}
            loss, grad, hess = loss_grad_hess(kind, x[r], sub, beta)
            out.append(
                StackStats(
                    p,
                    fold,
                    int(r.size),
                    _events(kind, sub),
                    loss,
                    tuple(float(v) for v in grad),
                    tuple(float(v) for v in ((hess + hess.T) / 2).ravel()),
                )
            )
    return out


def _events(kind: str, targets: Mapping[str, np.ndarray]) -> int:
    if kind == "survival":
        return int(np.asarray(targets["event"]).astype(bool).sum())
    labels = np.asarray(targets["label"], dtype=int)
    return int(np.bincount(labels).min()) if labels.size else 0


def _enough(kind: str, targets: Mapping[str, np.ndarray], rows: np.ndarray, min_cell: int) -> bool:
    sub = {k: np.asarray(v)[rows] for k, v in targets.items()}
    n, events = int(rows.size), _events(kind, sub)
    if kind == "survival":
        return n >= min_cell and events >= min_cell and n - events >= min_cell
    labels = sub["label"]
    return n >= min_cell and len(set(labels.tolist())) > 1 and events >= min_cell


# ---- the coordinator's side -------------------------------------------------------------------
@dataclass(frozen=True)
class Sums:
    """The consortium's sums at one point: in all, and per fold (patients of sites that sent a
    total only are in ``total`` and in no fold)."""

    loss: float
    gradient: np.ndarray
    hessian: np.ndarray
    folds: dict[int, tuple[float, np.ndarray, np.ndarray]]
    patients: int
    sites: int


def summed(stats: Mapping[str, Sequence[StackStats]], point: int, g: int) -> Sums:
    """The sums of every site's statistics at ``point`` (``stats``: site -> its statistics)."""
    loss, grad, hess = 0.0, np.zeros(g), np.zeros((g, g))
    folds: dict[int, tuple[float, np.ndarray, np.ndarray]] = {}
    patients, sites = 0, 0
    for rows in stats.values():
        mine = [s for s in rows if s.point == point]
        if not mine:
            continue
        sites += 1
        for s in mine:
            gr, he = np.asarray(s.gradient), np.asarray(s.hessian).reshape(g, g)
            loss, grad, hess = loss + s.loss, grad + gr, hess + he
            patients += s.patients
            if s.fold >= 0:
                fl, fg, fh = folds.get(s.fold, (0.0, np.zeros(g), np.zeros((g, g))))
                folds[s.fold] = (fl + s.loss, fg + gr, fh + he)
    return Sums(loss, grad, hess, folds, patients, sites)


def _solve(hess: np.ndarray, grad: np.ndarray) -> np.ndarray:
    g = hess.shape[0]
    ridge = RIDGE * max(EPS, float(np.trace(hess)) / g)
    return np.linalg.solve(hess + ridge * np.eye(g), grad)


def newton(beta: np.ndarray, grad: np.ndarray, hess: np.ndarray) -> np.ndarray:
    """One damped Newton step from ``beta`` (its length at most MAX_STEP times beta's norm,
    or 1)."""
    step = _solve(hess, grad)
    limit = MAX_STEP * max(1.0, float(np.linalg.norm(beta)))
    size = float(np.linalg.norm(step))
    if size > limit:
        step *= limit / size
    return beta - step


def uniform_fit(u: np.ndarray, beta: np.ndarray, grad: np.ndarray, hess: np.ndarray) -> np.ndarray:
    """The best multiple of the uniform direction ``u`` under the loss's second-order expansion
    around ``beta`` (only its scale is free: uniform weights with the right scale)."""
    denom = float(u @ hess @ u)
    if denom <= EPS:
        return u
    c = float(u @ (hess @ beta - grad)) / denom
    return (c if c > EPS else 1.0) * u


@dataclass(frozen=True)
class Shrinkage:
    """The fraction of the fitted weights kept (0: uniform, 1: the fit), with each fraction's
    out-of-fold loss (the sum over folds of the fold's loss under the fit on the other folds);
    ``folds`` 0: no site sent per-fold sums, the fit is kept half."""

    amount: float
    losses: dict[float, float]
    folds: int


def shrinkage(beta: np.ndarray, u: np.ndarray, sums: Sums) -> Shrinkage:
    """Choose the amount on the out-of-fold loss: for every fold k, the fit without k (one
    Newton step from ``beta`` on the other folds' sums) shrunk towards the uniform weights,
    judged by fold k's loss expanded to second order around ``beta``."""
    if len(sums.folds) < 2:
        return Shrinkage(0.5, {}, len(sums.folds))
    losses = dict.fromkeys(SHRINKS, 0.0)
    for fl, fg, fh in sums.folds.values():
        g_rest, h_rest = sums.gradient - fg, sums.hessian - fh
        fit = beta - _solve(h_rest, g_rest)
        base = uniform_fit(u, beta, g_rest, h_rest)
        for a in SHRINKS:
            d = base + a * (fit - base) - beta
            losses[a] += fl + float(fg @ d) + 0.5 * float(d @ fh @ d)
    best = min(SHRINKS, key=lambda a: (round(losses[a], 9), -a))
    return Shrinkage(best, losses, len(sums.folds))


def shrunk(at: np.ndarray, fit: np.ndarray, u: np.ndarray, sums: Sums, amount: float) -> np.ndarray:
    """The fit pulled towards the uniform weights (at their best scale under the expansion
    around ``at``, where ``sums`` were taken) by ``1 - amount``."""
    base = uniform_fit(u, at, sums.gradient, sums.hessian)
    return base + amount * (fit - base)


def in_groups(sums: Sums, to_components: np.ndarray) -> Sums:
    """``sums`` in a grouping's weights ``gamma`` (component weights = to_components @ gamma):
    gradient A'g, Hessian A'HA, fold by fold."""
    a = to_components

    def one(loss: float, g: np.ndarray, h: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        return loss, a.T @ g, a.T @ h @ a

    loss, grad, hess = one(sums.loss, sums.gradient, sums.hessian)
    folds = {k: one(*v) for k, v in sums.folds.items()}
    return Sums(loss, grad, hess, folds, sums.patients, sums.sites)


@dataclass(frozen=True)
class Grouping:
    """How a stack's weights ``gamma`` map to the job's components and to the blocks: per block,
    or per modality (the blocks of a modality share one weight). ``uniform``: the gamma of equal
    block weights."""

    name: str
    label: str
    to_components: np.ndarray  # components x G
    to_blocks: np.ndarray  # blocks x G
    uniform: np.ndarray  # G


@dataclass(frozen=True)
class Design:
    """A stack job's components (recipes over blocks, by index into the blocks: each block alone,
    or the ensemble of one modality's blocks) and the groupings fitted on them."""

    components: tuple[tuple[str, str, tuple[int, ...]], ...]  # (id, label, block indices)
    groupings: tuple[Grouping, ...]


MAX_BLOCK_COMPONENTS = 8  # up to this many blocks, each is a component (per-block weights too)


def design(modalities: Sequence[str], labels: Sequence[str]) -> Design | None:
    """The stack over blocks of these modalities (one per block; ``labels`` for people): None
    when there is nothing to weigh (one block, or more than MAX_BLOCK_COMPONENTS blocks of a
    single modality) or too many modalities."""
    b = len(modalities)
    mods = sorted(set(modalities))
    of = np.array([mods.index(m) for m in modalities])
    n_of = np.bincount(of, minlength=len(mods)).astype(float)
    by_modality = np.zeros((b, len(mods)))
    by_modality[np.arange(b), of] = 1.0 / n_of[of]
    if 2 <= b <= MAX_BLOCK_COMPONENTS:
        components: tuple[tuple[str, str, tuple[int, ...]], ...] = tuple(
            (f"part-{i}", f"{labels[i]} alone", (i,)) for i in range(b)
        )
        groupings = [Grouping("blocks", "per block", np.eye(b), np.eye(b), np.ones(b))]
        if 1 < len(mods) < b:
            groupings.append(Grouping("modalities", "per modality", by_modality, by_modality, n_of))
        return Design(components, tuple(groupings))
    if len(mods) < 2 or len(mods) > MAX_COMPONENTS:
        return None
    components = tuple(
        (f"part-{m}", f"{mods[m]} blocks (ensemble)", tuple(np.flatnonzero(of == m).tolist()))
        for m in range(len(mods))
    )
    return Design(
        components,
        (Grouping("modalities", "per modality", np.eye(len(mods)), by_modality, n_of),),
    )


def block_weights(component_weights: np.ndarray, per_block: np.ndarray) -> tuple[float, ...]:
    """Weights for the blocks (mean 1, each at least FLOOR of the largest) from the components'
    (``per_block``: blocks x components, how a component's weight reaches each block)."""
    w = per_block @ component_weights
    top = float(w.max())
    if not math.isfinite(top) or top <= 0:
        return tuple(1.0 for _ in w)
    w = np.maximum(w, FLOOR * top)
    w = w / w.mean()
    return tuple(round(float(v), 6) for v in w)
