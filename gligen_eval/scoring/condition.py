"""Condition-consistency math: how well a map re-extracted from an image matches the input condition.

A spatial GLIGEN model grounds on one whole-image map (edges, depth, normals, labels). Following
the ControlNet++ / Uni-ControlNet practice, the same extractor that made the condition is run on
the generated image and the two maps are compared. Every function here takes two maps of the same
height and width, ``pred`` (re-extracted) and ``target`` (the input condition), as NumPy arrays in
the training convention: values 0–255 (uint8 or float; float maps are not rounded), ``HxW`` or
``HxWx3``. Edge, HED and depth maps use channel 0 of an ``HxWx3`` map (the channel the official
models read); normal maps need all three channels; sem maps are ``HxW`` ADE20K labels (0 = other).

What a constant (information-free) prediction scores is stated in each docstring: it is the floor
a model that ignores its condition would reach.

Only :func:`hed_ssim` needs torch (torchmetrics), imported when it is called.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import numpy as np

PREFIX = "cond"

LOWER_IS_BETTER = ("depth_rmse", "depth_absrel", "normal_angle_mean", "normal_angle_median")
"""Metric names (after ``cond/`` or ``cond/real/``) where a smaller value is better; the others are scores."""


def _check_pair(pred: np.ndarray, target: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    p, t = np.asarray(pred), np.asarray(target)
    if p.shape[:2] != t.shape[:2]:
        raise ValueError(f"{what}: prediction {p.shape} and target {t.shape} differ in height and width")
    if p.ndim not in (2, 3) or t.ndim not in (2, 3):
        raise ValueError(f"{what}: maps must be HxW or HxWxC, got {p.shape} and {t.shape}")
    return p, t


def _channel0(x: np.ndarray) -> np.ndarray:
    return (x[..., 0] if x.ndim == 3 else x).astype(np.float64)


# --------------------------------------------------------------------------------------------
# canny


def edge_prf(pred: np.ndarray, target: np.ndarray, *, threshold: float = 127.5) -> dict[str, float]:
    """Pixel-wise edge precision, recall and F1 after binarizing both maps (``value > threshold``).

    No tolerance: a predicted edge pixel counts only where the target has an edge at the same pixel.
    With no target edges and no predicted edges every score is 1 (nothing to find, nothing invented);
    an undefined precision or recall otherwise is 0 (``zero_division=0``).

    Floor: a constant map below the threshold (a blank edge map) scores F1 = precision = recall = 0
    against any target with edges; a constant map above it scores recall 1, precision = the target's
    edge density ``d`` and F1 = 2d / (1 + d).
    """
    p, t = _check_pair(pred, target, "canny")
    pb, tb = _channel0(p) > threshold, _channel0(t) > threshold
    tp = float(np.count_nonzero(pb & tb))
    n_pred, n_true = float(np.count_nonzero(pb)), float(np.count_nonzero(tb))
    if n_pred == 0 and n_true == 0:
        return {"canny_f1": 1.0, "canny_precision": 1.0, "canny_recall": 1.0}
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"canny_f1": f1, "canny_precision": precision, "canny_recall": recall}


# --------------------------------------------------------------------------------------------
# HED


def hed_ssim(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """SSIM (torchmetrics, Gaussian window 11, σ 1.5, data range 1) between the soft edge maps / 255.

    Identical maps score 1. Floor: a constant map has no local variance, so per window SSIM keeps
    only the luminance term times ``C2 / (σ_t² + C2)`` with ``C2 = 0.03²``; it is near 0 against a
    textured target (below 0.01 against a 0/255 checkerboard), and 1 against the same constant.
    SSIM itself ranges over [-1, 1] (anti-correlated structure scores below 0). Maps need at least
    11 pixels per side.
    """
    import torch
    from torchmetrics.functional.image import structural_similarity_index_measure as ssim

    p, t = _check_pair(pred, target, "hed")
    pt = torch.from_numpy(_channel0(p) / 255.0)[None, None]
    tt = torch.from_numpy(_channel0(t) / 255.0)[None, None]
    return {"hed_ssim": float(ssim(pt, tt, data_range=1.0))}


# --------------------------------------------------------------------------------------------
# depth


def depth_rmse(pred: np.ndarray, target: np.ndarray) -> float:
    """Root mean squared difference of the two depth maps on the 0–255 scale.

    Floor: a constant map ``c`` scores ``sqrt(std(t)² + (mean(t) - c)²)``, at least the target's
    (population) standard deviation, reached at ``c = mean(t)``.
    """
    p, t = _check_pair(pred, target, "depth")
    return float(np.sqrt(np.mean((_channel0(p) - _channel0(t)) ** 2)))


def align_scale_shift(pred: np.ndarray, target: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``s * pred + b`` with ``(s, b)`` the least-squares fit of ``pred`` to ``target`` over ``valid``.

    Monocular depth (MiDaS, DPT, Depth Anything) is relative, known up to scale and shift, so the
    prediction is aligned before a relative error is taken. A prediction without variance on the
    valid pixels cannot be scaled: its fit is the constant ``mean(target[valid])``.
    """
    x, y = pred[valid], target[valid]
    var = float(np.var(x))
    if var <= 1e-12 * max(1.0, float(np.mean(x * x))):
        return np.full_like(pred, float(np.mean(y)) if y.size else 0.0)
    s = float(np.mean((x - x.mean()) * (y - y.mean()))) / var
    b = float(y.mean()) - s * float(x.mean())
    return s * pred + b


