"""The skeleton as an inline SVG picture: keypoints in their colours, edges between them.

Keypoints sit where the model put them on the sample frame when the entry has one (so the
picture looks like the animal), else evenly on a circle. Inline SVG needs no file and no
network, and every label is escaped like the rest of the page.
"""
from __future__ import annotations

import math
from html import escape
from typing import Any, Sequence

from posezoo.runtime.draw import keypoint_colors

SIZE = 320  # the picture's width and height in CSS pixels
MARGIN = 40  # room for labels


def _circle_layout(n: int) -> list[tuple[float, float]]:
    return [(math.cos(2 * math.pi * i / n - math.pi / 2), math.sin(2 * math.pi * i / n - math.pi / 2))
            for i in range(n)]


def _sample_layout(sample: dict[str, Any], n: int) -> list[tuple[float, float]] | None:
    """The first animal's predicted (x, y) on the sample frame, if all are there and spread out."""
    animals = sample.get("keypoints")
    if not isinstance(animals, list) or not animals or not isinstance(animals[0], list):
        return None
    points = animals[0]
    if len(points) != n or not all(isinstance(p, list) and len(p) >= 2 and all(
            isinstance(v, (int, float)) for v in p[:2]) for p in points):
        return None
    xs, ys = [float(p[0]) for p in points], [float(p[1]) for p in points]
    if max(xs) - min(xs) < 1 and max(ys) - min(ys) < 1:  # one point, or all on top of each other
        return None
    return list(zip(xs, ys))


def _fit(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Scale into the picture, keeping the aspect ratio (image y points down, as in SVG)."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    span = max(max(xs) - min(xs), max(ys) - min(ys)) or 1.0
    inner = SIZE - 2 * MARGIN
    cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
    return [(SIZE / 2 + (x - cx) * inner / span, SIZE / 2 + (y - cy) * inner / span) for x, y in points]


def skeleton_svg(keypoints: Sequence[str], skeleton: Sequence[Any], sample: dict[str, Any] | None = None) -> str:
    """An <svg> element drawing `keypoints` (names) joined by `skeleton` (pairs of names)."""
    n = len(keypoints)
    if n == 0:
        return '<p class="muted">No keypoints listed.</p>'
    layout = _sample_layout(sample or {}, n) or _circle_layout(n)
    pts = _fit(layout) if n > 1 else [(SIZE / 2, SIZE / 2)]
    index = {name: i for i, name in enumerate(keypoints)}
    colours = ["#%02x%02x%02x" % (r, g, b) for b, g, r in keypoint_colors(n)]  # BGR -> #rrggbb
    parts = [f'<svg class="skeleton" viewBox="0 0 {SIZE} {SIZE}" width="{SIZE}" height="{SIZE}" '
             f'role="img" aria-label="skeleton: {n} keypoints, {len(skeleton)} edges">']
    for pair in skeleton:
        if isinstance(pair, (list, tuple)) and len(pair) == 2 and all(p in index for p in pair):
            (x1, y1), (x2, y2) = pts[index[pair[0]]], pts[index[pair[1]]]
            parts.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}"/>')
    for i, (name, (x, y)) in enumerate(zip(keypoints, pts)):
        label = escape(str(name))
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="6" fill="{colours[i]}"><title>{label}</title></circle>'
                     f'<text x="{x + 9:.1f}" y="{y + 4:.1f}">{label}</text>')
    parts.append("</svg>")
    return "".join(parts)
