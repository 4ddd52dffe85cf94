"""Frozen records that flow through a run.

Boxes are normalized xyxy (see :mod:`gligen_eval.boxes`). Every record validates itself at
construction and names the offending field when it is wrong. Records round-trip through plain
JSON (``to_dict`` / ``from_dict``) so that every number in a run traces back to a layout id,
a seed and an image file.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Iterable, Mapping, Sequence

from gligen_eval.boxes import Box, validate_xyxy_norm

NUM_KEYPOINTS = 17
COCO_KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip

RELATIONS = ("left", "right", "above", "below")
FREQUENCY_GROUPS = ("r", "c", "f")
"""LVIS frequency groups of a category: rare, common, frequent (the basis of APr/APc/APf)."""
"""Spatial relations a layout can state between two of its objects (image coordinates, y down)."""

Keypoint = tuple[float, float, int]  # normalized x, y and COCO visibility (0 absent, 1 occluded, 2 visible)


def _canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hex digest of the canonical JSON of ``obj`` (stable across runs, machines and Python versions)."""
    return hashlib.sha256(_canonical_json(obj).encode("utf-8")).hexdigest()[:length]


def _as_box(value: Sequence[float], where: str) -> Box:
    problem = validate_xyxy_norm(value)
    if problem:
        raise ValueError(f"{where}: {problem}")
    x0, y0, x1, y1 = (min(1.0, max(0.0, float(v))) for v in value)
    return (x0, y0, x1, y1)


def _check_fields(cls: type, d: Mapping[str, Any]) -> None:
    unknown = set(d) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}")


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _keypoint(kp: Any, i: int) -> tuple[float, float, int]:
    """``(x, y, v)`` of keypoint ``i``: finite coordinates and an integral visibility, else a ValueError."""
    where = f"GroundedObject.keypoints[{i}]"
    if isinstance(kp, (str, bytes, Mapping)) or not isinstance(kp, Sequence) or len(kp) != 3:
        raise ValueError(f"{where} must be (x, y, v), got {_short(kp)}")
    if any(isinstance(c, (bool, str, bytes)) for c in kp):
        raise ValueError(f"{where} must be numbers, got {_short(kp)}")
    try:
        x, y, v = float(kp[0]), float(kp[1]), float(kp[2])
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{where} must be numbers, got {_short(kp)}") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"{where} coordinates must be finite, got {_short(kp)}")
    if v not in (0.0, 1.0, 2.0):
        raise ValueError(f"{where} visibility must be 0, 1 or 2, got {_short(kp[2])}")
    return x, y, int(v)


