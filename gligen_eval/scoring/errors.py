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

The detections are matched by COCOeval's rules (hotcoco's ``evaluate`` at IoU ``pos_thr``: crowd
and area handling, 100 detections per image and class); each false positive then gets the first
type that fits in TIDE's order (loc, cls, dupl, bkg, both; ``tidecv``'s rules), and each oracle
fixes its errors as ``tidecv`` does: a ``cls`` or ``loc`` error becomes a true positive of the
object's class when that object was not found otherwise (one per object: the highest-scored
error pointing at it), else it is dropped; ``dupl``, ``bkg`` and ``both`` errors are dropped; a
``miss`` fix removes the missed objects from the count to find. AP50 is then recomputed per class
(COCO's 101-point interpolation) and the ΔAPs are averaged over the classes with ground truth, as
COCO averages AP -- so a category's ΔAPs average to the run's. Differences from ``tidecv`` 1.0.1:
it averages over the classes with ground truth *or* detections and drops a class that a fix
empties (here a class left with nothing to find and nothing found has AP 1), and it keeps the 100
best detections per image rather than per image and class. hotcoco's own ``tide_errors`` is not
used: it counts a fixed ``cls`` error as a true positive of the detected class, fixes a ``miss``
by adding detections, and restricting its categories loses the cross-class overlaps, so it has
no per-category breakdown.

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


def _prepare(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]], prepared: bool) -> tuple[dict, list[dict]]:
    if prepared:
        return gt, results  # type: ignore[return-value]
    g = coco.prepare_gt(gt)
    return g, coco.prepare_results(list(results), g)


def _evaluator(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]],
               iou_thrs: Sequence[float] | None = None, prepared: bool = False) -> tuple[Any, dict, list[dict]]:  # fmt: skip
    """A hotcoco COCOeval; returns ``(E, gt, results)`` (the results get ids 1..N)."""
    g, r = _prepare(gt, results, prepared)
    E = coco._hotcoco_eval(g, r, iou_type="bbox", lvis_style=False, kpt_sigmas=None)
    if iou_thrs is not None:
        E.params.iouThrs = [float(t) for t in iou_thrs]
    return E, g, r


def _xyxy_array(boxes: Sequence[Sequence[float]]) -> np.ndarray:
    a = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([a[:, :2], a[:, :2] + a[:, 2:]], axis=1)


def _ap101(keys: list[tuple], tps: list[bool], num_gt: int, rec_thrs: np.ndarray) -> float:
    """COCOeval's interpolated AP of detections ``(sort key, is true positive)`` with ``num_gt`` to find."""
    if num_gt == 0:
        return 0.0 if keys else 1.0  # nothing to find: perfect unless something was "found"
    if not keys:
        return 0.0
    order = sorted(range(len(keys)), key=keys.__getitem__)
    tp = np.cumsum(np.asarray([tps[i] for i in order], dtype=np.float64))
    fp = np.cumsum(np.asarray([not tps[i] for i in order], dtype=np.float64))
    rc = tp / num_gt
    pr = tp / (fp + tp + np.spacing(1))
    pr = np.maximum.accumulate(pr[::-1])[::-1]
    idx = np.searchsorted(rc, rec_thrs, side="left")
    q = np.where(idx < pr.size, pr[np.minimum(idx, pr.size - 1)], 0.0)
    return float(q.mean())


