"""COCO-format layout sources: ``instances_*.json`` (+ ``captions_*.json``) and
``person_keypoints_*.json``.

One layout per image, ``layout_id = "<id_prefix>-<image_id>"`` (stable across runs and machines):

* phrase and ``category`` = the category name; ``category_id`` and ``source_id`` (the annotation
  id) are kept so that every object traces back to its annotation;
* boxes: COCO ``[x, y, w, h]`` pixels → normalized xyxy (:func:`gligen_eval.boxes.xywh_abs_to_xyxy_norm`).
  A box may overshoot the image by ``tolerance_px`` pixels (rounding in the annotation tools) and is
  then clipped to it; beyond that it is an error;
* caption = the caption with the lowest annotation id for the image in ``captions_path``; without a
  captions file (or for an image that has none) the caption is built from the phrases
  (:func:`~gligen_eval.layouts.common.caption_from_phrases`, e.g. ``"a photo of person, dog and car"``);
* GLIGEN-style selection: crowd annotations are skipped (``skip_crowd``), boxes smaller than
  ``min_area`` of the image are dropped, objects are ordered by box area, largest first, and at most
  ``max_objects`` are kept (a :class:`~gligen_eval.layouts.common.LayoutWarning` says how many layouts
  were truncated; truncation is not an error); images with no object left are skipped;
* ``limit``/``seed``: deterministic subsample (see :mod:`gligen_eval.layouts.common`); layouts come out
  ordered by image id whatever the file order.

Bad input (malformed JSON, missing fields, a box outside the image, a non-positive size, an unknown
category or image id) is an :class:`~gligen_eval.errors.InputError` naming the file and the
annotation id. With ``on_invalid="skip"`` a bad annotation is dropped instead and one warning
counts them (useful for large training files); problems with the file's structure or its images
are always errors.

Keypoints follow the GLIGEN keypoint data rules: only points with visibility 2 count as present;
every other point becomes ``(0.0, 0.0, 0)``. Persons are ordered by box area, largest first, and at
most ``max_persons`` (8) are kept.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

from gligen_eval.boxes import Box, area_xyxy, clip_xyxy_norm, xywh_abs_to_xyxy_norm
from gligen_eval.errors import ConfigError, InputError
from gligen_eval.layouts.common import (
    caption_from_phrases,
    check_selection_options,
    count_note,
    keep_largest,
    read_json,
    subsample_ids,
    warn,
)
from gligen_eval.records import NUM_KEYPOINTS, GroundedObject, Keypoint, Layout

OnInvalid = Literal["error", "skip"]


# --------------------------------------------------------------------------------------------
# low-level helpers


def _is_number(v: Any) -> bool:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an integer beyond any float
        return False


def _is_id(v: Any) -> bool:
    """COCO ids are integers (strings are accepted too); anything else cannot name a record."""
    return isinstance(v, (int, str)) and not isinstance(v, bool)


def _shown_id(v: Any) -> str:
    """An id as it may appear in a one-line message."""
    return str(v) if isinstance(v, int) and not isinstance(v, bool) else repr(v)[:80]


def _ann_record(ann: Any, index: int) -> str:
    if isinstance(ann, Mapping) and "id" in ann:
        return f"annotation {_shown_id(ann['id'])}"
    return f"annotations[{index}]"


class _Problems:
    """Raise on the first problem (``error``) or count them and warn once (``skip``)."""

    def __init__(self, path: str, on_invalid: OnInvalid):
        if on_invalid not in ("error", "skip"):
            raise ConfigError(f"on_invalid must be 'error' or 'skip', got {on_invalid!r}")
        self.path, self.on_invalid = path, on_invalid
        self.count = 0
        self.first: str | None = None

    def __call__(self, message: str, record: str) -> None:
        if self.on_invalid == "error":
            hint = " (on_invalid='skip' drops such annotations instead)"
            raise InputError(message + hint, path=self.path, record=record)
        self.count += 1
        if self.first is None:
            self.first = f"[{record}]: {message}"

    def flush(self) -> None:
        if self.count:
            warn(f"{self.path}: skipped {count_note(self.count, 'invalid annotation')} (first: {self.first})")


def bbox_to_box(bbox: Any, width: float, height: float, *, tolerance_px: float = 1.0) -> tuple[Box | None, str | None]:
    """COCO ``[x, y, w, h]`` pixels → (normalized xyxy clipped to the image, None) or (None, problem)."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        return None, f"bbox must be 4 numbers [x, y, w, h], got {bbox!r}"
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        return None, f"bbox {list(bbox)!r} has a non-positive width or height"
    if x < -tolerance_px or y < -tolerance_px or x + w > width + tolerance_px or y + h > height + tolerance_px:
        return None, f"bbox {list(bbox)!r} lies outside the {width:g}x{height:g} image"
    box = clip_xyxy_norm(xywh_abs_to_xyxy_norm((x, y, w, h), width, height))
    if not (box[2] > box[0] and box[3] > box[1]):
        return None, f"bbox {list(bbox)!r} lies outside the {width:g}x{height:g} image"
    return box, None


