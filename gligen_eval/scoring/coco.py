"""COCO / LVIS evaluation of detections (boxes and keypoints).

Three interchangeable backends compute the same numbers:

* ``"hotcoco"`` (default) -- hotcoco (Rust), over ten times faster than pycocotools inside this
  scoring path, index building included; it also does LVIS-style evaluation;
* ``"pycocotools"`` -- the reference implementation (no LVIS mode);
* ``"faster"`` -- faster-coco-eval (C++), several times faster; it also does LVIS-style evaluation
  (``lvis_style=True``: negative / not-exhaustive categories, APr/APc/APf).

Metric keys (:func:`metric_keys`), in COCO ``summarize()`` order:

* bbox: ``AP AP50 AP75 APs APm APl AR1 AR10 AR100 ARs ARm ARl`` -- the ``AR<n>`` keys follow
  ``max_dets`` (default ``(1, 10, 100)``);
* keypoints: ``AP AP50 AP75 APm APl AR AR50 AR75 ARm ARl`` (at most 20 detections per image);
* LVIS (bbox, ``lvis_style=True``, default ``max_dets=(300,)``):
  ``AP AP50 AP75 APs APm APl AR300 ARs ARm ARl APr APc APf``.

Values are the library's floats, unrounded. As in pycocotools, a value is ``-1.0`` where it is
undefined (e.g. ``APs`` when no ground-truth box is small, or every AP when there is no ground truth).
The summary means are computed here from the library's ``precision``/``recall`` arrays with the same
arithmetic as ``COCOeval.summarize()`` (bit-identical, checked by the tests), so that any ``max_dets``
works with both backends and nothing is printed.

The module also builds the COCO ground truth of generated images from :class:`~gligen_eval.records.Layout`
records (one COCO image per generated sample) and converts :class:`~gligen_eval.records.Detection`
records to COCO results, and it holds the OKS formula (:func:`oks`).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import numbers
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Iterable, Iterator, Literal, Mapping, Sequence

import numpy as np

from gligen_eval.boxes import xyxy_norm_to_xywh_abs
from gligen_eval.errors import ConfigError, InputError
from gligen_eval.records import COCO_KEYPOINT_NAMES, Detection, Layout

IouType = Literal["bbox", "keypoints"]
Backend = Literal["hotcoco", "pycocotools", "faster"]
IOU_TYPES: tuple[str, ...] = ("bbox", "keypoints")
BACKENDS: tuple[str, ...] = ("hotcoco", "pycocotools", "faster")
DEFAULT_BACKEND = "hotcoco"
#: Backends with an LVIS mode.
LVIS_BACKENDS: tuple[str, ...] = ("hotcoco", "faster")

BBOX_KEYS: tuple[str, ...] = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
KEYPOINT_KEYS: tuple[str, ...] = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
LVIS_EXTRA_KEYS: tuple[str, ...] = ("APr", "APc", "APf")

DEFAULT_MAX_DETS = {"bbox": (1, 10, 100), "lvis": (300,), "keypoints": (20,)}

#: Per-keypoint OKS sigmas of the 17 COCO person keypoints (the values COCOeval uses).
COCO_KEYPOINT_SIGMAS: tuple[float, ...] = tuple(
    v / 10.0 for v in (0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89)
)
#: COCO person skeleton (1-based keypoint indices, as in person_keypoints_*.json).
COCO_SKELETON: tuple[tuple[int, int], ...] = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9),
    (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
)  # fmt: skip

#: The 80 COCO detection classes, in the order of the usual 80-way detectors (ultralytics, Detectron2, mmdet).
COCO80_NAMES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)  # fmt: skip

#: Other spellings of COCO class names -> the name used in the COCO annotation files (and by ultralytics).
#: The first six are the Darknet/YOLOv4 ``coco.names`` spellings (PASCAL VOC heritage).
CATEGORY_ALIASES: Mapping[str, str] = {
    "motorbike": "motorcycle",
    "aeroplane": "airplane",
    "sofa": "couch",
    "pottedplant": "potted plant",
    "diningtable": "dining table",
    "tvmonitor": "tv",
    "tv monitor": "tv",
    "television": "tv",
    "hair dryer": "hair drier",
    "hairdryer": "hair drier",
    "cellphone": "cell phone",
    "mobile phone": "cell phone",
    "doughnut": "donut",
    "hotdog": "hot dog",
    "sportsball": "sports ball",
    "teddybear": "teddy bear",
    "wineglass": "wine glass",
}


def canonical_category(name: str, aliases: Mapping[str, str] | None = None) -> str:
    """Normalize a class name for matching: lower case, single spaces, ``_`` as space, aliases resolved."""
    key = " ".join(str(name).replace("_", " ").lower().split())
    table = CATEGORY_ALIASES if aliases is None else aliases
    return table.get(key, key)


def object_class(obj: Any, aliases: Mapping[str, str] | None = None) -> str:
    """The class a grounded object is scored as: its category when it has one, else its phrase."""
    return canonical_category(obj.category if getattr(obj, "category", None) else obj.phrase, aliases)


# --------------------------------------------------------------------------------------------
# keys and arguments


def metric_keys(iou_type: str = "bbox", *, lvis_style: bool = False, max_dets: int | Sequence[int] | None = None) -> tuple[str, ...]:
    """The metric names :func:`evaluate_coco` returns, in order."""
    _check_choice("iou_type", iou_type, IOU_TYPES)
    if iou_type == "keypoints":
        return KEYPOINT_KEYS
    md = _resolve_max_dets(iou_type, lvis_style, max_dets)
    keys = ["AP", "AP50", "AP75", "APs", "APm", "APl", *(f"AR{m}" for m in md), "ARs", "ARm", "ARl"]
    if lvis_style:
        keys += list(LVIS_EXTRA_KEYS)
    return tuple(keys)


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {list(choices)}, got {value!r}")


def _resolve_max_dets(iou_type: str, lvis_style: bool, max_dets: int | Sequence[int] | None) -> tuple[int, ...]:
    if max_dets is None:
        return DEFAULT_MAX_DETS["lvis" if lvis_style else iou_type]
    vals = [max_dets] if isinstance(max_dets, numbers.Integral) else list(max_dets)
    if not vals or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1 for v in vals):
        raise ConfigError(f"max_dets must be positive integers, got {max_dets!r}")
    return tuple(sorted({int(v) for v in vals}))


# --------------------------------------------------------------------------------------------
# validation of COCO-format inputs (copies are returned; the caller's data is never modified)


def _is_num(v: Any) -> bool:
    t = type(v)
    if t is float:
        return math.isfinite(v)
    if t is int:
        return True
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    return type(v) is int or (isinstance(v, numbers.Integral) and not isinstance(v, bool))


def _is_obj(v: Any) -> bool:
    return type(v) is dict or isinstance(v, Mapping)


_PLAIN_NUMBERS = (int, float)
_isfinite = math.isfinite


def _is_box(bb: Any) -> bool:
    """``[x, y, w, h]`` of four finite numbers (the fast path covers plain JSON numbers)."""
    if type(bb) is not list and type(bb) is not tuple or len(bb) != 4:
        return False
    a, b, c, d = bb
    if type(a) in _PLAIN_NUMBERS and type(b) in _PLAIN_NUMBERS and type(c) in _PLAIN_NUMBERS and type(d) in _PLAIN_NUMBERS:
        return _isfinite(a) and _isfinite(b) and _isfinite(c) and _isfinite(d)
    return _is_num(a) and _is_num(b) and _is_num(c) and _is_num(d)


def _num_keypoints_of(cat: Mapping[str, Any]) -> int:
    names = cat.get("keypoints")
    return len(names) if isinstance(names, list) and names else len(COCO_KEYPOINT_NAMES)


def prepare_gt(gt: Any, *, iou_type: str = "bbox", path: str | None = None) -> dict[str, Any]:
    """Check a COCO/LVIS ground-truth dict and return an evaluable copy.

    Fills what COCOeval needs but some files omit: ``iscrowd`` (0), ``area`` (box area) and, for
    keypoints, ``num_keypoints`` (count of labelled points). Annotation ids are renumbered 1..N
    (order kept) when they are not unique positive integers, since pycocotools mis-matches id 0.
    """
    if not isinstance(gt, Mapping):
        raise InputError(f"ground truth must be a JSON object with images/annotations/categories, got {type(gt).__name__}", path=path)
    for key in ("images", "annotations", "categories"):
        if not isinstance(gt.get(key), list):
            raise InputError(f"ground truth needs a list '{key}'", path=path)
    images, cats = gt["images"], gt["categories"]
    img_ids: set[int] = set()
    for i, im in enumerate(images):
        if not isinstance(im, Mapping) or not _is_int(im.get("id")):
            raise InputError("image needs an integer 'id'", path=path, record=f"images[{i}]")
        if im["id"] in img_ids:
            raise InputError(f"duplicate image id {im['id']}", path=path, record=f"images[{i}]")
        img_ids.add(im["id"])
    cat_kps: dict[int, int] = {}
    for i, c in enumerate(cats):
        if not isinstance(c, Mapping) or not _is_int(c.get("id")) or not isinstance(c.get("name"), str):
            raise InputError("category needs an integer 'id' and a string 'name'", path=path, record=f"categories[{i}]")
        if c["id"] in cat_kps:
            raise InputError(f"duplicate category id {c['id']}", path=path, record=f"categories[{i}]")
        cat_kps[c["id"]] = _num_keypoints_of(c)

    anns: list[dict[str, Any]] = []
    ids: list[Any] = []
    for i, a in enumerate(gt["annotations"]):
        if not _is_obj(a):
            raise InputError("annotation must be an object", path=path, record=f"annotations[{i}]")
        bb = a.get("bbox")
        if a.get("image_id") not in img_ids or a.get("category_id") not in cat_kps or not _is_box(bb) or bb[2] < 0 or bb[3] < 0:
            rec = f"annotation id {a['id']}" if "id" in a else f"annotations[{i}]"
            if a.get("image_id") not in img_ids:
                raise InputError(f"image_id {a.get('image_id')!r} is not in 'images'", path=path, record=rec)
            if a.get("category_id") not in cat_kps:
                raise InputError(f"category_id {a.get('category_id')!r} is not in 'categories'", path=path, record=rec)
            if not _is_box(bb):
                raise InputError(f"'bbox' must be [x, y, w, h] numbers, got {bb!r}", path=path, record=rec)
            raise InputError(f"'bbox' has a negative width or height: {list(bb)}", path=path, record=rec)
        b = dict(a)
        if "iscrowd" not in b:
            b["iscrowd"] = 0
        if not _is_num(b.get("area")):
            b["area"] = float(bb[2]) * float(bb[3])
        if iou_type == "keypoints":
            kps = a.get("keypoints")
            k = cat_kps[a["category_id"]]
            if not isinstance(kps, list) or len(kps) != 3 * k or not all(_is_num(v) for v in kps):
                rec = f"annotation id {a['id']}" if "id" in a else f"annotations[{i}]"
                raise InputError(f"'keypoints' must be {3 * k} numbers (x, y, v per keypoint)", path=path, record=rec)
            if "num_keypoints" not in b:
                b["num_keypoints"] = int(sum(1 for v in kps[2::3] if v > 0))
        ids.append(a.get("id"))
        anns.append(b)
    if not all(_is_int(v) and v > 0 for v in ids) or len(set(ids)) != len(ids):
        for n, b in enumerate(anns, start=1):
            b["id"] = n
    out = dict(gt)
    out["annotations"] = anns
    out["images"] = [dict(im) for im in images]
    out["categories"] = [dict(c) for c in cats]
    return out


def prepare_results(results: Any, gt: Mapping[str, Any], *, iou_type: str = "bbox", path: str | None = None) -> list[dict[str, Any]]:
    """Check COCO-format results against (prepared) ground truth; return shallow copies.

    Every result needs ``image_id`` and ``category_id`` present in the ground truth, a finite ``score``,
    and ``bbox`` ``[x, y, w, h]`` (bbox) or ``keypoints`` (keypoints). The error names the record index.
    """
    if not isinstance(results, list):
        raise InputError(f"results must be a JSON list of objects (COCO results format), got {type(results).__name__}", path=path)
    img_ids = {im["id"] for im in gt["images"]}
    cat_kps = {c["id"]: _num_keypoints_of(c) for c in gt["categories"]}
    out: list[dict[str, Any]] = []
    with_bbox = 0
    for i, r in enumerate(results):
        rec = f"result {i}"
        if not _is_obj(r):
            raise InputError("result must be an object", path=path, record=rec)
        if r.get("image_id") not in img_ids:
            raise InputError(f"image_id {r.get('image_id')!r} is not an image of the ground truth", path=path, record=rec)
        if r.get("category_id") not in cat_kps:
            raise InputError(f"category_id {r.get('category_id')!r} is not a category of the ground truth", path=path, record=rec)
        if not _is_num(r.get("score")):
            raise InputError(f"'score' must be a finite number, got {r.get('score')!r}", path=path, record=rec)
        bb = r.get("bbox")
        if bb is not None or iou_type == "bbox":
            if not _is_box(bb):
                raise InputError(f"'bbox' must be [x, y, w, h] numbers, got {bb!r}", path=path, record=rec)
            if bb[2] < 0 or bb[3] < 0:
                raise InputError(f"'bbox' has a negative width or height: {list(bb)}", path=path, record=rec)
            with_bbox += 1
        if iou_type == "keypoints":
            kps = r.get("keypoints")
            k = cat_kps[r["category_id"]]
            if not isinstance(kps, list) or len(kps) != 3 * k or not all(_is_num(v) for v in kps):
                raise InputError(f"'keypoints' must be {3 * k} numbers (x, y, score per keypoint)", path=path, record=rec)
        out.append(dict(r))
    if iou_type == "keypoints" and 0 < with_bbox < len(out):
        raise InputError(
            f"{with_bbox} of {len(out)} keypoint results carry a 'bbox': give it for all of them or none "
            "(the detection area comes from the bbox when present, else from the keypoints' extent)",
            path=path,
        )
    return out


# --------------------------------------------------------------------------------------------
# evaluation


@dataclass(frozen=True)
class CocoResult:
    """Summary metrics plus per-category AP of one evaluation."""

    metrics: dict[str, float]
    per_category: dict[str, dict[str, float]] = field(default_factory=dict)
    """category name -> ``{"AP", "AP50", "n_gt", "n_det"}`` for categories with ground truth."""


@contextlib.contextmanager
def _maybe_quiet(quiet: bool) -> Iterator[None]:
    if quiet:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    else:
        yield


def _mean_valid(s: np.ndarray) -> float:
    v = s[s > -1]
    return float(np.mean(v)) if v.size else -1.0


def _summary(E: Any, *, ap: bool, iou: float | None = None, area: str = "all", max_det: int | None = None,
             cat_idx: Sequence[int] | None = None) -> float:  # fmt: skip
    """The arithmetic of ``COCOeval._summarize`` on the accumulated arrays."""
    p = E.params
    aind = p.areaRngLbl.index(area)
    mind = list(p.maxDets).index(p.maxDets[-1] if max_det is None else max_det)
    s = np.asarray(E.eval["precision"] if ap else E.eval["recall"])
    if iou is not None:
        s = s[np.where(iou == np.asarray(p.iouThrs))[0]]
    if ap:
        s = s[:, :, :, aind, mind] if cat_idx is None else s[:, :, list(cat_idx), aind, mind]
    else:
        s = s[:, :, aind, mind] if cat_idx is None else s[:, list(cat_idx), aind, mind]
    return _mean_valid(s)


def _summarize(E: Any, iou_type: str, lvis_style: bool, max_dets: tuple[int, ...], cats: list[Mapping[str, Any]]) -> dict[str, float]:
    if iou_type == "keypoints":
        vals = [
            _summary(E, ap=True), _summary(E, ap=True, iou=0.5), _summary(E, ap=True, iou=0.75),
            _summary(E, ap=True, area="medium"), _summary(E, ap=True, area="large"),
            _summary(E, ap=False), _summary(E, ap=False, iou=0.5), _summary(E, ap=False, iou=0.75),
            _summary(E, ap=False, area="medium"), _summary(E, ap=False, area="large"),
        ]  # fmt: skip
        return dict(zip(KEYPOINT_KEYS, vals))
    out = {
        "AP": _summary(E, ap=True),
        "AP50": _summary(E, ap=True, iou=0.5),
        "AP75": _summary(E, ap=True, iou=0.75),
        "APs": _summary(E, ap=True, area="small"),
        "APm": _summary(E, ap=True, area="medium"),
        "APl": _summary(E, ap=True, area="large"),
    }
    for m in max_dets:
        out[f"AR{m}"] = _summary(E, ap=False, max_det=m)
    out["ARs"] = _summary(E, ap=False, area="small")
    out["ARm"] = _summary(E, ap=False, area="medium")
    out["ARl"] = _summary(E, ap=False, area="large")
    if lvis_style:
        by_id = {c["id"]: c for c in cats}
        cat_ids = list(E.params.catIds)
        for key, freq in zip(LVIS_EXTRA_KEYS, ("r", "c", "f")):
            idx = [k for k, cid in enumerate(cat_ids) if by_id[cid].get("frequency") == freq]
            out[key] = _summary(E, ap=True, cat_idx=idx)
    return out


def _per_category(E: Any, gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    names = {c["id"]: c["name"] for c in gt["categories"]}
    n_gt = Counter(a["category_id"] for a in gt["annotations"] if not a.get("iscrowd", 0))
    n_det = Counter(r["category_id"] for r in results)
    out: dict[str, dict[str, float]] = {}
    for k, cid in enumerate(E.params.catIds):
        if not n_gt.get(cid):
            continue
        out[names[cid]] = {
            "AP": _summary(E, ap=True, cat_idx=[k]),
            "AP50": _summary(E, ap=True, iou=0.5, cat_idx=[k]),
            "n_gt": int(n_gt[cid]),
            "n_det": int(n_det.get(cid, 0)),
        }
    return out


def _bbox_results_dataset(gt: Mapping[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    """The detections as a COCO dataset, with the fields ``COCO.loadRes`` gives box results.

    (``loadRes`` also adds a polygon per box for segmentation scoring, which box scoring never reads.)
    """
    for i, r in enumerate(results, start=1):
        bb = r["bbox"]
        r["area"] = bb[2] * bb[3]
        r["id"] = i
        r["iscrowd"] = 0
    return {"info": gt.get("info", {}), "images": list(gt["images"]), "categories": list(gt["categories"]),
            "annotations": results}  # fmt: skip


def _backend_eval(gt: dict[str, Any], results: list[dict[str, Any]], *, iou_type: str, backend: str,
                  lvis_style: bool, max_dets: tuple[int, ...], kpt_sigmas: Sequence[float] | None, quiet: bool) -> Any:  # fmt: skip
    """Run the backend's evaluate + accumulate; ``results`` are private copies that get annotated."""
    if backend == "hotcoco":
        E = _hotcoco_eval(gt, results, iou_type=iou_type, lvis_style=lvis_style, kpt_sigmas=kpt_sigmas)
    elif backend == "faster":
        from faster_coco_eval import COCO, COCOeval_faster

        printer = (lambda *a, **k: None) if quiet else print
        coco_gt = COCO(gt, print_function=printer)
        if iou_type == "bbox":
            coco_dt = COCO(_bbox_results_dataset(gt, results), print_function=printer)
        else:
            coco_dt = coco_gt.loadRes(results)
        E = COCOeval_faster(coco_gt, coco_dt, iou_type, lvis_style=lvis_style, print_function=printer,
                            kpt_oks_sigmas=None if kpt_sigmas is None else list(kpt_sigmas))  # fmt: skip
    else:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        if results and iou_type != "bbox":
            coco_dt = coco_gt.loadRes(results)
        else:  # (pycocotools' loadRes also fails on an empty list)
            coco_dt = COCO()
            coco_dt.dataset = _bbox_results_dataset(gt, results)
            coco_dt.createIndex()
        E = COCOeval(coco_gt, coco_dt, iou_type)
        if kpt_sigmas is not None:
            E.params.kpt_oks_sigmas = np.asarray(kpt_sigmas, dtype=float)
    E.params.maxDets = list(max_dets)
    E.evaluate()
    E.accumulate()
    if not quiet:
        try:
            E.summarize()  # the library's familiar table (pycocotools needs three max_dets for it)
        except Exception:  # noqa: BLE001 - printing only
            pass
    return E


