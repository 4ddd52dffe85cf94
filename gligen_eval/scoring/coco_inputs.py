"""Checks of COCO-format ground truth and results; copies are returned, the caller's data is never modified."""

from __future__ import annotations

import math
import numbers
from typing import Any, Mapping

from gligen_eval.errors import InputError
from gligen_eval.records import COCO_KEYPOINT_NAMES

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