def normalize_keypoints(
    values: Any, width: float, height: float, *, tolerance_px: float = 1.0
) -> tuple[tuple[Keypoint, ...] | None, str | None]:
    """COCO flat ``[x1, y1, v1, ...]`` (17 points, pixels) → 17 normalized ``(x, y, v)``.

    Only visibility 2 counts as present; other points become ``(0.0, 0.0, 0)``.
    Returns (keypoints, None) or (None, problem).
    """
    if not isinstance(values, (list, tuple)) or len(values) != 3 * NUM_KEYPOINTS:
        n = len(values) if isinstance(values, (list, tuple)) else type(values).__name__
        return None, f"keypoints must be {3 * NUM_KEYPOINTS} numbers (17 × x, y, v), got {n}"
    if not all(_is_number(v) for v in values):
        return None, "keypoints must be numbers"
    out: list[Keypoint] = []
    for i in range(NUM_KEYPOINTS):
        x, y, v = float(values[3 * i]), float(values[3 * i + 1]), values[3 * i + 2]
        if v not in (0, 1, 2):
            return None, f"keypoint {i} has visibility {v!r} (must be 0, 1 or 2)"
        if v != 2:
            out.append((0.0, 0.0, 0))
            continue
        if x < -tolerance_px or y < -tolerance_px or x > width + tolerance_px or y > height + tolerance_px:
            return None, f"keypoint {i} ({x:g}, {y:g}) lies outside the {width:g}x{height:g} image"
        out.append((min(1.0, max(0.0, x / width)), min(1.0, max(0.0, y / height)), 2))
    return tuple(out), None


def visible_count(keypoints: Sequence[Keypoint] | None) -> int:
    return 0 if keypoints is None else sum(1 for k in keypoints if k[2] == 2)


# --------------------------------------------------------------------------------------------
# parsing a COCO-format file


@dataclass
class _Image:
    id: Any
    width: int
    height: int
    file_name: str | None
    raw: Mapping[str, Any]


@dataclass
class _Ann:
    id: Any
    image_id: Any
    category_id: int
    box: Box
    area: float  # fraction of the image
    iscrowd: bool
    raw: Mapping[str, Any]


@dataclass
class CocoIndex:
    """A validated COCO-format file: images, categories and annotations with normalized boxes."""

    path: str
    images: dict[Any, _Image]
    categories: dict[int, Mapping[str, Any]]
    annotations: list[_Ann]
    problems: _Problems


def _section(data: Mapping[str, Any], key: str, path: str, what: str) -> list:
    if key not in data:
        raise InputError(f"missing the '{key}' list; is this a {what}?", path=path)
    value = data[key]
    if not isinstance(value, list):
        raise InputError(f"'{key}' must be a list, got {type(value).__name__}", path=path)
    return value


