"""Why boxes miss: TIDE-style error analysis and AP as a function of the IoU threshold.

TIDE (Bolya et al., ECCV 2020) sorts every error of a detector at the foreground IoU 0.5 (with
background IoU 0.1) into one type and reports, per type, how much AP50 would rise if exactly
those errors were fixed by an oracle (ΔAP, in AP units; lower is better):

* ``cls`` -- right place, wrong class (IoU >= 0.5 with a box of another class);
* ``loc`` -- right class, poorly placed (0.1 <= IoU < 0.5 with a box of its class);
* ``both`` -- wrong class and poorly placed;
* ``dupl`` -- right class and place, but the box was already found by a higher-scored detection;
* ``bkg`` -- on background (IoU < 0.1 with every box);
* ``miss`` -- a box no detection accounts for.

The arithmetic is hotcoco's ``COCOeval.tide_errors`` (COCO matching rules, crowd and area handling
as in COCOeval); this module runs it on our COCO dicts, per run and per category, and turns it
into metric keys ``box/tide/<type>``.

``box/AP_iou_auc`` summarises AP over the IoU thresholds 0.05, 0.10, ..., 0.95 (area ``all``, the
largest ``max_dets``) by the area under that curve, divided by the threshold range 0.9 so that it
lies in [0, 1] (trapezoidal rule). A model whose boxes are found but loosely placed keeps its AP
at low thresholds and loses it at high ones; the curve shows where.

The confusion matrix (:func:`confusion_matrix`) says which class the detector saw in each grounded
object: per object, the class of the detection that overlaps it best at IoU >= 0.5 (any class),
else ``missed``; its ``background`` row counts the detections on background in TIDE's sense (IoU
< 0.1 with every object). Detections that are merely poorly placed or duplicates are in neither:
they are ``loc``/``both``/``dupl`` errors of :func:`tide_errors`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from gligen_eval.errors import ConfigError
from gligen_eval.scoring import coco

TIDE_TYPES: tuple[str, ...] = ("cls", "loc", "both", "dupl", "bkg", "miss")
"""The error types, in TIDE's order; the metric keys are ``box/tide/<type>``."""
_HOTCOCO_NAMES = {"cls": "Cls", "loc": "Loc", "both": "Both", "dupl": "Dupe", "bkg": "Bkg", "miss": "Miss"}
IOU_CURVE_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))
"""0.05, 0.10, ..., 0.95."""


@dataclass(frozen=True)
class TideResult:
    """ΔAP50 per error type (``delta_ap``) and the number of errors of each type (``counts``)."""

    delta_ap: dict[str, float]
    counts: dict[str, int]
    ap50: float
    """The AP50 the ΔAPs are measured from."""
    per_category: dict[str, dict[str, float]] = field(default_factory=dict)
    """category name -> ``{"<type>": ΔAP50, ..., "n_<type>": count, ..., "AP50": base}``, for the
    categories with ground truth."""


def _evaluator(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]],
               iou_thrs: Sequence[float] | None = None) -> tuple[Any, dict]:  # fmt: skip
    g = coco.prepare_gt(gt)
    r = coco.prepare_results(list(results), g)
    E = coco._hotcoco_eval(g, r, iou_type="bbox", lvis_style=False, kpt_sigmas=None)
    if iou_thrs is not None:
        E.params.iouThrs = [float(t) for t in iou_thrs]
    return E, g


def _tide_of(E: Any, pos_thr: float, bg_thr: float) -> tuple[dict[str, float], dict[str, int], float]:
    with coco._maybe_quiet(True):
        E.evaluate()
        t = E.tide_errors(pos_thr=pos_thr, bg_thr=bg_thr)
    delta = {k: float(t["delta_ap"][v]) for k, v in _HOTCOCO_NAMES.items()}
    counts = {k: int(t["counts"][v]) for k, v in _HOTCOCO_NAMES.items()}
    return delta, counts, float(t["ap_base"])


