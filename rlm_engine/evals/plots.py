"""Line charts as inline SVG: no script, no font or stylesheet to fetch, so a report
opens offline and prints as it shows."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from html import escape

#: One colour per arm, distinguishable in colour and in greyscale print.
COLORS = {"direct": "#d1495b", "rlm": "#00798c", "rlm-d2": "#edae49", "auto": "#30638e"}
DASHES = {"direct": "", "rlm": "", "rlm-d2": "6 3", "auto": "2 3"}
_FALLBACK = ("#66a182", "#8d96a3", "#2e4057", "#b5838d")

W, H = 460, 280
LEFT, RIGHT, TOP, BOTTOM = 56, 110, 30, 44

Point = tuple[float, float]


def _ticks(xs: Sequence[float]) -> list[float]:
    """Ticks at the measured sizes (at most 9): the sizes a user chose read best."""
    ticks = sorted(set(xs))
    step = max(1, math.ceil(len(ticks) / 9))
    return ticks[::step]


def line_chart(
    title: str,
    series: Mapping[str, Sequence[Point]],
    *,
    y_label: str,
    x_label: str = "context length (tokens, log scale)",
    y_max: float | None = None,
    x_fmt: Callable[[float], str] = str,
    y_fmt: Callable[[float], str] = lambda v: f"{v:g}",
) -> str:
    """An SVG chart of ``series`` (name -> points sorted by x), x on a log scale."""
    pts = [p for ps in series.values() for p in ps]
    if not pts:
        return f'<svg class="chart" width="{W}" height="{H}" role="img"><text x="20" y="40">{escape(title)}: no data</text></svg>'
    xs = [p[0] for p in pts]
    lo, hi = min(xs), max(xs)
    if lo == hi:
        lo, hi = lo / 2, hi * 2
    top = y_max if y_max is not None else max(p[1] for p in pts) * 1.1 or 1.0
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def sx(x: float) -> float:
        return LEFT + (math.log(x) - math.log(lo)) / (math.log(hi) - math.log(lo)) * pw

    def sy(y: float) -> float:
        return TOP + ph - (y / top) * ph

    out = [
        f'<svg class="chart" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" '
        f'aria-label="{escape(title)}">',
        f'<text x="{LEFT}" y="18" class="title">{escape(title)}</text>',
    ]
    for i in range(5):
        v = top * i / 4
        y = sy(v)
        out.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{escape(y_fmt(v))}</text>'
        )
    for x in _ticks(xs):
        px = sx(x)
        out.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{TOP}" y2="{TOP + ph}" class="grid"/>')
        out.append(
            f'<text x="{px:.1f}" y="{TOP + ph + 16}" class="tick" text-anchor="middle">{escape(x_fmt(x))}</text>'
        )
    out.append(
        f'<text x="{LEFT + pw / 2}" y="{H - 6}" class="axis" text-anchor="middle">{escape(x_label)}</text>'
    )
    out.append(
        f'<text x="14" y="{TOP + ph / 2}" class="axis" text-anchor="middle" '
        f'transform="rotate(-90 14 {TOP + ph / 2})">{escape(y_label)}</text>'
    )
    for i, (name, ps) in enumerate(series.items()):
        color = COLORS.get(name, _FALLBACK[i % len(_FALLBACK)])
        dash = DASHES.get(name, "")
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in ps)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(
            f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2.2"'
            f'{dash_attr} class="series" data-series="{escape(name)}"/>'
        )
        for x, y in ps:
            out.append(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3.2" fill="{color}">'
                f"<title>{escape(name)}: {escape(x_fmt(x))} -> {escape(y_fmt(y))}</title></circle>"
            )
        ly = TOP + 12 + i * 18
        out.append(
            f'<line x1="{W - RIGHT + 12}" x2="{W - RIGHT + 34}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2.2"{dash_attr}/>'
        )
        out.append(f'<text x="{W - RIGHT + 40}" y="{ly + 4}" class="legend">{escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


__all__ = ["COLORS", "line_chart"]