def index_coco(
    data: Any,
    path: str,
    *,
    what: str = "COCO instances file",
    tolerance_px: float = 1.0,
    on_invalid: OnInvalid = "error",
    image_file: Callable[[Mapping[str, Any]], str | None] | None = None,
) -> CocoIndex:
    """Validate a parsed COCO-format file; every problem names the file and the record."""
    if not isinstance(data, Mapping):
        raise InputError(f"expected a JSON object with 'images', 'annotations' and 'categories', got {type(data).__name__}", path=path)
    problems = _Problems(path, on_invalid)
    categories: dict[int, Mapping[str, Any]] = {}
    for i, cat in enumerate(_section(data, "categories", path, what)):
        rec = f"category {_shown_id(cat['id'])}" if isinstance(cat, Mapping) and "id" in cat else f"categories[{i}]"
        if not isinstance(cat, Mapping):
            raise InputError("a category must be an object", path=path, record=rec)
        for key in ("id", "name"):
            if key not in cat:
                raise InputError(f"missing field '{key}'", path=path, record=rec)
        if isinstance(cat["id"], bool) or not isinstance(cat["id"], int):
            raise InputError(f"category id must be an integer, got {cat['id']!r}", path=path, record=rec)
        if not isinstance(cat["name"], str) or not cat["name"].strip():
            raise InputError(f"category name must be a non-empty string, got {cat['name']!r}", path=path, record=rec)
        if cat["id"] in categories:
            raise InputError("duplicate category id", path=path, record=rec)
        categories[cat["id"]] = cat

    images: dict[Any, _Image] = {}
    for i, img in enumerate(_section(data, "images", path, what)):
        rec = f"image {_shown_id(img['id'])}" if isinstance(img, Mapping) and "id" in img else f"images[{i}]"
        if not isinstance(img, Mapping):
            raise InputError("an image must be an object", path=path, record=rec)
        for key in ("id", "width", "height"):
            if key not in img:
                raise InputError(f"missing field '{key}'", path=path, record=rec)
        iid = img["id"]
        if isinstance(iid, bool) or not isinstance(iid, (int, str)):
            raise InputError(f"image id must be an integer or a string, got {iid!r}", path=path, record=rec)
        w, h = img["width"], img["height"]
        if not (_is_number(w) and _is_number(h)) or w <= 0 or h <= 0:
            raise InputError(f"image size must be positive numbers, got width={w!r} height={h!r}", path=path, record=rec)
        if iid in images:
            raise InputError("duplicate image id", path=path, record=rec)
        fname = image_file(img) if image_file else img.get("file_name")
        images[iid] = _Image(iid, max(1, int(round(w))), max(1, int(round(h))), fname, img)

    anns: list[_Ann] = []
    seen_ids: set = set()
    for i, ann in enumerate(_section(data, "annotations", path, what)):
        rec = _ann_record(ann, i)
        if not isinstance(ann, Mapping):
            problems("an annotation must be an object", rec)
            continue
        missing = [k for k in ("id", "image_id", "category_id", "bbox") if k not in ann]
        if missing:
            problems(f"missing field(s) {', '.join(repr(k) for k in missing)}", rec)
            continue
        if not _is_id(ann["id"]):
            problems(f"annotation id must be an integer or a string, got {_shown_id(ann['id'])}", rec)
            continue
        if ann["id"] in seen_ids:
            raise InputError("duplicate annotation id", path=path, record=rec)
        seen_ids.add(ann["id"])
        img = images.get(ann["image_id"]) if _is_id(ann["image_id"]) else None
        if img is None:
            problems(f"image_id {ann['image_id']!r} is not in 'images'", rec)
            continue
        cid = ann["category_id"]
        if isinstance(cid, bool) or not isinstance(cid, int) or cid not in categories:
            problems(f"category_id {cid!r} is not in 'categories'", rec)
            continue
        crowd = ann.get("iscrowd", 0)
        if crowd not in (0, 1):
            problems(f"iscrowd must be 0 or 1, got {crowd!r}", rec)
            continue
        box, problem = bbox_to_box(ann["bbox"], img.raw["width"], img.raw["height"], tolerance_px=tolerance_px)
        if problem:
            problems(problem, rec)
            continue
        anns.append(_Ann(ann["id"], ann["image_id"], cid, box, area_xyxy(box), bool(crowd), ann))
    return CocoIndex(path, images, categories, anns, problems)