def _tide_arrays(E: Any, g: dict, r: list[dict], pos_thr: float, bg_thr: float) -> tuple[dict, dict, dict]:
    """Per class: base points, the errors and their fixes, and the object counts (see the module notes).

    Returns ``(points, errors, num_gt)``: ``points[c]`` the ``(sort key, tp)`` of the class's
    counted detections; ``errors`` a list of ``(type, det class, det index in points, fix)`` with
    ``fix`` None (drop) or the class that gains a true positive; ``num_gt[c]`` and per class the
    missed objects under key ``("miss", c)``.
    """
    from gligen_eval.scoring.instances import iou_matrix

    p = E.params
    all_rng = [float(v) for v in p.areaRng[list(p.areaRngLbl).index("all")]]
    max_det = int(list(p.maxDets)[-1])
    # one threshold, one area range, one detection limit: reading evalImgs back costs per entry
    p.iouThrs, p.areaRng, p.areaRngLbl, p.maxDets = [float(pos_thr)], [all_rng], ["all"], [max_det]
    with coco._maybe_quiet(True):
        E.evaluate()
    img_rank = {im: k for k, im in enumerate(p.imgIds)}
    gt_by_id = {a["id"]: a for a in g["annotations"]}
    dt_by_id = {d["id"]: d for d in r}
    per_img: dict[int, dict[str, list]] = {}
    points: dict[int, list] = {}
    num_gt: dict[Any, int] = {}
    for e in E.evalImgs:
        if e is None:
            continue
        c, img = e["category_id"], e["image_id"]
        slot = per_img.setdefault(img, {"gt": [], "dt": []})
        for gid, ign, used in zip(e["gtIds"], e["gtIgnore"], e["gtMatched"][0]):
            if not ign:
                slot["gt"].append((gid, c, bool(used)))
                num_gt[c] = num_gt.get(c, 0) + 1
        pts = points.setdefault(c, [])
        for k, (did, score, matched, ign) in enumerate(zip(e["dtIds"], e["dtScores"], e["dtMatched"][0], e["dtIgnore"][0])):
            if ign:
                continue
            key = (-float(score), img_rank[img], k)
            slot["dt"].append((did, c, key, bool(matched), len(pts)))
            pts.append((key, bool(matched)))
    errors: list[list] = []  # [type, det class, index, target gt id or None, score key]
    usable: dict[int, tuple] = {}  # gt id -> best (score key, error index) pointing at it
    for img, slot in per_img.items():
        gts = slot["gt"]
        if not slot["dt"]:
            continue
        fp = [d for d in slot["dt"] if not d[3]]
        if not fp:
            continue
        if not gts:
            errors.extend(["bkg", d[1], d[4], None, d[2]] for d in fp)
            continue
        ious = iou_matrix(_xyxy_array([dt_by_id[d[0]]["bbox"] for d in fp]),
                          _xyxy_array([gt_by_id[t[0]]["bbox"] for t in gts]))  # fmt: skip
        gcls = np.asarray([t[1] for t in gts])
        gused = np.asarray([t[2] for t in gts])
        for i, d in enumerate(fp):
            row = ious[i]
            same = np.where(gcls == d[1], row, -1.0)
            other = np.where(gcls != d[1], row, -1.0)
            js, jo = int(same.argmax()), int(other.argmax())
            target = None
            if bg_thr <= same[js] <= pos_thr:
                kind, target = "loc", js
            elif other[jo] >= pos_thr:
                kind, target = "cls", jo
            elif np.any((same >= pos_thr) & gused):
                kind = "dupl"
            elif row.max() <= bg_thr:
                kind = "bkg"
            else:
                kind = "both"
            gid = None
            if target is not None and not gused[target]:
                gid = gts[target][0]
                best = usable.get(gid)
                if best is None or d[2] < best[0]:
                    usable[gid] = (d[2], len(errors))
            errors.append([kind, d[1], d[4], gid, d[2]])
    fixes = []
    for n, (kind, c, idx, gid, _) in enumerate(errors):
        fix = None
        if gid is not None and usable[gid][1] == n:
            fix = gt_by_id[gid]["category_id"]
        fixes.append((kind, c, idx, fix))
    for img, slot in per_img.items():
        for gid, c, used in slot["gt"]:
            if not used and gid not in usable:
                num_gt[("miss", c)] = num_gt.get(("miss", c), 0) + 1
    return points, fixes, num_gt


def _tide_of(E: Any, g: dict, r: list[dict], pos_thr: float, bg_thr: float) -> TideResult:
    points, fixes, num_gt = _tide_arrays(E, g, r, pos_thr, bg_thr)
    rec_thrs = np.asarray(E.params.recThrs, dtype=np.float64)
    names = {c["id"]: c["name"] for c in g["categories"]}
    classes = [c["id"] for c in g["categories"] if num_gt.get(c["id"], 0) > 0]
    counts = {k: 0 for k in TIDE_TYPES}
    per_cat_counts = {c: {k: 0 for k in TIDE_TYPES} for c in classes}
    for kind, c, _, _ in fixes:
        counts[kind] += 1
        if c in per_cat_counts:
            per_cat_counts[c][kind] += 1
    for c in classes:
        per_cat_counts[c]["miss"] = num_gt.get(("miss", c), 0)
    counts["miss"] = sum(v for k, v in num_gt.items() if isinstance(k, tuple))

    drops: dict[tuple, set] = {}
    gains: dict[tuple, list] = {}
    for kind, dc, idx, fix in fixes:
        drops.setdefault((kind, dc), set()).add(idx)
        if fix is not None:
            gains.setdefault((kind, fix), []).append((points[dc][idx][0], True))

    def ap(c: int, kind: str | None) -> float:
        pts = list(points.get(c, []))
        n = num_gt.get(c, 0)
        if kind == "miss":
            n -= num_gt.get(("miss", c), 0)
        elif kind is not None:
            drop = drops.get((kind, c), set())
            pts = [pt for i, pt in enumerate(pts) if i not in drop] + gains.get((kind, c), [])
        return _ap101([k for k, _ in pts], [t for _, t in pts], n, rec_thrs)

    per_category: dict[str, dict[str, float]] = {}
    delta = {k: 0.0 for k in TIDE_TYPES}
    base_aps = []
    for c in classes:
        base = ap(c, None)
        base_aps.append(base)
        row: dict[str, float] = {}
        for k in TIDE_TYPES:
            row[k] = ap(c, k) - base
            delta[k] += row[k] / len(classes)
        row.update({f"n_{k}": float(v) for k, v in per_cat_counts[c].items()})
        row["AP50"] = base
        per_category[names[c]] = row
    ap50 = float(np.mean(base_aps)) if base_aps else math.nan
    return TideResult(delta, counts, ap50, per_category)


