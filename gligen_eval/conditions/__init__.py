"""Condition maps of the spatial modalities (hed, canny, depth, normal, sem).

A spatial GLIGEN model grounds on one whole-image map per layout. This package says where that
map comes from (a given file per layout, or extracted from the layout's real image) and how it is
preprocessed into what the official model takes. The same extractors re-extract the condition from
generated images for the condition-consistency scores.

Public functions:

``load_condition(layout, modality, *, size, **options) -> np.ndarray``
    The model input of one layout (see its docstring); ``options`` are :data:`CONDITION_OPTIONS`.
``condition_image(layout, modality, *, size, **options) -> np.ndarray``
    The same map as uint8 at ``size`` × ``size`` before the ``[-1, 1]`` scaling, in the layout of
    :func:`extract_condition`'s output (``HxW``; normal ``HxWx3``; hed/canny/depth: the channel the
    downsampler reads, 0): what a re-extracted map of a generated image is compared with, and what
    a gallery shows.
``extract_condition(image, modality, **options) -> np.ndarray``
    The map of one image (PIL image, ``HxWx3`` uint8 RGB array or a path) in the training
    convention, as a uint8 array at the image's own size:

    ========  =========  =====================================================================
    canny     ``HxW``    ``cv2.Canny(gray, canny_low, canny_high)``: 0 or 255
    hed       ``HxW``    soft edges of a HED network (``hed_weights``), 0..255
    depth     ``HxW``    relative depth of a transformers model (``depth_model``), near = bright,
                         min-max normalized per image to 0..255
    normal    ``HxWx3``  surface normals of a Marigold pipeline (``normal_model``), ``(n*0.5+0.5)*255``
    sem       ``HxW``    ADE20K labels of a transformers segmenter (``sem_model``): 0 other, 1..150
    ========  =========  =====================================================================

    Options it does not use (``map``, ``map_dir``, other modalities' models) are accepted and
    ignored, so a caller can pass the whole ``grounding`` options; other names are an error.
``extract_conditions(images, modality, **options) -> list[np.ndarray]``
    The same for a list of images (one model load, batched forward passes). An empty list only
    builds the model (kept for later calls): a cheap check that the weights are there.

Model references (``hed_weights``, ``depth_model``, ``normal_model``, ``sem_model``) are files or
folders on disk or hub ids already in the local Hugging Face cache (never downloaded); ``tiny``
builds a small seeded random model in code for tests. A missing one is a one-line
:class:`~gligen_eval.errors.MissingWeightsError` naming what to fetch.

This module imports neither torch nor PIL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from gligen_eval.records import Layout

SPATIAL_MODALITIES: tuple[str, ...] = ("hed", "canny", "depth", "normal", "sem")

MAP_SOURCES: tuple[str, ...] = ("auto", "given", "extract", "synthetic")
"""Values of the ``map`` option: ``given`` (a file: ``map_dir`` entry or the layout's ``condition_map``),
``extract`` (from the layout's real image), ``synthetic`` (drawn from the boxes; offline smoke runs only),
``auto`` (given if there is one, else extracted if the layout has a real image, else drawn for the
bundled sample's layouts, which have no photos)."""

CONDITION_OPTIONS: tuple[str, ...] = (
    "map", "map_dir", "canny_low", "canny_high", "hed_weights", "depth_model", "normal_model", "sem_model",
    "extract_device",
)
"""Names of the ``grounding`` config keys that choose and extract the maps (all plain values)."""

CONDITION_DEFAULTS: dict[str, Any] = {
    "map": "auto",
    "map_dir": None,
    "canny_low": 100,
    "canny_high": 200,
    "hed_weights": None,
    "depth_model": "Intel/dpt-hybrid-midas",
    "normal_model": "prs-eth/marigold-normals-v1-1",
    "sem_model": "openmmlab/upernet-convnext-small",
    "extract_device": "auto",
}
"""The default of each :data:`CONDITION_OPTIONS` entry (canny 100/200 as in training; MiDaS depth as in
training; ``hed_weights`` has no default because no HED file is on the hub under a stable name)."""


def load_condition(layout: "Layout", modality: str, *, size: int, **options: Any) -> "np.ndarray":
    """The condition map of ``layout`` as the official model takes it, at ``size`` × ``size``.

    hed/canny/depth/normal: float32 ``(3, size, size)`` in [-1, 1] (center crop, bicubic resize,
    ``(x / 255 - 0.5) / 0.5``); sem: int64 ``(size, size)`` ADE20K labels (0 = other; NEAREST).
    ``options`` are the :data:`CONDITION_OPTIONS` of the run's ``grounding`` config.
    """
    from gligen_eval.conditions.maps import load_condition as _load

    return _load(layout, modality, size=size, **options)


def condition_image(layout: "Layout", modality: str, *, size: int, **options: Any) -> "np.ndarray":
    """:func:`load_condition`'s map as uint8 (``HxW``, normal ``HxWx3``; sem: labels) before the [-1, 1] scaling."""
    from gligen_eval.conditions.maps import condition_image as _image

    return _image(layout, modality, size=size, **options)


def extract_condition(image: Any, modality: str, **options: Any) -> "np.ndarray":
    """The ``modality`` map of one image as uint8 in the training convention (module docstring)."""
    from gligen_eval.conditions.extract import extract_conditions as _extract

    return _extract([image], modality, **options)[0]


def extract_conditions(images: Sequence[Any], modality: str, **options: Any) -> list["np.ndarray"]:
    """:func:`extract_condition` for several images, loading the model once."""
    from gligen_eval.conditions.extract import extract_conditions as _extract

    return _extract(images, modality, **options)


__all__ = [
    "CONDITION_DEFAULTS",
    "CONDITION_OPTIONS",
    "MAP_SOURCES",
    "SPATIAL_MODALITIES",
    "condition_image",
    "extract_condition",
    "extract_conditions",
    "load_condition",
]
