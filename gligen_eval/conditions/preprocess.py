"""The official inference preprocessing of a condition map (uint8 image → model input).

Center crop to the shorter side (the crop offset rounded as torchvision's ``center_crop`` does),
resize to ``size`` × ``size`` (bicubic; sem NEAREST of the one-channel label image), then
``(x / 255 - 0.5) / 0.5`` for the image-like maps. Sem labels stay integers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_SEM_LABEL = 151
"""The sem position net takes a 152-channel one-hot: labels 0 (other) .. 150 (ADE20K), 151 spare."""


def center_crop(image: Any) -> Any:
    """The centered square of a PIL image, side = its shorter side."""
    w, h = image.size
    side = min(w, h)
    left = int(round((w - side) / 2.0))
    top = int(round((h - side) / 2.0))
    return image.crop((left, top, left + side, top + side))


def map_to_rgb(image: Any, size: int) -> np.ndarray:
    """A map image (any mode) read as RGB, center-cropped and resized (bicubic): uint8 ``(size, size, 3)``."""
    from PIL import Image

    return np.asarray(center_crop(image.convert("RGB")).resize((size, size), Image.BICUBIC))


def map_to_input(image: Any, size: int) -> np.ndarray:
    """A map image (any mode) → float32 ``(3, size, size)`` in [-1, 1], as the official code reads it (RGB)."""
    x = map_to_rgb(image, size).astype(np.float32).transpose(2, 0, 1)
    return np.ascontiguousarray((x / 255.0 - 0.5) / 0.5)


def labels_to_input(image: Any, size: int) -> np.ndarray:
    """A one-channel label image → int64 ``(size, size)`` labels (NEAREST, so no label is invented)."""
    from PIL import Image

    img = center_crop(image.convert("L")).resize((size, size), Image.NEAREST)
    return np.asarray(img, dtype=np.int64).copy()


def array_to_image(arr: np.ndarray) -> Any:
    """A uint8 ``HxW`` or ``HxWx3`` map → a PIL image (``L`` or ``RGB``)."""
    from PIL import Image

    a = np.asarray(arr)
    if a.dtype != np.uint8:
        raise ValueError(f"condition maps are uint8, got {a.dtype}")
    if a.ndim == 2:
        return Image.fromarray(a)
    if a.ndim == 3 and a.shape[2] == 3:
        return Image.fromarray(a)
    raise ValueError(f"condition maps are HxW or HxWx3, got shape {a.shape}")
