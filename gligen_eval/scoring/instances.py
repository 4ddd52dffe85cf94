"""Per-instance scoring of one generated image: did each grounded object appear where it was asked?

For every grounded object the best IoU with a detection of the same class is taken (a detection
may serve several objects; this is a per-object check, not COCO's one-to-one matching). The
object is a *hit* when that IoU reaches ``success_iou``. Each row carries a readable ``reason``:

* ``"dog: hit, IoU 0.78"``
* ``"dog: best IoU 0.31 < 0.5"``
* ``"dog: no dog detected (3 detections of other classes: cat, person)"``

Each row also carries an ``error_type``, TIDE's error types seen from the object (thresholds
``success_iou`` and ``bg_iou``, checked in TIDE's order):

* ``hit`` -- a detection of its class at IoU >= ``success_iou``;
* ``loc`` -- else one of its class at ``bg_iou`` <= IoU < ``success_iou`` (poorly placed);
* ``cls`` -- else one of another class at IoU >= ``success_iou`` (right place, wrong class);
* ``both`` -- else one of another class at ``bg_iou`` <= IoU < ``success_iou``;
* ``missed`` -- nothing overlaps it by ``bg_iou``.

On one object with one detection this is TIDE's type of that detection (``missed``: its box is
background; TIDE also counts the object of a ``both`` error as missed, since that oracle drops the
box). Duplicates and background boxes are errors of detections, not of objects: they are counted by
:mod:`gligen_eval.scoring.errors` (``box/tide/dupl``, ``box/tide/bkg`` and the confusion matrix's
``background`` row), never in these rows.

Pure functions on numpy; no detector or COCO library involved.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from gligen_eval.records import Detection, InstanceRecord, Layout
from gligen_eval.scoring.coco import canonical_category, object_class


def iou_matrix(boxes_a: np.ndarray | Sequence[Sequence[float]], boxes_b: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Pairwise IoU of xyxy boxes, shape ``(len(a), len(b))``."""
    a = np.asarray(boxes_a, dtype=float).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=float).reshape(-1, 4)
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def _fmt(x: float) -> str:
    return f"{x:.2f}"


def _other_classes_text(labels: Sequence[str]) -> str:
    if not labels:
        return "no detections"
    uniq = sorted(set(labels))
    n = len(labels)
    return f"{n} detection{'s' if n != 1 else ''} of other classes: {', '.join(uniq)}"


ERROR_TYPES: tuple[str, ...] = ("hit", "loc", "cls", "both", "missed")
"""The values of :attr:`~gligen_eval.records.InstanceRecord.error_type`, best first."""


def error_type(same_class_iou: float, other_class_iou: float, *, success_iou: float = 0.5, bg_iou: float = 0.1) -> str:
    """The object's error type from its best IoU with a detection of its class and of another class."""
    if same_class_iou >= success_iou:
        return "hit"
    if same_class_iou >= bg_iou:
        return "loc"
    if other_class_iou >= success_iou:
        return "cls"
    if other_class_iou >= bg_iou:
        return "both"
    return "missed"


def match_instances(
    sample: Any,
    layout: Layout,
    detections: Sequence[Detection],
    *,
    success_iou: float = 0.5,
    min_score: float = 0.0,
    aliases: Mapping[str, str] | None = None,
    bg_iou: float = 0.1,
) -> list[InstanceRecord]:
    """One :class:`InstanceRecord` per grounded object of ``layout`` on the image of ``sample``.

    ``sample`` provides ``sample_key`` and ``seed`` (a :class:`~gligen_eval.records.SampleRecord`).
    Detections scoring below ``min_score`` are not considered. Classes match by
    :func:`~gligen_eval.scoring.coco.canonical_category` (the object's category, else its phrase,
    against the detection label).
    """
    if not 0.0 < success_iou <= 1.0:
        raise ValueError(f"success_iou must be in (0, 1], got {success_iou}")
    if not 0.0 <= bg_iou <= success_iou:
        raise ValueError(f"bg_iou must be in [0, success_iou], got {bg_iou}")
    dets = [d for d in detections if d.score >= min_score]
    det_cls = [canonical_category(d.label, aliases) for d in dets]
    obj_boxes = [o.box for o in layout.objects]
    ious = iou_matrix(obj_boxes, [d.box for d in dets]) if dets and obj_boxes else np.zeros((len(obj_boxes), 0))
    det_cls_arr = np.asarray(det_cls, dtype=object)
    out: list[InstanceRecord] = []
    for j, o in enumerate(layout.objects):
        cls = object_class(o, aliases)
        same = np.flatnonzero(det_cls_arr == cls) if dets else np.zeros(0, dtype=int)
        other = np.flatnonzero(det_cls_arr != cls) if dets else np.zeros(0, dtype=int)
        other_iou = float(ious[j, other].max()) if other.size else 0.0
        matched_box = matched_score = None
        if same.size == 0:
            best, hit = 0.0, False
            reason = f"{o.phrase}: no {cls} detected ({_other_classes_text(det_cls)})"
        else:
            row = ious[j, same]
            # best IoU; ties go to the higher-scoring detection
            order = sorted(range(same.size), key=lambda k: (-row[k], -dets[same[k]].score, same[k]))
            k = order[0]
            best = float(row[k])
            d = dets[same[k]]
            hit = best >= success_iou
            if best > 0:
                matched_box, matched_score = tuple(d.box), d.score
            if hit:
                reason = f"{o.phrase}: hit, IoU {_fmt(best)}"
            else:
                reason = f"{o.phrase}: best IoU {_fmt(best)} < {success_iou:g}"
        kind = error_type(best, other_iou, success_iou=success_iou, bg_iou=bg_iou)
        out.append(
            InstanceRecord(
                sample_key=sample.sample_key,
                layout_id=layout.layout_id,
                seed=int(sample.seed),
                object_index=j,
                phrase=o.phrase,
                category=o.category,
                box=o.box,
                best_iou=best,
                hit=bool(hit),
                reason=reason,
                matched_box=matched_box,  # type: ignore[arg-type]
                matched_score=matched_score,
                error_type=kind,
            )
        )
    return out


def aggregate(records: Iterable[InstanceRecord]) -> dict[str, float]:
    """``mIoU`` (mean best IoU over instances), ``success`` (fraction of hits) and ``n`` (instances).

    With no instances both rates are NaN (undefined).
    """
    rows = list(records)
    n = len(rows)
    if n == 0:
        return {"mIoU": math.nan, "success": math.nan, "n": 0}
    ious = np.fromiter((r.best_iou for r in rows), dtype=float, count=n)
    hits = np.fromiter((r.hit for r in rows), dtype=bool, count=n)
    return {"mIoU": float(ious.mean()), "success": float(hits.mean()), "n": n}


def aggregate_by_category(records: Iterable[InstanceRecord], aliases: Mapping[str, str] | None = None) -> dict[str, dict[str, float]]:
    """:func:`aggregate` per object class (category, else phrase)."""
    groups: dict[str, list[InstanceRecord]] = {}
    for r in records:
        key = canonical_category(r.category if r.category else r.phrase, aliases)
        groups.setdefault(key, []).append(r)
    return {k: aggregate(v) for k, v in sorted(groups.items())}