def _hotcoco_eval(gt: dict[str, Any], results: list[dict[str, Any]], *, iou_type: str, lvis_style: bool,
                  kpt_sigmas: Sequence[float] | None) -> Any:  # fmt: skip
    """A hotcoco ``COCOeval`` on our dicts (not yet evaluated); the caller sets ``maxDets``."""
    import hotcoco

    coco_gt = hotcoco.COCO(gt)
    if iou_type == "bbox" or not results:
        coco_dt = hotcoco.COCO(_bbox_results_dataset(gt, results) if iou_type == "bbox" else
                               {"images": list(gt["images"]), "categories": list(gt["categories"]), "annotations": []})
    else:
        coco_dt = coco_gt.load_res(results)
    E = hotcoco.COCOeval(coco_gt, coco_dt, iou_type, lvis_style=lvis_style)
    if kpt_sigmas is not None:
        E.params.kpt_oks_sigmas = [float(v) for v in kpt_sigmas]
    return E


def run_coco_eval(
    gt: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    *,
    iou_type: IouType = "bbox",
    backend: Backend = DEFAULT_BACKEND,
    lvis_style: bool = False,
    max_dets: int | Sequence[int] | None = None,
    kpt_sigmas: Sequence[float] | None = None,
    quiet: bool = True,
    gt_path: str | None = None,
    results_path: str | None = None,
) -> CocoResult:
    """Evaluate COCO-format ``results`` against the COCO/LVIS-format ``gt`` dict.

    Neither input is modified. Bad records raise :class:`InputError` naming ``gt_path`` /
    ``results_path`` and the record; a bad argument raises :class:`ConfigError`.
    """
    _check_choice("iou_type", iou_type, IOU_TYPES)
    _check_choice("backend", backend, BACKENDS)
    if lvis_style and iou_type != "bbox":
        raise ConfigError("LVIS-style evaluation is defined for boxes only (iou_type='bbox')")
    if lvis_style and backend not in LVIS_BACKENDS:
        raise ConfigError(f"LVIS-style evaluation needs backend {' or '.join(map(repr, LVIS_BACKENDS))} "
                          "(pycocotools has no LVIS mode)")
    md = _resolve_max_dets(iou_type, lvis_style, max_dets)
    if kpt_sigmas is not None and len(kpt_sigmas) == 0:
        raise ConfigError("kpt_sigmas must not be empty")
    g = prepare_gt(gt, iou_type=iou_type, path=gt_path)
    if lvis_style:
        for i, c in enumerate(g["categories"]):
            if c.get("frequency") not in ("r", "c", "f"):
                raise InputError("LVIS-style evaluation needs 'frequency' r/c/f on every category",
                                 path=gt_path, record=f"categories[{i}]")  # fmt: skip
    r = prepare_results(list(results) if isinstance(results, tuple) else results, g, iou_type=iou_type, path=results_path)
    if kpt_sigmas is not None:
        for i, c in enumerate(g["categories"]):
            if _num_keypoints_of(c) != len(kpt_sigmas):
                raise ConfigError(f"kpt_sigmas has {len(kpt_sigmas)} values but category {c['name']!r} has "
                                  f"{_num_keypoints_of(c)} keypoints")  # fmt: skip
    with _maybe_quiet(quiet):
        E = _backend_eval(g, r, iou_type=iou_type, backend=backend, lvis_style=lvis_style,
                          max_dets=md, kpt_sigmas=kpt_sigmas, quiet=quiet)  # fmt: skip
    metrics = _summarize(E, iou_type, lvis_style, md, g["categories"])
    return CocoResult(metrics=metrics, per_category=_per_category(E, g, r))


