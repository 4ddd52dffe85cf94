"""The COCO vocabulary: evaluation kinds and backends, metric keys, keypoint constants and the
80 detection classes with their other spellings (:func:`canonical_category`)."""

from __future__ import annotations

import numbers
from typing import Any, Literal, Mapping, Sequence

from gligen_eval.errors import ConfigError

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
