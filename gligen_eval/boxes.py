"""Box conventions.

Inside gligen-eval every box is **normalized xyxy** with the origin at the top-left:
``(x0, y0, x1, y1)`` with ``0 <= x0 < x1 <= 1`` and ``0 <= y0 < y1 <= 1``.
Conversions happen only at the edges (reading COCO files, writing COCO results, drawing),
through the named helpers below.

The conversions take any 4 finite numbers (an inverted or empty box converts as it is: judging
it is :func:`validate_xyxy_norm`'s job) and a finite positive image size; anything else (a wrong
length, a non-number, NaN or infinity, a zero size) is an :class:`~gligen_eval.errors.InputError`
that says what is wrong, never a ``ZeroDivisionError`` or a NaN passed on.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from gligen_eval.errors import InputError

Box = tuple[float, float, float, float]


def _numbers(box: Any, what: str, *, allow_inf: bool = False) -> Box:
    """4 finite floats (or infinite, with ``allow_inf``) from ``box``, or an InputError naming the problem."""
    if isinstance(box, (str, bytes)):
        raise InputError(f"{what} must be 4 numbers, got {type(box).__name__}")
    try:
        values = tuple(box)
    except TypeError:
        raise InputError(f"{what} must be 4 numbers, got {type(box).__name__}") from None
    if len(values) != 4:
        raise InputError(f"{what} must have 4 numbers, got {len(values)}")
    out = []
    for v in values:
        if isinstance(v, (bool, str, bytes)):
            raise InputError(f"{what} must be numbers, got {_short(values)}")
        try:
            f = float(v)
        except (TypeError, ValueError, OverflowError):
            raise InputError(f"{what} must be finite numbers, got {_short(values)}") from None
        if math.isnan(f) or (math.isinf(f) and not allow_inf):
            raise InputError(f"{what} must be finite numbers, got {_short(values)}")
        out.append(f)
    return (out[0], out[1], out[2], out[3])


def _size(width: Any, height: Any) -> tuple[float, float]:
    try:
        w, h = float(width), float(height)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"image size must be numbers, got {width!r} x {height!r}") from None
    if isinstance(width, bool) or isinstance(height, bool) or not (math.isfinite(w) and math.isfinite(h) and w > 0 and h > 0):
        raise InputError(f"image size must be positive and finite, got {width!r} x {height!r}")
    return w, h


def _finite(result: Box, box: Any) -> Box:
    if not all(math.isfinite(v) for v in result):
        raise InputError(f"box {_short(box)} overflows when converted")
    return result


def _short(values: Any, limit: int = 120) -> str:
    text = repr(list(values) if isinstance(values, tuple) else values)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def xywh_abs_to_xyxy_norm(box: Sequence[float], width: float, height: float) -> Box:
    """COCO ``[x, y, w, h]`` in pixels → normalized xyxy."""
    x, y, w, h = _numbers(box, "box")
    width, height = _size(width, height)
    return _finite((x / width, y / height, (x + w) / width, (y + h) / height), box)


def xyxy_norm_to_xywh_abs(box: Sequence[float], width: float, height: float) -> Box:
    """Normalized xyxy → COCO ``[x, y, w, h]`` in pixels."""
    x0, y0, x1, y1 = _numbers(box, "box")
    width, height = _size(width, height)
    return _finite((x0 * width, y0 * height, (x1 - x0) * width, (y1 - y0) * height), box)


def xyxy_abs_to_xyxy_norm(box: Sequence[float], width: float, height: float) -> Box:
    """Pixel xyxy → normalized xyxy."""
    x0, y0, x1, y1 = _numbers(box, "box")
    width, height = _size(width, height)
    return _finite((x0 / width, y0 / height, x1 / width, y1 / height), box)


def xyxy_norm_to_xyxy_abs(box: Sequence[float], width: float, height: float) -> Box:
    """Normalized xyxy → pixel xyxy."""
    x0, y0, x1, y1 = _numbers(box, "box")
    width, height = _size(width, height)
    return _finite((x0 * width, y0 * height, x1 * width, y1 * height), box)


def xywh_norm_to_xyxy_norm(box: Sequence[float]) -> Box:
    """Normalized ``[x, y, w, h]`` (e.g. NSR-1K) → normalized xyxy."""
    x, y, w, h = _numbers(box, "box")
    return _finite((x, y, x + w, y + h), box)


def clip_xyxy_norm(box: Sequence[float]) -> Box:
    """Clamp a normalized xyxy box to the unit square (infinities clamp too; NaN is an InputError)."""
    x0, y0, x1, y1 = (min(1.0, max(0.0, v)) for v in _numbers(box, "box", allow_inf=True))
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
    try:
        n = len(box)
    except TypeError:
        return f"box must be 4 numbers, got {type(box).__name__}"
    if isinstance(box, (str, bytes)):
        return f"box must be 4 numbers, got {type(box).__name__}"
    if n != 4:
        return f"box must have 4 numbers, got {n}"
    if any(isinstance(v, (bool, str, bytes)) for v in box):
        return f"box must be numbers, got {_short(box)}"
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError, OverflowError):
        return f"box must be numbers, got {_short(box)}"
    if any(v != v for v in (x0, y0, x1, y1)):
        return f"box has NaN: {_short(box)}"
    if min(x0, y0) < -tol or max(x1, y1) > 1 + tol:
        return f"box {_short(box)} lies outside the image (normalized xyxy must be within [0, 1])"
    if not (x1 > x0 and y1 > y0):
        return f"box {_short(box)} is empty (need x1 > x0 and y1 > y0)"
    return None
