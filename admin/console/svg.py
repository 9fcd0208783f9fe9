"""Small server-side SVG line plots for the console (axes, ticks, points with tooltips, gaps, a
dashed reference line): no plotting library and no script, so the pages hold under a strict CSP."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape


@dataclass(frozen=True)
class Point:
    """One x position: ``y`` None is a gap (drawn as a cross on the x axis, e.g. "not measured")."""

    label: str  # the x tick label, e.g. a version id or "round 3"
    y: float | None
    tip: str = ""  # the tooltip (an SVG <title>); the label and value when empty
    err: float | None = None  # half-height of an error bar (one standard error)


@dataclass(frozen=True)
class Reference:
    """A dashed horizontal line across the plot, e.g. the parent version's metric."""

    y: float
    label: str


def _t(text: str) -> str:
    """Text for XML: escaped, without the control characters XML 1.0 forbids."""
    return escape("".join(c for c in text if c >= " " or c in "\t\n"), quote=True)


def _f(x: float) -> str:
    return f"{x:.1f}"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values (steps of 1, 2 or 5 times a power of ten) covering
    [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    step = min((m * power for m in (1, 2, 5, 10)), key=lambda s: abs(math.log(s / raw)))
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 12) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _y_range(points: Sequence[Point], reference: Reference | None) -> tuple[float, float]:
    values = [
        v for p in points if p.y is not None for v in (p.y - (p.err or 0.0), p.y + (p.err or 0.0))
    ]
    values += [reference.y] if reference is not None else []
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return 0.0, 1.0
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.12 or max(abs(hi) * 0.05, 0.05)
    return lo - pad, hi + pad


@dataclass(frozen=True)
class _Frame:
    """Where the plot area lies in the SVG and how values map onto it."""

    width: int
    height: int
    n: int  # x positions
    lo: float
    hi: float
    left: int = 64
    right: int = 16
    top: int = 30
    bottom: int = 58
    inset: int = 16  # keeps the first and last points off the axes

    @property
    def pw(self) -> int:
        return self.width - self.left - self.right

    @property
    def ph(self) -> int:
        return self.height - self.top - self.bottom

    @property
    def floor(self) -> int:
        return self.top + self.ph

    def x(self, i: int) -> float:
        if self.n == 1:
            return self.left + self.pw / 2
        return self.left + self.inset + (self.pw - 2 * self.inset) * i / (self.n - 1)

    def y(self, v: float) -> float:
        return self.top + self.ph * (1 - (v - self.lo) / (self.hi - self.lo))


def _axes(f: _Frame, points: Sequence[Point], title: str, y_label: str, x_label: str) -> list[str]:
    x0, x1 = f.left, f.left + f.pw
    out = [
        f"<title>{_t(title)}</title>",
        f'<text class="plot-title" x="{x0}" y="18">{_t(title)}</text>',
        f'<g class="axis"><line x1="{x0}" y1="{f.floor}" x2="{x1}" y2="{f.floor}" stroke="#888"/>'
        f'<line x1="{x0}" y1="{f.top}" x2="{x0}" y2="{f.floor}" stroke="#888"/></g>',
    ]
    for v in nice_ticks(f.lo, f.hi):
        y = _f(f.y(v))
        out.append(
            f'<g class="tick"><line class="grid" x1="{x0}" y1="{y}" x2="{x1}" y2="{y}" '
            'stroke="#eee"/>'
            f'<text x="{x0 - 6}" y="{y}" text-anchor="end" dominant-baseline="middle">'
            f"{v:g}</text></g>"
        )
    every = max(1, math.ceil(f.n / 10))  # at most about ten labels under the x axis
    for i, p in enumerate(points):
        if i % every == 0 or i == f.n - 1:
            tx, ty = _f(f.x(i)), f.floor + 14
            out.append(
                f'<text class="xtick" x="{tx}" y="{ty}" text-anchor="end" '
                f'transform="rotate(-25 {tx} {ty})">'
                f"{_t(p.label)}</text>"
            )
    if y_label:
        mid = _f(f.top + f.ph / 2)
        out.append(
            f'<text class="axis-label" x="14" y="{mid}" text-anchor="middle" '
            f'transform="rotate(-90 14 {mid})">'
            f"{_t(y_label)}</text>"
        )
    if x_label:
        out.append(
            f'<text class="axis-label" x="{_f(x0 + f.pw / 2)}" y="{f.height - 4}" '
            'text-anchor="middle">'
            f"{_t(x_label)}</text>"
        )
    return out


def _series(f: _Frame, points: Sequence[Point], digits: int) -> list[str]:
    segments: list[list[str]] = [[]]
    for i, p in enumerate(points):
        if p.y is None or not math.isfinite(p.y):
            segments.append([])
        else:
            segments[-1].append(f"{_f(f.x(i))},{_f(f.y(p.y))}")
    out = [
        f'<polyline class="line" points="{" ".join(s)}" fill="none" stroke="#2563eb"/>'
        for s in segments
        if len(s) > 1
    ]
    for i, p in enumerate(points):
        x = f.x(i)
        if p.y is None or not math.isfinite(p.y):
            out.append(
                f'<g class="gap"><path d="M{_f(x - 4)},{f.floor - 4} l8,8 m0,-8 l-8,8" '
                'stroke="#9ca3af"/>'
                f"<title>{_t(p.tip or f'{p.label}: not measured')}</title></g>"
            )
            continue
        if p.err is not None and math.isfinite(p.err) and p.err > 0:
            out.append(
                f'<line class="err" x1="{_f(x)}" y1="{_f(f.y(p.y - p.err))}" x2="{_f(x)}" '
                f'y2="{_f(f.y(p.y + p.err))}" stroke="#93c5fd"/>'
            )
        tip = p.tip or f"{p.label}: {p.y:.{digits}f}"
        out.append(
            f'<circle class="pt" cx="{_f(x)}" cy="{_f(f.y(p.y))}" r="4" fill="#2563eb">'
            f"<title>{_t(tip)}</title></circle>"
        )
    return out


def line_plot(
    points: Sequence[Point],
    title: str,
    y_label: str = "",
    x_label: str = "",
    reference: Reference | None = None,
    width: int = 720,
    height: int = 240,
    digits: int = 4,
) -> str:
    """An SVG (a string of well-formed XML with every text escaped) plotting ``points`` left to
    right at even spacing: a circle with a tooltip per value, lines between neighbouring values,
    gaps where a value is missing, and an optional dashed reference line."""
    f = _Frame(width, height, len(points), *_y_range(points, reference))
    out = [
        '<svg xmlns="http://www.w3.org/2000/svg" class="plot" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">',
        *_axes(f, points, title, y_label, x_label),
    ]
    if reference is not None and math.isfinite(reference.y):
        y, label = f.y(reference.y), _t(reference.label)
        out.append(
            f'<g class="reference"><line x1="{f.left}" y1="{_f(y)}" x2="{f.left + f.pw}" '
            f'y2="{_f(y)}" '
            f'stroke="#b45309" stroke-dasharray="6 4"/><text x="{f.left + f.pw}" y="{_f(y - 5)}" '
            f'text-anchor="end">{label}</text><title>{label}</title></g>'
        )
    out += _series(f, points, digits)
    out.append("</svg>")
    return "\n".join(out)