def evaluate_coco(
    gt: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    *,
    iou_type: IouType = "bbox",
    backend: Backend = DEFAULT_BACKEND,
    lvis_style: bool = False,
    max_dets: int | Sequence[int] | None = None,
    kpt_sigmas: Sequence[float] | None = None,
    quiet: bool = True,
) -> dict[str, float]:
    """COCO summary metrics (see the module docstring for the keys). Empty ``results`` give AP 0."""
    return run_coco_eval(gt, results, iou_type=iou_type, backend=backend, lvis_style=lvis_style,
                         max_dets=max_dets, kpt_sigmas=kpt_sigmas, quiet=quiet).metrics  # fmt: skip


def per_category_ap(
    gt: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    *,
    iou_type: IouType = "bbox",
    backend: Backend = DEFAULT_BACKEND,
    lvis_style: bool = False,
    max_dets: int | Sequence[int] | None = None,
    quiet: bool = True,
) -> dict[str, dict[str, float]]:
    """Per category (by name): ``AP`` (IoU .50:.95), ``AP50``, ``n_gt`` and ``n_det``, for categories with ground truth."""
    return run_coco_eval(gt, results, iou_type=iou_type, backend=backend, lvis_style=lvis_style,
                         max_dets=max_dets, quiet=quiet).per_category  # fmt: skip


