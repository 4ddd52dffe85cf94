"""Condition maps drawn from a layout's boxes, for layouts without photos (the bundled sample).

They let the spatial smoke configs run offline everywhere; they are stand-ins in the training
convention of each modality, not what an extractor would make of a real scene:

* canny: the box outlines (1 px, 255 on 0); hed: the outlines, blurred (soft edges);
* depth: a floor that comes nearer (brighter) towards the bottom, each box a flat slab whose
  brightness grows with its bottom edge (lower in the image = nearer);
* normal: the background faces the camera, ``(0, 0, 1)``; each box is a roof-like pair of
  faces tilted left and right, ``(n * 0.5 + 0.5) * 255``;
* sem: each box filled with the ADE20K label of its category (0 "other" when there is none).

Boxes are drawn largest first, so smaller ones stay visible on top. The size is the layout's
``width`` × ``height`` (512 × 512 when unknown), so the usual preprocessing (center crop, resize)
applies as to any given map.
"""

from __future__ import annotations

import numpy as np

from gligen_eval.conditions.ade20k import COCO_TO_ADE20K, ade20k_label
from gligen_eval.conditions.options import check_modality
from gligen_eval.records import Layout


def _pixel_boxes(layout: Layout, w: int, h: int) -> list[tuple[int, int, int, int, object]]:
    out = []
    for o in sorted(layout.objects, key=lambda o: -(o.box[2] - o.box[0]) * (o.box[3] - o.box[1])):
        x0, y0 = int(round(o.box[0] * (w - 1))), int(round(o.box[1] * (h - 1)))
        x1, y1 = int(round(o.box[2] * (w - 1))), int(round(o.box[3] * (h - 1)))
        out.append((x0, y0, max(x1, x0), max(y1, y0), o))
    return out


def _outline(w: int, h: int, boxes: list, thickness: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=np.uint8)
    t = thickness
    for x0, y0, x1, y1, _ in boxes:
        m[y0 : y0 + t, x0 : x1 + 1] = 255
        m[max(y1 - t + 1, 0) : y1 + 1, x0 : x1 + 1] = 255
        m[y0 : y1 + 1, x0 : x0 + t] = 255
        m[y0 : y1 + 1, max(x1 - t + 1, 0) : x1 + 1] = 255
    return m


def _normal_rgb(n: tuple[float, float, float]) -> np.ndarray:
    v = np.asarray(n, dtype=np.float64)
    v = v / np.linalg.norm(v)
    return np.clip(np.round((v * 0.5 + 0.5) * 255), 0, 255).astype(np.uint8)


def draw_condition(layout: Layout, modality: str) -> np.ndarray:
    """The drawn ``modality`` map of ``layout`` (uint8 ``HxW``, normal ``HxWx3``; module docstring)."""
    check_modality(modality)
    w, h = layout.width or 512, layout.height or 512
    boxes = _pixel_boxes(layout, w, h)
    if modality == "canny":
        return _outline(w, h, boxes, 1)
    if modality == "hed":
        from PIL import Image, ImageFilter

        soft = Image.fromarray(_outline(w, h, boxes, max(2, min(w, h) // 128)))
        a = np.asarray(soft.filter(ImageFilter.GaussianBlur(radius=max(1.0, min(w, h) / 256))), dtype=np.float32)
        return np.round(a * (255.0 / max(float(a.max()), 1.0))).astype(np.uint8)
    if modality == "depth":
        m = np.repeat(np.linspace(40, 140, h, dtype=np.float32)[:, None], w, axis=1)
        for x0, y0, x1, y1, _ in boxes:
            m[y0 : y1 + 1, x0 : x1 + 1] = 120 + 135 * (y1 / max(h - 1, 1))
        return np.clip(np.round(m), 0, 255).astype(np.uint8)
    if modality == "normal":
        m = np.empty((h, w, 3), dtype=np.uint8)
        m[:] = _normal_rgb((0.0, 0.0, 1.0))
        left, right = _normal_rgb((-0.4, 0.0, 0.9)), _normal_rgb((0.4, 0.0, 0.9))
        for x0, y0, x1, y1, _ in boxes:
            mid = (x0 + x1 + 1) // 2
            m[y0 : y1 + 1, x0:mid] = left
            m[y0 : y1 + 1, mid : x1 + 1] = right
        return m
    m = np.zeros((h, w), dtype=np.uint8)
    for x0, y0, x1, y1, o in boxes:
        name = o.category or o.phrase
        m[y0 : y1 + 1, x0 : x1 + 1] = ade20k_label(COCO_TO_ADE20K.get(name, name))
    return m