def tide_errors(
    gt: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    *,
    pos_thr: float = 0.5,
    bg_thr: float = 0.1,
    per_category: bool = True,
) -> TideResult:
    """TIDE ΔAP50 per error type of COCO ``results`` against ``gt`` (boxes), per run and per category."""
    if not 0.0 <= bg_thr <= pos_thr <= 1.0:
        raise ConfigError(f"TIDE needs 0 <= bg_thr <= pos_thr <= 1, got bg_thr={bg_thr}, pos_thr={pos_thr}")
    E, g = _evaluator(gt, results)
    if not g["annotations"]:
        zero = {k: 0.0 for k in TIDE_TYPES}
        return TideResult(zero, {k: 0 for k in TIDE_TYPES}, math.nan)
    delta, counts, ap50 = _tide_of(E, pos_thr, bg_thr)
    cats: dict[str, dict[str, float]] = {}
    if per_category:
        with_gt = {a["category_id"] for a in g["annotations"] if not a.get("iscrowd", 0)}
        for c in g["categories"]:
            if c["id"] not in with_gt:
                continue
            E.params.catIds = [c["id"]]
            d, n, base = _tide_of(E, pos_thr, bg_thr)
            cats[c["name"]] = {**d, **{f"n_{k}": float(v) for k, v in n.items()}, "AP50": base}
    return TideResult(delta, counts, ap50, cats)


def ap_over_iou(
    gt: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    thresholds: Sequence[float] = IOU_CURVE_THRESHOLDS,
) -> tuple[np.ndarray, np.ndarray]:
    """``(thresholds, AP at each)`` (area ``all``, 100 detections per image; NaN where undefined)."""
    thr = np.asarray(thresholds, dtype=np.float64)
    if thr.ndim != 1 or thr.size < 2 or np.any(np.diff(thr) <= 0) or thr[0] < 0 or thr[-1] > 1:
        raise ConfigError(f"IoU thresholds must be at least two increasing values in [0, 1], got {list(thresholds)}")
    E, _ = _evaluator(gt, results, iou_thrs=thr)
    with coco._maybe_quiet(True):
        E.evaluate()
        E.accumulate()
    p = E.params
    prec = np.asarray(E.eval["precision"])[:, :, :, list(p.areaRngLbl).index("all"), -1]
    ap = np.full(thr.size, np.nan)
    for t in range(thr.size):
        v = prec[t][prec[t] > -1]
        if v.size:
            ap[t] = float(np.mean(v))
    return thr, ap


def iou_auc(thresholds: Sequence[float], ap: Sequence[float]) -> float:
    """Area under AP(IoU threshold), divided by the threshold range (trapezoidal rule); NaN if undefined."""
    t, a = np.asarray(thresholds, dtype=np.float64), np.asarray(ap, dtype=np.float64)
    if np.isnan(a).any():
        return math.nan
    return float(np.sum((a[1:] + a[:-1]) * np.diff(t)) / 2.0 / (t[-1] - t[0]))


BACKGROUND, MISSED = "background", "missed"


def _xyxy(bbox: Sequence[float]) -> list[float]:
    x, y, w, h = (float(v) for v in bbox)
    return [x, y, x + w, y + h]