# --------------------------------------------------------------------------------------------
# files (bring-your-own detector)


def load_json_file(path: str | Path, what: str) -> Any:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} file not found", path=str(p))
    try:
        with p.open("rb") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise InputError(f"not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})", path=str(p)) from None
    except UnicodeDecodeError:
        raise InputError("not a UTF-8 JSON file", path=str(p)) from None


def is_lvis_gt(gt: Mapping[str, Any]) -> bool:
    """LVIS-format annotations: every category carries a ``frequency`` group."""
    cats = gt.get("categories") if isinstance(gt, Mapping) else None
    return bool(cats) and all(isinstance(c, Mapping) and c.get("frequency") in ("r", "c", "f") for c in cats)


def score_detections_file(
    layouts_json: str | Path,
    detections_json: str | Path,
    iou_type: IouType = "bbox",
    backend: Backend = DEFAULT_BACKEND,
    *,
    lvis_style: bool | None = None,
    max_dets: int | Sequence[int] | None = None,
    quiet: bool = True,
) -> dict[str, float]:
    """Score a COCO results file against a COCO/LVIS annotation file.

    ``lvis_style=None`` switches LVIS-style evaluation on for LVIS files (categories with
    ``frequency``); LVIS evaluation needs an LVIS-capable backend (``hotcoco`` or ``faster``).
    """
    gt = load_json_file(layouts_json, "annotations")
    res = load_json_file(detections_json, "detections")
    if lvis_style is None:
        lvis = iou_type == "bbox" and is_lvis_gt(gt)
    else:
        lvis = bool(lvis_style)
    if lvis and backend not in LVIS_BACKENDS:
        raise ConfigError(f"{layouts_json}: LVIS annotations are scored LVIS-style, which needs --backend "
                          f"{' or '.join(LVIS_BACKENDS)}")
    return run_coco_eval(gt, res, iou_type=iou_type, backend=backend, lvis_style=lvis, max_dets=max_dets,
                         quiet=quiet, gt_path=str(layouts_json), results_path=str(detections_json)).metrics  # fmt: skip