def tide_errors(
    gt: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    *,
    pos_thr: float = 0.5,
    bg_thr: float = 0.1,
    per_category: bool = True,
    prepared: bool = False,
) -> TideResult:
    """TIDE ΔAP50 per error type of COCO ``results`` against ``gt`` (boxes), per run and per category.

    ``prepared``: ``gt`` and ``results`` are already checked copies (:func:`coco.prepare_gt`,
    :func:`coco.prepare_results`), as :func:`error_metrics` passes them to its three analyses."""
    if not 0.0 <= bg_thr <= pos_thr <= 1.0:
        raise ConfigError(f"TIDE needs 0 <= bg_thr <= pos_thr <= 1, got bg_thr={bg_thr}, pos_thr={pos_thr}")
    E, g, r = _evaluator(gt, results, prepared=prepared)
    if not any(not a.get("iscrowd", 0) for a in g["annotations"]):
        zero = {k: 0.0 for k in TIDE_TYPES}
        return TideResult(zero, {k: 0 for k in TIDE_TYPES}, math.nan)
    out = _tide_of(E, g, r, pos_thr, bg_thr)
    return out if per_category else TideResult(out.delta_ap, out.counts, out.ap50)


def ap_over_iou(
    gt: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    thresholds: Sequence[float] = IOU_CURVE_THRESHOLDS,
    *,
    prepared: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """``(thresholds, AP at each)`` (area ``all``, 100 detections per image; NaN where undefined)."""
    thr = np.asarray(thresholds, dtype=np.float64)
    if thr.ndim != 1 or thr.size < 2 or np.any(np.diff(thr) <= 0) or thr[0] < 0 or thr[-1] > 1:
        raise ConfigError(f"IoU thresholds must be at least two increasing values in [0, 1], got {list(thresholds)}")
    E, _, _ = _evaluator(gt, results, iou_thrs=thr, prepared=prepared)
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
    prepared: bool = False,
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
    g, r = _prepare(gt, results, prepared)
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
                  prefix: str = "box", *, confusion_min_score: float = 0.25) -> tuple[dict[str, float], dict[str, Any]]:  # fmt: skip
    """``({"<prefix>/tide/<type>": ΔAP50, ..., "<prefix>/AP_iou_auc": area}, breakdowns)``.

    The breakdowns hold the per-category ΔAPs (``<prefix>/tide_per_category``), the error counts
    (``<prefix>/tide_counts``), the AP-over-IoU curve (``<prefix>/AP_over_iou``: thresholds and AP)
    and the :func:`confusion_matrix` of the detections scoring at least ``confusion_min_score``
    (``<prefix>/confusion``; AP integrates over every score, a confusion matrix needs a floor: pass
    ``scoring.instance_min_score``, whose default this is).
    """
    g, r = _prepare(gt, results, False)
    tide = tide_errors(g, r, prepared=True)
    thr, ap = ap_over_iou(g, r, prepared=True)
    metrics = {f"{prefix}/tide/{k}": tide.delta_ap[k] for k in TIDE_TYPES}
    metrics[f"{prefix}/AP_iou_auc"] = iou_auc(thr, ap)
    breakdowns = {
        f"{prefix}/tide_per_category": tide.per_category,
        f"{prefix}/tide_counts": tide.counts,
        f"{prefix}/AP_over_iou": {"iou": [float(v) for v in thr], "AP": [None if math.isnan(v) else float(v) for v in ap]},
        f"{prefix}/confusion": confusion_matrix(g, r, min_score=confusion_min_score, prepared=True),
    }
    return metrics, breakdowns