def read_captions(captions_path: str | os.PathLike) -> dict[Any, str]:
    """image id → the caption with the lowest annotation id (COCO ``captions_*.json``)."""
    path = str(captions_path)
    data = read_json(captions_path, "captions file")
    if not isinstance(data, Mapping):
        raise InputError(f"expected a JSON object with an 'annotations' list, got {type(data).__name__}", path=path)
    best: dict[Any, tuple[Any, str]] = {}
    for i, ann in enumerate(_section(data, "annotations", path, "COCO captions file")):
        rec = _ann_record(ann, i)
        if not isinstance(ann, Mapping):
            raise InputError("a caption annotation must be an object", path=path, record=rec)
        missing = [k for k in ("id", "image_id", "caption") if k not in ann]
        if missing:
            raise InputError(f"missing field(s) {', '.join(repr(k) for k in missing)}; is this a COCO captions file?", path=path, record=rec)
        if not isinstance(ann["caption"], str):
            raise InputError(f"caption must be a string, got {ann['caption']!r}", path=path, record=rec)
        cur = best.get(ann["image_id"])
        key = _sort_key(ann["id"])
        if cur is None or key < _sort_key(cur[0]):
            best[ann["image_id"]] = (ann["id"], ann["caption"])
    return {iid: " ".join(c.split()) for iid, (_, c) in best.items()}


def _sort_key(v: Any) -> tuple:
    return (isinstance(v, str), v)


def _images_dir(images_dir: str | os.PathLike | None) -> Path | None:
    if images_dir is None:
        return None
    p = Path(images_dir)
    if not p.is_dir():
        raise InputError("images_dir is not a folder", path=str(images_dir))
    return p


# --------------------------------------------------------------------------------------------
# building layouts


def build_layouts(
    index: CocoIndex,
    *,
    phrase_of: Callable[[Mapping[str, Any]], str],
    id_prefix: str,
    source: str,
    captions: Mapping[Any, str] | None,
    captions_path: str | None,
    max_objects: int | None,
    min_area: float,
    skip_crowd: bool,
    limit: int | None,
    seed: int,
    images_dir: Path | None,
    keypoints_of: Callable[[_Ann], tuple[tuple[Keypoint, ...] | None, bool]] | None = None,
    object_noun: str = "object",
) -> list[Layout]:
    """Group annotations per image, apply the selection rules and build the layouts.

    ``keypoints_of(ann) -> (keypoints, keep)`` attaches keypoints and can drop an annotation.
    """
    per_image: dict[Any, list[tuple[_Ann, tuple | None]]] = {}
    for ann in index.annotations:
        if skip_crowd and ann.iscrowd:
            continue
        if ann.area < min_area:
            continue
        kps = None
        if keypoints_of is not None:
            kps, keep = keypoints_of(ann)
            if not keep:
                continue
        per_image.setdefault(ann.image_id, []).append((ann, kps))
    index.problems.flush()

    truncated: list[tuple[Any, int]] = []
    selected: dict[str, tuple[_Image, list[tuple[_Ann, tuple | None]]]] = {}
    for iid, items in per_image.items():
        items.sort(key=lambda it: _sort_key(it[0].id))
        kept, cut = keep_largest(items, lambda it: it[0].box, max_objects)
        if cut:
            truncated.append((iid, len(items)))
        selected[f"{id_prefix}-{iid}"] = (index.images[iid], kept)
    if truncated:
        iid, n = truncated[0]
        warn(
            f"{index.path}: {count_note(len(truncated), 'image')} had more than {max_objects} {object_noun}s; "
            f"kept the {max_objects} largest boxes (e.g. image {iid}: {n} {object_noun}s)"
        )

    keep_ids = subsample_ids(list(selected), limit, seed)
    missing_caption = 0
    layouts = []
    for lid, (img, items) in sorted(selected.items(), key=lambda kv: _sort_key(kv[1][0].id)):
        if lid not in keep_ids:
            continue
        objects = []
        for ann, kps in items:
            cat = index.categories[ann.category_id]
            objects.append(GroundedObject(
                phrase=phrase_of(cat), box=ann.box, category=cat["name"], category_id=ann.category_id,
                keypoints=kps, source_id=str(ann.id),
            ))  # fmt: skip
        caption = captions.get(img.id) if captions is not None else None
        if caption is None or not caption.strip():
            if captions is not None:
                missing_caption += 1
            caption = caption_from_phrases([o.phrase for o in objects])
        image_path = str(images_dir / img.file_name) if images_dir is not None and img.file_name else None
        layouts.append(Layout(layout_id=lid, caption=caption, objects=tuple(objects), width=img.width,
                              height=img.height, image_path=image_path, source=source))
    if missing_caption:
        warn(f"{captions_path}: {count_note(missing_caption, 'image')} had no caption; used a caption built from the phrases")
    return layouts