# --------------------------------------------------------------------------------------------
# generated images: layouts -> ground truth, detections -> results


def _size_list(sizes: tuple[int, int] | Sequence[tuple[int, int]], n: int) -> list[tuple[int, int]]:
    if len(sizes) == 2 and all(_is_int(v) for v in sizes):  # one (width, height) for all
        out = [(int(sizes[0]), int(sizes[1]))] * n  # type: ignore[index]
    else:
        out = [(int(w), int(h)) for w, h in sizes]  # type: ignore[misc]
        if len(out) != n:
            raise ValueError(f"got {len(out)} image sizes for {n} images")
    for w, h in out:
        if w <= 0 or h <= 0:
            raise ValueError(f"image size must be positive, got {w}x{h}")
    return out


def person_category(category_id: int = 1) -> dict[str, Any]:
    """The COCO person category with its 17 keypoint names and skeleton."""
    return {"id": category_id, "name": "person", "supercategory": "person",
            "keypoints": list(COCO_KEYPOINT_NAMES), "skeleton": [list(e) for e in COCO_SKELETON]}  # fmt: skip


def build_coco_gt(
    layouts: Sequence[Layout],
    sizes: tuple[int, int] | Sequence[tuple[int, int]],
    *,
    image_keys: Sequence[str] | None = None,
    iou_type: IouType = "bbox",
    categories: Sequence[Mapping[str, Any]] | None = None,
    vocabulary: Collection[str] | None = None,
    aliases: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """COCO ground truth of generated images: image ``i+1`` is ``layouts[i]`` rendered at ``sizes[i]``.

    ``sizes`` is one ``(width, height)`` for all images or one per image. Boxes are the layout
    boxes in pixels of the generated image; ``area`` is the box area (generated images have no
    masks). Each object's class is its ``category`` (else its phrase), normalized by
    :func:`canonical_category`. ``categories`` fixes the category table (COCO dicts with ``id`` and
    ``name``, plus ``frequency`` for LVIS); otherwise it is the sorted set of object classes, ids
    1..K. ``vocabulary`` keeps only objects whose class is in it (a closed-set detector cannot find
    the rest). For ``iou_type="keypoints"`` the ground truth is the persons with keypoints, in one
    ``person`` category.
    """
    _check_choice("iou_type", iou_type, IOU_TYPES)
    n = len(layouts)
    sz = _size_list(sizes, n)
    keys = list(image_keys) if image_keys is not None else [lay.layout_id for lay in layouts]
    if len(keys) != n:
        raise ValueError(f"got {len(keys)} image keys for {n} layouts")
    vocab = None if vocabulary is None else {canonical_category(v, aliases) for v in vocabulary}

    if iou_type == "keypoints":
        cats = [dict(categories[0])] if categories else [person_category()]
        name_to_id = {canonical_category(cats[0]["name"], aliases): cats[0]["id"]}
    elif categories is not None:
        cats = [dict(c) for c in categories]
        name_to_id = {canonical_category(c["name"], aliases): c["id"] for c in cats}
    else:
        names = sorted({object_class(o, aliases) for lay in layouts for o in lay.objects})
        if vocab is not None:
            names = [nm for nm in names if nm in vocab]
        cats = [{"id": i, "name": nm} for i, nm in enumerate(names, start=1)]
        name_to_id = {nm: i for i, nm in enumerate(names, start=1)}

    images, anns = [], []
    for i, (lay, (w, h), key) in enumerate(zip(layouts, sz, keys), start=1):
        images.append({"id": i, "width": w, "height": h, "file_name": key, "layout_id": lay.layout_id})
        for j, o in enumerate(lay.objects):
            x, y, bw, bh = xyxy_norm_to_xywh_abs(o.box, w, h)
            ann: dict[str, Any] = {"id": len(anns) + 1, "image_id": i, "bbox": [x, y, bw, bh], "area": bw * bh,
                                   "iscrowd": 0, "object_index": j}  # fmt: skip
            if iou_type == "keypoints":
                if o.keypoints is None:
                    continue
                flat: list[float] = []
                for kx, ky, v in o.keypoints:
                    flat += [kx * w, ky * h, v] if v > 0 else [0, 0, 0]
                ann.update(category_id=cats[0]["id"], keypoints=flat,
                           num_keypoints=sum(1 for _, _, v in o.keypoints if v > 0))  # fmt: skip
            else:
                cls = object_class(o, aliases)
                if vocab is not None and cls not in vocab:
                    continue
                if cls not in name_to_id:
                    raise InputError(f"object {j} has class {cls!r}, which is not in the given categories",
                                     record=f"layout {lay.layout_id}")  # fmt: skip
                ann["category_id"] = name_to_id[cls]
            anns.append(ann)
    return {"images": images, "annotations": anns, "categories": cats}


def category_ids(gt: Mapping[str, Any], aliases: Mapping[str, str] | None = None) -> dict[str, int]:
    """Canonical category name -> id of a ground-truth dict."""
    return {canonical_category(c["name"], aliases): c["id"] for c in gt["categories"]}


def detections_to_coco_results(
    detections: Sequence[Sequence[Detection]],
    sizes: tuple[int, int] | Sequence[tuple[int, int]],
    name_to_id: Mapping[str, int],
    *,
    iou_type: IouType = "bbox",
    image_ids: Sequence[int] | None = None,
    aliases: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """COCO results of ``detections[i]`` on image ``image_ids[i]`` (default ``i+1``) of size ``sizes[i]``.

    A detection's ``label`` is mapped through :func:`canonical_category` to ``name_to_id``; labels
    outside it are left out (COCOeval ignores categories absent from the ground truth anyway). For
    keypoints only detections with keypoints count, all as ``person``; a keypoint's third value is
    its visibility flag (COCOeval ignores it for detections).

    Each image's results are in :func:`result_order`: score descending, ties broken by category id,
    then box. COCOeval sorts by score only and keeps the input order of equal scores (which then
    decides matches and the precision curve), so this makes the AP independent of the order in
    which a detector listed its boxes.
    """
    _check_choice("iou_type", iou_type, IOU_TYPES)
    n = len(detections)
    sz = _size_list(sizes, n)
    ids = list(image_ids) if image_ids is not None else list(range(1, n + 1))
    if len(ids) != n:
        raise ValueError(f"got {len(ids)} image ids for {n} detection lists")
    out: list[dict[str, Any]] = []
    person_id = name_to_id.get("person")
    for dets, (w, h), img_id in zip(detections, sz, ids):
        image_results: list[dict[str, Any]] = []
        for d in dets:
            x, y, bw, bh = xyxy_norm_to_xywh_abs(d.box, w, h)
            r: dict[str, Any] = {"image_id": img_id, "bbox": [x, y, max(0.0, bw), max(0.0, bh)], "score": d.score}
            if iou_type == "keypoints":
                if d.keypoints is None or person_id is None:
                    continue
                flat: list[float] = []
                for kx, ky, v in d.keypoints:
                    flat += [kx * w, ky * h, v]
                r.update(category_id=person_id, keypoints=flat)
            else:
                cid = name_to_id.get(canonical_category(d.label, aliases))
                if cid is None:
                    continue
                r["category_id"] = cid
            image_results.append(r)
        out.extend(sorted(image_results, key=result_order))
    return out


def result_order(result: Mapping[str, Any]) -> tuple:
    """Sort key of the COCO results of one image: score descending, then category id, then box
    ``[x, y, w, h]`` (the documented tiebreak of equal scores)."""
    return (-float(result["score"]), int(result["category_id"]), tuple(float(v) for v in result["bbox"]))


def build_eval_inputs(
    items: Iterable[tuple[str, Layout, int, int, Sequence[Detection]]],
    *,
    iou_type: IouType = "bbox",
    categories: Sequence[Mapping[str, Any]] | None = None,
    vocabulary: Collection[str] | None = None,
    aliases: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(sample_key, layout, width, height, detections)`` per generated image -> ``(gt, results)``.

    The images are numbered in the order of their sample keys (a stable sort: repeated keys, as in a
    bootstrap draw, keep their order). COCOeval breaks score ties across images by image order, so
    the AP depends only on which images and detections are given, never on the order of the samples
    (file order, ranks, resumes), and a recomputation reproduces the run's own numbers exactly.
    ``gt["images"][i]["layout_id"]`` says which layout each image shows.
    """
    rows = sorted(items, key=lambda r: str(r[0]))
    layouts = [r[1] for r in rows]
    sizes = [(int(r[2]), int(r[3])) for r in rows]
    gt = build_coco_gt(layouts, sizes, image_keys=[r[0] for r in rows], iou_type=iou_type,
                       categories=categories, vocabulary=vocabulary, aliases=aliases)  # fmt: skip
    results = detections_to_coco_results([r[4] for r in rows], sizes, category_ids(gt, aliases),
                                         iou_type=iou_type, aliases=aliases)  # fmt: skip
    return gt, results


# --------------------------------------------------------------------------------------------
# OKS


def oks(
    gt_keypoints: Sequence[float] | np.ndarray,
    pred_keypoints: Sequence[float] | np.ndarray,
    area: float,
    *,
    sigmas: Sequence[float] = COCO_KEYPOINT_SIGMAS,
    gt_bbox: Sequence[float] | None = None,
) -> float:
    """Object keypoint similarity of one prediction with one ground-truth person (COCOeval's formula).

    Keypoints are ``(x, y, v)`` triples, flat (``3K``) or shaped ``(K, 3)``, in pixels; the
    prediction's third value is ignored. ``area`` is the ground truth's scale (its segment or box
    area). Only labelled ground-truth points (``v > 0``) count; when there are none, COCOeval
    measures how far each predicted point lies outside the ground-truth box ``gt_bbox`` (``[x, y, w,
    h]``) enlarged to three times its size, which this function then needs.
    """
    g = np.asarray(gt_keypoints, dtype=float).reshape(-1)
    d = np.asarray(pred_keypoints, dtype=float).reshape(-1)
    sig = np.asarray(sigmas, dtype=float)
    k = sig.size
    if g.size != 3 * k or d.size != 3 * k:
        raise ValueError(f"keypoints must hold {k} (x, y, v) triples, got {g.size} and {d.size} numbers")
    var = (sig * 2) ** 2
    xg, yg, vg = g[0::3], g[1::3], g[2::3]
    xd, yd = d[0::3], d[1::3]
    labelled = vg > 0
    if np.count_nonzero(labelled) > 0:
        dx, dy = xd - xg, yd - yg
    else:
        if gt_bbox is None:
            raise ValueError("the ground truth has no labelled keypoint: pass gt_bbox to measure against its box")
        bx, by, bw, bh = (float(v) for v in gt_bbox)
        x0, x1, y0, y1 = bx - bw, bx + bw * 2, by - bh, by + bh * 2
        z = np.zeros(k)
        dx = np.max((z, x0 - xd), axis=0) + np.max((z, xd - x1), axis=0)
        dy = np.max((z, y0 - yd), axis=0) + np.max((z, yd - y1), axis=0)
    e = (dx**2 + dy**2) / var / (area + np.spacing(1)) / 2
    if np.count_nonzero(labelled) > 0:
        e = e[labelled]
    return float(np.sum(np.exp(-e)) / e.shape[0])
