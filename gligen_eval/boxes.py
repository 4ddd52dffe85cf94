"""Box conventions.

Inside gligen-eval every box is **normalized xyxy** with the origin at the top-left:
``(x0, y0, x1, y1)`` with ``0 <= x0 < x1 <= 1`` and ``0 <= y0 < y1 <= 1``.
Conversions happen only at the edges (reading COCO files, writing COCO results, drawing),
through the named helpers below.
"""

from __future__ import annotations

from typing import Sequence

Box = tuple[float, float, float, float]


def xywh_abs_to_xyxy_norm(box: Sequence[float], width: float, height: float) -> Box:
    """COCO ``[x, y, w, h]`` in pixels → normalized xyxy."""
    x, y, w, h = (float(v) for v in box)
    return (x / width, y / height, (x + w) / width, (y + h) / height)


def xyxy_norm_to_xywh_abs(box: Sequence[float], width: float, height: float) -> Box:
    """Normalized xyxy → COCO ``[x, y, w, h]`` in pixels."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return (x0 * width, y0 * height, (x1 - x0) * width, (y1 - y0) * height)


def xyxy_abs_to_xyxy_norm(box: Sequence[float], width: float, height: float) -> Box:
    """Pixel xyxy → normalized xyxy."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return (x0 / width, y0 / height, x1 / width, y1 / height)


def xyxy_norm_to_xyxy_abs(box: Sequence[float], width: float, height: float) -> Box:
    """Normalized xyxy → pixel xyxy."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return (x0 * width, y0 * height, x1 * width, y1 * height)


def xywh_norm_to_xyxy_norm(box: Sequence[float]) -> Box:
    """Normalized ``[x, y, w, h]`` (e.g. NSR-1K) → normalized xyxy."""
    x, y, w, h = (float(v) for v in box)
    return (x, y, x + w, y + h)


def clip_xyxy_norm(box: Sequence[float]) -> Box:
    """Clamp a normalized xyxy box to the unit square."""
    x0, y0, x1, y1 = (min(1.0, max(0.0, float(v))) for v in box)
    return (x0, y0, x1, y1)


def area_xyxy(box: Sequence[float]) -> float:
    x0, y0, x1, y1 = box
    return max(0.0, x1 - x0) * max(0.0, y1 - y0)


def iou_xyxy(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two xyxy boxes (any common unit)."""
    ix0, iy0 = max(a[0], b[0]), max(a[1], b[1])
    ix1, iy1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, ix1 - ix0) * max(0.0, iy1 - iy0)
    union = area_xyxy(a) + area_xyxy(b) - inter
    return inter / union if union > 0 else 0.0


def validate_xyxy_norm(box: Sequence[float], *, tol: float = 1e-6) -> str | None:
    """Return why ``box`` is not a valid normalized xyxy box, or ``None`` if it is."""
    if len(box) != 4:
        return f"box must have 4 numbers, got {len(box)}"
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError):
        return f"box must be numbers, got {list(box)!r}"
    if any(v != v for v in (x0, y0, x1, y1)):
        return f"box has NaN: {list(box)!r}"
    if min(x0, y0) < -tol or max(x1, y1) > 1 + tol:
        return f"box {list(box)!r} lies outside the image (normalized xyxy must be within [0, 1])"
    if not (x1 > x0 and y1 > y0):
        return f"box {list(box)!r} is empty (need x1 > x0 and y1 > y0)"
    return None