@dataclass(frozen=True)
class GroundedObject:
    """One grounding entity: a phrase (and/or reference image) with its box.

    ``keypoints`` holds 17 COCO keypoints ``(x, y, v)`` in normalized image coordinates when the
    object is a person used for keypoint grounding. ``frequency`` is the LVIS frequency group of
    the object's category (one of :data:`FREQUENCY_GROUPS`), for LVIS-style scoring only.
    """

    phrase: str
    box: Box
    category: str | None = None
    category_id: int | None = None
    keypoints: tuple[Keypoint, ...] | None = None
    reference_image: str | None = None
    source_id: str | None = None
    frequency: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.phrase, str):
            raise ValueError(f"GroundedObject.phrase must be a string, got {type(self.phrase).__name__}")
        if not self.phrase.strip() and self.reference_image is None:
            raise ValueError("GroundedObject.phrase is empty (and there is no reference_image)")
        object.__setattr__(self, "box", _as_box(self.box, "GroundedObject.box"))
        if self.category_id is not None and (isinstance(self.category_id, bool) or not isinstance(self.category_id, int)):
            raise ValueError(f"GroundedObject.category_id must be an int, got {_short(self.category_id)}")
        for name in ("category", "reference_image"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise ValueError(f"GroundedObject.{name} must be a string, got {_short(getattr(self, name))}")
        if self.keypoints is not None:
            if isinstance(self.keypoints, (str, bytes, Mapping)) or not isinstance(self.keypoints, Sequence):
                raise ValueError(f"GroundedObject.keypoints must be {NUM_KEYPOINTS} (x, y, v), got {_short(self.keypoints)}")
            kps = tuple(self.keypoints)
            if len(kps) != NUM_KEYPOINTS:
                raise ValueError(f"GroundedObject.keypoints must have {NUM_KEYPOINTS} points, got {len(kps)}")
            norm = []
            for i, kp in enumerate(kps):
                x, y, v = _keypoint(kp, i)
                if v not in (0, 1, 2):
                    raise ValueError(f"GroundedObject.keypoints[{i}] visibility must be 0, 1 or 2, got {_short(kp[2])}")
                if v > 0 and not (-1e-6 <= x <= 1 + 1e-6 and -1e-6 <= y <= 1 + 1e-6):
                    raise ValueError(f"GroundedObject.keypoints[{i}] ({x}, {y}) lies outside the image")
                norm.append((x, y, v))
            object.__setattr__(self, "keypoints", tuple(norm))
        if self.source_id is not None:
            object.__setattr__(self, "source_id", str(self.source_id))
        if self.frequency is not None and self.frequency not in FREQUENCY_GROUPS:
            raise ValueError(f"GroundedObject.frequency must be one of {list(FREQUENCY_GROUPS)}, "
                             f"got {_short(self.frequency)}")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["box"] = list(self.box)
        if self.keypoints is not None:
            d["keypoints"] = [list(k) for k in self.keypoints]
        return {k: v for k, v in d.items() if v is not None}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "GroundedObject":
        _check_fields(cls, d)
        kw = dict(d)
        kw["box"] = tuple(kw["box"]) if isinstance(kw.get("box"), list) else kw.get("box")
        if isinstance(kw.get("keypoints"), list):
            kw["keypoints"] = tuple(tuple(k) if isinstance(k, list) else k for k in kw["keypoints"])
        return cls(**kw)


@dataclass(frozen=True)
class Layout:
    """A caption with grounded objects; the unit that is generated and scored.

    ``width``/``height`` are the size of the source image the layout came from (if any);
    ``image_path`` points at that real image (used for the real-image ceiling);
    ``condition_map`` at a given spatial condition map (hed/canny/depth/normal/sem models).
    ``relations`` holds the spatial relations the source states, ``(subject index, relation,
    object index)`` with relation one of :data:`RELATIONS` (``(0, "left", 1)``: object 0 is left of
    object 1); scoring only, so not part of :meth:`content_hash`.

    What scoring needs from the source travels with the layout, so that scoring never reopens it
    (none of it is part of :meth:`content_hash`): ``neg_category_ids`` and
    ``not_exhaustive_category_ids`` (set together, possibly empty) are the LVIS category ids verified
    absent from the source image and those not exhaustively annotated; a layout that has them is
    scored LVIS-style (:attr:`lvis_style`, with its objects' ``category``, ``category_id`` and
    ``frequency`` as the category table). ``source_dir`` is the folder the relative reference images
    are resolved against; it says where the layout was read from, not what it is, so it is not
    compared either.
    """

    layout_id: str
    caption: str
    objects: tuple[GroundedObject, ...]
    width: int | None = None
    height: int | None = None
    image_path: str | None = None
    source: str | None = None
    condition_map: str | None = None
    relations: tuple[tuple[int, str, int], ...] = ()
    neg_category_ids: tuple[int, ...] | None = None
    not_exhaustive_category_ids: tuple[int, ...] | None = None
    source_dir: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.layout_id, str) or not self.layout_id:
            raise ValueError(f"Layout.layout_id must be a non-empty string, got {_short(self.layout_id)}")
        lid = _short(self.layout_id)
        if not isinstance(self.caption, str):
            raise ValueError(f"Layout.caption must be a string (layout {lid})")
        objs = tuple(self.objects)
        for i, o in enumerate(objs):
            if not isinstance(o, GroundedObject):
                raise ValueError(f"Layout.objects[{i}] must be a GroundedObject (layout {lid})")
        object.__setattr__(self, "objects", objs)
        if self.condition_map is not None and not isinstance(self.condition_map, str):
            raise ValueError(f"Layout.condition_map must be a path string, got {self.condition_map!r} (layout {self.layout_id})")
        for name in ("width", "height"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
                raise ValueError(f"Layout.{name} must be a positive int, got {_short(v)} (layout {lid})")
        for name in ("image_path", "source", "source_dir"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise ValueError(f"Layout.{name} must be a string, got {_short(getattr(self, name))} (layout {lid})")
        rels = []
        for r in self.relations:
            if len(r) != 3 or r[1] not in RELATIONS or not all(isinstance(i, int) and 0 <= i < len(objs) for i in (r[0], r[2])) \
                    or r[0] == r[2]:  # fmt: skip
                raise ValueError(f"Layout.relations: {r!r} must be (subject index, one of {list(RELATIONS)}, another "
                                 f"object index) (layout {lid})")  # fmt: skip
            rels.append((int(r[0]), str(r[1]), int(r[2])))
        object.__setattr__(self, "relations", tuple(rels))
        self._check_lvis_ids(lid)

    def _check_lvis_ids(self, lid: str) -> None:
        given = [name for name in _LVIS_ID_FIELDS if getattr(self, name) is not None]
        if given and len(given) != len(_LVIS_ID_FIELDS):
            raise ValueError(f"Layout.{given[0]} needs {' and '.join(n for n in _LVIS_ID_FIELDS if n not in given)} "
                             f"too (LVIS-style scoring; give an empty list for none) (layout {lid})")  # fmt: skip
        for name in given:
            ids = getattr(self, name)
            if isinstance(ids, (str, bytes, Mapping)) or not isinstance(ids, Iterable) or \
                    not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):  # fmt: skip
                raise ValueError(f"Layout.{name} must be a list of category ids, got {_short(ids)} (layout {lid})")
            object.__setattr__(self, name, tuple(int(i) for i in ids))

    @property
    def lvis_style(self) -> bool:
        """Whether the layout's box AP is LVIS-style (it carries the LVIS negative / not-exhaustive ids)."""
        return self.neg_category_ids is not None

    def keep_objects(self, keep: Iterable[int]) -> "Layout":
        """This layout with only the objects at the indices ``keep`` (in their order); its stated
        relations follow their objects, and a relation that loses one of them is dropped."""
        import dataclasses

        index = {old: new for new, old in enumerate(keep)}
        objects = tuple(self.objects[i] for i in index)
        relations = tuple((index[a], r, index[b]) for a, r, b in self.relations if a in index and b in index)
        return dataclasses.replace(self, objects=objects, relations=relations)

    @property
    def phrases(self) -> list[str]:
        return [o.phrase for o in self.objects]

    @property
    def boxes(self) -> list[Box]:
        return [o.box for o in self.objects]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"layout_id": self.layout_id, "caption": self.caption,
                             "objects": [o.to_dict() for o in self.objects]}
        for k in ("width", "height", "image_path", "source", "condition_map"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        if self.relations:
            d["relations"] = [list(r) for r in self.relations]
        for k in _LVIS_ID_FIELDS:
            if getattr(self, k) is not None:
                d[k] = list(getattr(self, k))
        if self.source_dir is not None:
            d["source_dir"] = self.source_dir
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Layout":
        _check_fields(cls, d)
        kw = dict(d)
        kw["objects"] = tuple(GroundedObject.from_dict(o) for o in d.get("objects", ()))
        kw["relations"] = tuple(tuple(r) for r in d.get("relations", ()))
        return cls(**kw)

    def content_hash(self) -> str:
        """Hash of what the generator sees (caption, phrases, boxes, keypoints, reference images)."""
        d = self.to_dict()
        for k in ("image_path", "source", "relations", "source_dir", *_LVIS_ID_FIELDS):
            d.pop(k, None)
        for o in d["objects"]:
            o.pop("frequency", None)
        return stable_hash(d)


_LVIS_ID_FIELDS = ("neg_category_ids", "not_exhaustive_category_ids")


@dataclass(frozen=True)
class Detection:
    """One detector output on a generated image; ``box`` is normalized xyxy."""

    box: Box
    label: str
    score: float
    category_id: int | None = None
    keypoints: tuple[Keypoint, ...] | None = None  # pose models: 17 (x, y, v) normalized; v is a confidence-based flag

    def __post_init__(self) -> None:
        object.__setattr__(self, "box", tuple(float(v) for v in self.box))
        if len(self.box) != 4:
            raise ValueError(f"Detection.box must have 4 numbers, got {self.box!r}")
        s = float(self.score)
        if math.isnan(s):
            raise ValueError("Detection.score is NaN")
        object.__setattr__(self, "score", s)

    def to_dict(self) -> dict[str, Any]:
        d = {"box": list(self.box), "label": self.label, "score": self.score}
        if self.category_id is not None:
            d["category_id"] = self.category_id
        if self.keypoints is not None:
            d["keypoints"] = [list(k) for k in self.keypoints]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Detection":
        kw = dict(d)
        kw["box"] = tuple(kw["box"])
        if kw.get("keypoints") is not None:
            kw["keypoints"] = tuple(tuple(k) for k in kw["keypoints"])
        return cls(**kw)


@dataclass(frozen=True)
class SampleRecord:
    """One generated image: which layout, which seed, which settings, where the file is."""

    sample_key: str
    layout_id: str
    seed: int
    image: str  # path relative to the run directory
    width: int
    height: int
    layout_hash: str
    settings_hash: str
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["extra"] = dict(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SampleRecord":
        return cls(**dict(d))


@dataclass(frozen=True)
class InstanceRecord:
    """How one grounded object fared on one generated image."""

    sample_key: str
    layout_id: str
    seed: int
    object_index: int
    phrase: str
    category: str | None
    box: Box
    best_iou: float
    hit: bool
    reason: str
    matched_box: Box | None = None
    matched_score: float | None = None
    error_type: str | None = None
    """``hit``, ``loc``, ``cls``, ``both`` or ``missed`` (see :mod:`gligen_eval.scoring.instances`);
    None in rows written before the field existed."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["box"] = list(self.box)
        if self.matched_box is not None:
            d["matched_box"] = list(self.matched_box)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "InstanceRecord":
        kw = dict(d)
        kw["box"] = tuple(kw["box"])
        if kw.get("matched_box") is not None:
            kw["matched_box"] = tuple(kw["matched_box"])
        return cls(**kw)
