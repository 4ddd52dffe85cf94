"""Extracting condition maps from images (the contract is in :mod:`gligen_eval.conditions`).

Models are built once per process and reference (a small cache), on ``extract_device``
(``auto``: CUDA when present, else CPU).
"""

from __future__ import annotations

import functools
import os
from typing import Any, Sequence

import numpy as np

from gligen_eval.conditions.options import check_modality, condition_options
from gligen_eval.devices import resolve_device
from gligen_eval.errors import InputError

_MODEL_KEY = {"hed": "hed_weights", "depth": "depth_model", "normal": "normal_model", "sem": "sem_model"}


def as_rgb(image: Any) -> np.ndarray:
    """A PIL image, a path or a uint8 array (``HxW``, ``HxWx3``, ``HxWx4``) → uint8 ``HxWx3`` RGB."""
    if isinstance(image, (str, os.PathLike)):
        from gligen_eval.imageio import pil_open

        try:
            with pil_open(image) as img:
                return np.asarray(img.convert("RGB")).copy()
        except Exception as e:
            raise InputError(f"cannot read image ({' '.join(str(e).split())})", path=os.fspath(image)) from None
    if hasattr(image, "convert") and hasattr(image, "size"):
        return np.asarray(image.convert("RGB")).copy()
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ValueError(f"images to extract from are uint8 arrays or PIL images, got dtype {a.dtype}")
    if a.ndim == 2:
        return np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim == 3 and a.shape[2] in (3, 4):
        return np.ascontiguousarray(a[:, :, :3])
    raise ValueError(f"images to extract from are HxW or HxWx3 arrays, got shape {a.shape}")


def canny(rgb: np.ndarray, low: float, high: float) -> np.ndarray:
    """``cv2.Canny`` of the gray image, as the training maps were made: uint8 0/255 ``HxW``."""
    import cv2

    return cv2.Canny(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), low, high)


@functools.lru_cache(maxsize=4)
def extractor_model(modality: str, ref: str | None) -> Any:
    """The model of ``modality`` named by ``ref`` (built once per process)."""
    if modality == "hed":
        from gligen_eval.conditions.hed import load_hed

        return load_hed(ref)
    from gligen_eval.conditions import estimators

    loader = {"depth": estimators.load_depth, "normal": estimators.load_normals, "sem": estimators.load_segmenter}[modality]
    return loader(ref)


def extract_conditions(images: Sequence[Any], modality: str, **options: Any) -> list[np.ndarray]:
    """See :func:`gligen_eval.conditions.extract_conditions`."""
    check_modality(modality)
    opts = condition_options(options)
    rgbs = [as_rgb(im) for im in images]
    if modality == "canny":
        return [canny(rgb, opts["canny_low"], opts["canny_high"]) for rgb in rgbs]
    model = extractor_model(modality, opts[_MODEL_KEY[modality]])
    if not rgbs:
        return []
    device = resolve_device(opts["extract_device"])
    if modality == "hed":
        from gligen_eval.conditions.hed import hed_edges

        return hed_edges(model, rgbs, device)
    from gligen_eval.conditions import estimators

    run = {"depth": estimators.estimate_depth, "normal": estimators.estimate_normals, "sem": estimators.segment_ade20k}[modality]
    return run(model, rgbs, device)