def _keypoint_category_ids(index: CocoIndex) -> set[int]:
    return {cid for cid, c in index.categories.items() if isinstance(c.get("keypoints"), list)}


def read_keypoints(
    data: Any, path: str, *, tolerance_px: float = 1.0, on_invalid: OnInvalid = "error"
) -> tuple[CocoIndex, dict[Any, tuple[Keypoint, ...]]]:
    """Validate a ``person_keypoints_*.json`` and normalize its keypoints: annotation id → 17 points."""
    index = index_coco(data, path, what="COCO person_keypoints file", tolerance_px=tolerance_px, on_invalid=on_invalid)
    kp_cats = _keypoint_category_ids(index)
    if not kp_cats:
        raise InputError("no category has a 'keypoints' list; is this a COCO person_keypoints file?", path=path)
    keypoints: dict[Any, tuple[Keypoint, ...]] = {}
    valid = []
    for ann in index.annotations:
        if ann.category_id not in kp_cats:
            valid.append(ann)
            continue
        rec = f"annotation {ann.id}"
        if "keypoints" not in ann.raw:
            index.problems("missing field 'keypoints'", rec)
            continue
        img = index.images[ann.image_id]
        kps, problem = normalize_keypoints(ann.raw["keypoints"], img.raw["width"], img.raw["height"], tolerance_px=tolerance_px)
        if problem:
            index.problems(problem, rec)
            continue
        keypoints[ann.id] = kps
        valid.append(ann)
    index.annotations = valid
    return index, keypoints


# --------------------------------------------------------------------------------------------
# public loaders


def _category_phrase(cat: Mapping[str, Any]) -> str:
    return " ".join(str(cat["name"]).split())


