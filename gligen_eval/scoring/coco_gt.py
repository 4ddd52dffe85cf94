"""COCO inputs of generated images: layouts -> ground truth (one COCO image per generated sample),
:class:`~gligen_eval.records.Detection` records -> COCO results, in one canonical order
(:func:`build_eval_inputs`, which scoring and compare share); LVIS-style layouts give LVIS inputs."""

from __future__ import annotations

from typing import Any, Collection, Iterable, Mapping, Sequence

from gligen_eval.boxes import xyxy_norm_to_xywh_abs
from gligen_eval.errors import InputError
from gligen_eval.records import COCO_KEYPOINT_NAMES, Detection, Layout
from gligen_eval.scoring.coco_inputs import _is_int
from gligen_eval.scoring.coco_keys import COCO_SKELETON, IOU_TYPES, IouType, _check_choice, canonical_category, object_class

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


def lvis_style_of(layouts: Iterable[Layout]) -> bool:
    """Whether the box AP of ``layouts`` is LVIS-style: they carry LVIS negative / not-exhaustive
    category ids (:attr:`Layout.lvis_style`). A mix of LVIS and other layouts is refused."""
    styles = {lay.lvis_style: lay.layout_id for lay in layouts}
    if len(styles) > 1:
        raise InputError(f"layout {styles[True]} is LVIS-style (it has neg_category_ids) but layout {styles[False]} "
                         "is not; score LVIS layouts apart from the others")  # fmt: skip
    return bool(styles) and next(iter(styles))


def lvis_categories(layouts: Iterable[Layout]) -> list[dict[str, Any]]:
    """COCO category dicts (id, name, frequency) of the LVIS categories the objects of ``layouts`` name,
    from the objects themselves (``category_id``, ``category``, ``frequency``)."""
    table: dict[int, tuple[str, str]] = {}
    for lay in layouts:
        for i, o in enumerate(lay.objects):
            if o.category_id is None or o.category is None or o.frequency is None:
                raise InputError(f"object {i} lacks its LVIS category (category, category_id and frequency), which "
                                 "LVIS-style scoring needs", record=f"layout {lay.layout_id}")  # fmt: skip
            row = table.setdefault(o.category_id, (o.category, o.frequency))
            if row != (o.category, o.frequency):
                raise InputError(f"object {i} gives category id {o.category_id} as {o.category!r} ({o.frequency}); "
                                 f"another layout gives it as {row[0]!r} ({row[1]})", record=f"layout {lay.layout_id}")
    return [{"id": c, "name": name, "frequency": freq} for c, (name, freq) in sorted(table.items())]


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

    Box inputs of LVIS-style layouts (:func:`lvis_style_of`) are LVIS inputs: the category table is
    :func:`lvis_categories` (unless ``categories`` is given) and every image carries its layout's
    negative / not-exhaustive category ids; evaluate them with ``lvis_style=True``.
    """
    rows = sorted(items, key=lambda r: str(r[0]))
    layouts = [r[1] for r in rows]
    sizes = [(int(r[2]), int(r[3])) for r in rows]
    lvis = iou_type == "bbox" and lvis_style_of(layouts)
    if lvis and categories is None:
        categories = lvis_categories(layouts)
    gt = build_coco_gt(layouts, sizes, image_keys=[r[0] for r in rows], iou_type=iou_type,
                       categories=categories, vocabulary=vocabulary, aliases=aliases)  # fmt: skip
    if lvis:
        for im, lay in zip(gt["images"], layouts):
            im["neg_category_ids"] = list(lay.neg_category_ids or ())
            im["not_exhaustive_category_ids"] = list(lay.not_exhaustive_category_ids or ())
    results = detections_to_coco_results([r[4] for r in rows], sizes, category_ids(gt, aliases),
                                         iou_type=iou_type, aliases=aliases)  # fmt: skip
    return gt, results

