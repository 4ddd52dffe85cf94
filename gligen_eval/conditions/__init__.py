"""Condition maps of the spatial modalities (hed, canny, depth, normal, sem).

A spatial GLIGEN model grounds on one whole-image map per layout. This package says where that
map comes from (a given file per layout, or extracted from the layout's real image) and how it is
preprocessed into what the official model takes. The same extractors re-extract the condition from
generated images for the condition-consistency scores.

This module imports neither torch nor PIL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from gligen_eval.records import Layout

CONDITION_OPTIONS: tuple[str, ...] = (
    "map", "map_dir", "canny_low", "canny_high", "hed_weights", "depth_model", "normal_model", "sem_model",
)
"""Names of the ``grounding`` config keys that choose and extract the maps (all plain values)."""


def load_condition(layout: "Layout", modality: str, *, size: int, **options: Any) -> "np.ndarray":
    """The condition map of ``layout`` as the official model takes it, at ``size`` × ``size``.

    hed/canny/depth/normal: float32 ``(3, size, size)`` in [-1, 1] (center crop, bicubic resize,
    ``(x / 255 - 0.5) / 0.5``); sem: int64 ``(size, size)`` ADE20K labels (0 = other; NEAREST).
    ``options`` are the :data:`CONDITION_OPTIONS` of the run's ``grounding`` config.
    """
    raise NotImplementedError("condition maps are not implemented yet")