def depth_absrel(pred: np.ndarray, target: np.ndarray) -> float:
    """Scale-and-shift-aligned AbsRel: ``mean(|aligned - t| / t)`` over the valid pixels ``t > 0``.

    ``aligned`` is :func:`align_scale_shift` of the prediction to the target over the valid pixels
    (a least-squares scale and shift); the maps' values are used as they are (MiDaS-style maps are
    inverse depth, near = bright, so this is the relative error of the inverse depth). A prediction
    that differs from the target only by an affine change of its values scores 0. NaN when the
    target has no pixel above 0.

    Floor: a constant map scores ``mean(|mean(t) - t| / t)`` over the valid pixels (its fit is the
    constant ``mean(t)``).
    """
    p, t = _check_pair(pred, target, "depth")
    pf, tf = _channel0(p), _channel0(t)
    valid = tf > 0
    if not valid.any():
        return float("nan")
    aligned = align_scale_shift(pf, tf, valid)
    return float(np.mean(np.abs(aligned[valid] - tf[valid]) / tf[valid]))


def depth_errors(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """:func:`depth_rmse` and :func:`depth_absrel`."""
    return {"depth_rmse": depth_rmse(pred, target), "depth_absrel": depth_absrel(pred, target)}


# --------------------------------------------------------------------------------------------
# normals


def decode_normals(x: np.ndarray) -> np.ndarray:
    """``HxWx3`` maps in the ``(n * 0.5 + 0.5) * 255`` convention back to vectors ``n`` (not renormalized)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"normal maps must be HxWx3, got {x.shape}")
    return x / 255.0 * 2.0 - 1.0


def normal_angles(pred: np.ndarray, target: np.ndarray, *, min_norm: float = 0.5) -> np.ndarray:
    """Angle in degrees between the predicted and target normal of every valid pixel (1-D array).

    A target pixel is valid when its decoded vector is at least ``min_norm`` long (unit normals
    decode to length ≈ 1; a gray 128 "no normal" pixel decodes to ≈ 0.007). The angle is
    ``atan2(|a × b|, a · b)``, exact 0 for identical vectors; a zero-length prediction makes 90°.
    """
    p, t = _check_pair(pred, target, "normal")
    a, b = decode_normals(p), decode_normals(t)
    valid = np.linalg.norm(b, axis=-1) >= min_norm
    a, b = a[valid], b[valid]
    cross = np.linalg.norm(np.cross(a, b), axis=-1)
    dot = np.sum(a * b, axis=-1)
    return np.degrees(np.arctan2(cross, dot))


def normal_errors(pred: np.ndarray, target: np.ndarray, *, within: float = 11.25) -> dict[str, float]:
    """Mean and median angular error (degrees) and the share of valid pixels with error below ``within``.

    NaN for all three when the target has no valid pixel. Floor: a constant map (one direction
    everywhere) scores the angles between that direction and the target's normals; e.g. the
    camera-facing normal ``(0, 0, 1)`` against a target tilted by 30° on one half and 60° on the
    other scores mean = median = 45° and within 0.
    """
    ang = normal_angles(pred, target)
    if ang.size == 0:
        return {"normal_angle_mean": float("nan"), "normal_angle_median": float("nan"),
                "normal_within_11.25": float("nan")}  # fmt: skip
    return {"normal_angle_mean": float(ang.mean()), "normal_angle_median": float(np.median(ang)),
            "normal_within_11.25": float(np.mean(ang < within))}  # fmt: skip


# --------------------------------------------------------------------------------------------
# semantic maps


def sem_miou(pred: np.ndarray, target: np.ndarray, *, ignore: int = 0) -> dict[str, float]:
    """Mean IoU over the classes present, on the pixels whose target label is not ``ignore``.

    Labels are ADE20K's (1–150; 0 = "other", the ``ignore`` label). A class is *present* when it
    occurs in the target or in the prediction on those pixels; a present class that only one map has
    scores IoU 0, so invented classes cost as much as missed ones. A predicted ``ignore`` label is a
    miss of the target's class, not a class. NaN when every target pixel is ``ignore``.

    Floor: a constant map of a class the target lacks (or of ``ignore``) scores 0; a constant map of a
    target class ``k`` scores ``(share of valid pixels labelled k) / (number of target classes)``.
    """
    p, t = _check_pair(pred, target, "sem")
    if p.ndim == 3:
        p = p[..., 0]
    if t.ndim == 3:
        t = t[..., 0]
    p, t = p.astype(np.int64), t.astype(np.int64)
    valid = t != ignore
    if not valid.any():
        return {"sem_miou": float("nan")}
    pv, tv = p[valid], t[valid]
    classes = np.setdiff1d(np.union1d(np.unique(pv), np.unique(tv)), [ignore])
    ious = [np.count_nonzero((pv == c) & (tv == c)) / np.count_nonzero((pv == c) | (tv == c)) for c in classes]
    return {"sem_miou": float(np.mean(ious)) if ious else 0.0}


# --------------------------------------------------------------------------------------------
# the table


METRICS_OF: Mapping[str, tuple[Callable[[np.ndarray, np.ndarray], dict[str, float]], tuple[str, ...]]] = {
    "canny": (edge_prf, ("canny_f1", "canny_precision", "canny_recall")),
    "hed": (hed_ssim, ("hed_ssim",)),
    "depth": (depth_errors, ("depth_rmse", "depth_absrel")),
    "normal": (normal_errors, ("normal_angle_mean", "normal_angle_median", "normal_within_11.25")),
    "sem": (sem_miou, ("sem_miou",)),
}
"""Spatial modality -> (its comparison, the metric names it returns)."""

METRIC_NAMES: tuple[str, ...] = tuple(n for _, names in METRICS_OF.values() for n in names)
"""Every condition-consistency metric name (``cond/<name>``, ``cond/real/<name>``), in report order."""

WIDE_METRICS = ("depth_rmse", "normal_angle_mean", "normal_angle_median")
"""Metrics in 0-255 levels or degrees (reports show 2 decimals)."""


def metric_names(modality: str) -> tuple[str, ...]:
    """The metric names (without ``cond/``) of ``modality``; empty for a modality without a condition map."""
    return METRICS_OF[modality][1] if modality in METRICS_OF else ()


def compare_maps(modality: str, pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """``{"cond/<name>": value}`` for one (re-extracted, input) pair of ``modality``'s maps."""
    if modality not in METRICS_OF:
        raise ValueError(f"modality {modality!r} has no condition map (spatial modalities: {', '.join(METRICS_OF)})")
    fn, _ = METRICS_OF[modality]
    return {f"{PREFIX}/{k}": float(v) for k, v in fn(pred, target).items()}


def lower_is_better(key: str) -> bool:
    """Whether a ``cond/...`` or ``cond/real/...`` key is an error (smaller is better)."""
    return key.rsplit("/", 1)[-1] in LOWER_IS_BETTER


def condition_to_255(cond: Any, modality: str) -> np.ndarray:
    """The model-input form of a condition (``(3, H, W)`` in [-1, 1]; sem ``(H, W)`` labels) as a map
    in the training convention: ``HxWx3`` float values ``x * 127.5 + 127.5`` (not rounded); sem labels
    unchanged (int64)."""
    x = np.asarray(cond)
    if modality == "sem":
        return (x[0] if x.ndim == 3 else x).astype(np.int64)
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"a {modality} condition must be (3, H, W) in [-1, 1], got {x.shape}")
    return np.clip(np.moveaxis(x.astype(np.float64), 0, -1) * 127.5 + 127.5, 0.0, 255.0)


def finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