def load_coco(
    instances_path: str | os.PathLike,
    captions_path: str | os.PathLike | None = None,
    *,
    max_objects: int | None = 30,
    min_area: float = 0.0,
    skip_crowd: bool = True,
    limit: int | None = None,
    seed: int = 0,
    images_dir: str | os.PathLike | None = None,
    keypoints_path: str | os.PathLike | None = None,
    tolerance_px: float = 1.0,
    on_invalid: OnInvalid = "error",
    id_prefix: str = "coco",
) -> list[Layout]:
    """Text+box layouts from a COCO ``instances_*.json`` (rules in the module docstring).

    ``keypoints_path``: a ``person_keypoints_*.json`` whose annotations share ids with the
    instances file (as COCO's do); matching person objects with at least one visible (v=2) point
    then carry their 17 keypoints (the visibility rule above applies).
    """
    check_selection_options(max_objects, min_area, limit, seed)
    path = str(instances_path)
    index = index_coco(read_json(instances_path, "COCO instances file"), path, tolerance_px=tolerance_px, on_invalid=on_invalid)
    captions = read_captions(captions_path) if captions_path is not None else None
    keypoints_of = None
    if keypoints_path is not None:
        kp_index, kps = read_keypoints(read_json(keypoints_path, "person_keypoints file"), str(keypoints_path),
                                       tolerance_px=tolerance_px, on_invalid=on_invalid)  # fmt: skip
        kp_index.problems.flush()
        kp_image = {a.id: a.image_id for a in kp_index.annotations}
        for ann in index.annotations:
            if ann.id in kp_image and kp_image[ann.id] != ann.image_id:
                raise InputError(f"is on image {kp_image[ann.id]!r} in {keypoints_path} but on image {ann.image_id!r} here",
                                 path=path, record=f"annotation {ann.id}")  # fmt: skip

        def keypoints_of(ann: _Ann):
            k = kps.get(ann.id)
            return (k if visible_count(k) > 0 else None), True

    return build_layouts(
        index, phrase_of=_category_phrase, id_prefix=id_prefix, source=id_prefix, captions=captions,
        captions_path=None if captions_path is None else str(captions_path), max_objects=max_objects,
        min_area=min_area, skip_crowd=skip_crowd, limit=limit, seed=seed, images_dir=_images_dir(images_dir),
        keypoints_of=keypoints_of,
    )  # fmt: skip


def load_coco_keypoints(
    person_keypoints_path: str | os.PathLike,
    captions_path: str | os.PathLike | None = None,
    *,
    max_persons: int = 8,
    min_keypoints: int = 1,
    min_area: float = 0.0,
    skip_crowd: bool = True,
    limit: int | None = None,
    seed: int = 0,
    images_dir: str | os.PathLike | None = None,
    tolerance_px: float = 1.0,
    on_invalid: OnInvalid = "error",
    id_prefix: str = "coco-kp",
) -> list[Layout]:
    """Keypoint layouts from a COCO ``person_keypoints_*.json``: persons only, each with 17 keypoints.

    Only visibility-2 points count (others become ``(0, 0, 0)``); persons with fewer than
    ``min_keypoints`` such points are dropped; persons are ordered by box area, largest first, and at
    most ``max_persons`` are kept (with a warning, as for boxes).
    """
    check_selection_options(max_persons, min_area, limit, seed)
    if isinstance(min_keypoints, bool) or not isinstance(min_keypoints, int) or not 0 <= min_keypoints <= NUM_KEYPOINTS:
        raise ConfigError(f"min_keypoints must be an integer in [0, {NUM_KEYPOINTS}], got {min_keypoints!r}")
    path = str(person_keypoints_path)
    index, kps = read_keypoints(read_json(person_keypoints_path, "person_keypoints file"), path,
                                tolerance_px=tolerance_px, on_invalid=on_invalid)  # fmt: skip
    kp_cats = _keypoint_category_ids(index)
    captions = read_captions(captions_path) if captions_path is not None else None

    def keypoints_of(ann: _Ann):
        if ann.category_id not in kp_cats:
            return None, False
        k = kps[ann.id]
        return k, visible_count(k) >= min_keypoints

    return build_layouts(
        index, phrase_of=_category_phrase, id_prefix=id_prefix, source=id_prefix, captions=captions,
        captions_path=None if captions_path is None else str(captions_path), max_objects=max_persons,
        min_area=min_area, skip_crowd=skip_crowd, limit=limit, seed=seed, images_dir=_images_dir(images_dir),
        keypoints_of=keypoints_of, object_noun="person",
    )  # fmt: skip