def confusion_matrix(
    gt: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    *,
    iou_thr: float = 0.5,
    bg_thr: float = 0.1,
    min_score: float = 0.0,
    max_dets: int = 100,
) -> dict[str, Any]:
    """Layout categories against detected classes, JSON-friendly.

    Returns ``{"labels": [...], "rows": labels + ["background"], "cols": labels + ["missed"],
    "matrix": [[int]], "iou_thr", "bg_thr", "min_score"}``: ``matrix[i][j]`` counts the grounded
    objects of class ``labels[i]`` whose best-overlapping detection (IoU >= ``iou_thr``; ties go to
    the higher score) is of class ``labels[j]``; column ``missed`` counts the objects no detection
    overlaps that much; row ``background`` counts, per detected class, the detections with IoU <
    ``bg_thr`` against every object. A detection may account for several objects (a per-object
    view, like the instance rows). Crowd objects are ignored; per image only the ``max_dets``
    highest-scored detections at or above ``min_score`` are used (as COCOeval does). ``labels``
    are the category names that occur among the objects or detections, in category-id order.
    """
    from gligen_eval.scoring.instances import iou_matrix

    if not 0.0 <= bg_thr <= iou_thr <= 1.0:
        raise ConfigError(f"the confusion matrix needs 0 <= bg_thr <= iou_thr <= 1, got bg_thr={bg_thr}, iou_thr={iou_thr}")
    g = coco.prepare_gt(gt)
    r = coco.prepare_results(list(results), g)
    names = {c["id"]: c["name"] for c in g["categories"]}
    objs: dict[int, list[dict]] = {}
    for a in g["annotations"]:
        if not a.get("iscrowd", 0):
            objs.setdefault(a["image_id"], []).append(a)
    dets: dict[int, list[dict]] = {}
    for d in r:
        if float(d["score"]) >= min_score:
            dets.setdefault(d["image_id"], []).append(d)
    for k in dets:
        dets[k] = sorted(dets[k], key=lambda d: -float(d["score"]))[:max_dets]
    seen = {a["category_id"] for v in objs.values() for a in v} | {d["category_id"] for v in dets.values() for d in v}
    ids = sorted(seen)
    index = {c: i for i, c in enumerate(ids)}
    n = len(ids)
    m = np.zeros((n + 1, n + 1), dtype=np.int64)
    for img in set(objs) | set(dets):
        o, d = objs.get(img, []), dets.get(img, [])
        ious = (iou_matrix([_xyxy(a["bbox"]) for a in o], [_xyxy(x["bbox"]) for x in d])
                if o and d else np.zeros((len(o), len(d))))  # fmt: skip
        for i, a in enumerate(o):
            ok = [j for j in range(len(d)) if ious[i, j] >= iou_thr]
            if ok:
                j = max(ok, key=lambda j: (ious[i, j], float(d[j]["score"]), -j))
                m[index[a["category_id"]], index[d[j]["category_id"]]] += 1
            else:
                m[index[a["category_id"]], n] += 1
        for j, x in enumerate(d):
            if not o or float(ious[:, j].max()) < bg_thr:
                m[n, index[x["category_id"]]] += 1
    labels = [names[c] for c in ids]
    return {"labels": labels, "rows": labels + [BACKGROUND], "cols": labels + [MISSED],
            "matrix": m.tolist(), "iou_thr": iou_thr, "bg_thr": bg_thr, "min_score": min_score}  # fmt: skip


def error_metrics(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]],
                  prefix: str = "box", *, confusion_min_score: float = 0.0) -> tuple[dict[str, float], dict[str, Any]]:  # fmt: skip
    """``({"<prefix>/tide/<type>": ΔAP50, ..., "<prefix>/AP_iou_auc": area}, breakdowns)``.

    The breakdowns hold the per-category ΔAPs (``<prefix>/tide_per_category``), the error counts
    (``<prefix>/tide_counts``), the AP-over-IoU curve (``<prefix>/AP_over_iou``: thresholds and AP)
    and the :func:`confusion_matrix` of the detections scoring at least ``confusion_min_score``
    (``<prefix>/confusion``; AP integrates over every score, a confusion matrix needs a floor).
    """
    tide = tide_errors(gt, results)
    thr, ap = ap_over_iou(gt, results)
    metrics = {f"{prefix}/tide/{k}": tide.delta_ap[k] for k in TIDE_TYPES}
    metrics[f"{prefix}/AP_iou_auc"] = iou_auc(thr, ap)
    breakdowns = {
        f"{prefix}/tide_per_category": tide.per_category,
        f"{prefix}/tide_counts": tide.counts,
        f"{prefix}/AP_over_iou": {"iou": [float(v) for v in thr], "AP": [None if math.isnan(v) else float(v) for v in ap]},
        f"{prefix}/confusion": confusion_matrix(gt, results, min_score=confusion_min_score),
    }
    return metrics, breakdowns
