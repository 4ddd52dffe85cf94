"""Grounding modalities: where each one lives and its official defaults.

=========================  ==========================================  =====================================
modality                   grounding tokenizer                         model (UNet)
=========================  ==========================================  =====================================
``text-box``               :class:`~..grounding.TextBoxTokenizer`      ``attention_type="gated"``
``text-image-box``         :class:`.text_image.TextImageBoxTokenizer`  ``"gated-text-image"`` + CLIP vision
``keypoint``               :class:`.keypoint.KeypointTokenizer`        ``"gated"`` + ``KeypointPositionNet``
``inpaint-text-box``       :class:`.inpaint.InpaintTextBoxTokenizer`   ``"gated"``, 9 input channels
``inpaint-text-image-box`` :class:`.inpaint.InpaintTextImageBoxTokenizer`  ``"gated-text-image"``, 9 channels
``hed`` ``canny`` ...      :class:`.spatial.SpatialMapTokenizer`       not yet supported (raises)
=========================  ==========================================  =====================================

The registry (name -> ``"module:Class"``, imported on first use) is in
:mod:`gligen_eval.generation.grounding`; :func:`~gligen_eval.generation.grounding.detect_modality`
tells the modality of loaded components from the UNet (position net type, input channels).

This module imports neither torch nor PIL: the defaults below are cheap to read.
"""

from __future__ import annotations

from gligen_eval.errors import ConfigError

MODALITY_NAMES = ("text-box", "text-image-box", "keypoint", "inpaint-text-box", "inpaint-text-image-box")
"""Modalities the sampler runs."""
SPATIAL_MODALITIES = ("hed", "canny", "depth", "normal", "sem")
"""Released spatial-map modalities, recognised but not yet supported."""

_DEFAULT_ALPHA: dict[str, tuple[float, float, float]] = {
    "text-box": (0.3, 0.0, 0.7),
    "text-image-box": (1.0, 0.0, 0.0),
    "keypoint": (0.3, 0.0, 0.7),
    "inpaint-text-box": (1.0, 0.0, 0.0),
    "inpaint-text-image-box": (1.0, 0.0, 0.0),
    "hed": (0.9, 0.0, 0.1),
    "canny": (0.9, 0.0, 0.1),
    "depth": (0.7, 0.0, 0.3),
    "normal": (0.7, 0.0, 0.3),
    "sem": (0.7, 0.0, 0.3),
}
_FORCED_SCALE: dict[str, float] = {"inpaint-text-box": 1.0, "inpaint-text-image-box": 1.0}


def _check(modality: str) -> None:
    if modality not in _DEFAULT_ALPHA:
        raise ConfigError(f"unknown modality {modality!r} (known: {', '.join(_DEFAULT_ALPHA)})")


def default_alpha(modality: str) -> list[float]:
    """The official scheduled-sampling ``alpha_type = [p1, p2, p3]`` of ``modality``.

    box and keypoint ``[0.3, 0, 0.7]``; image ``[1, 0, 0]``; hed/canny ``[0.9, 0, 0.1]``;
    depth/normal/sem ``[0.7, 0, 0.3]``. Inpainting runs at scale 1 at every step
    (:func:`forced_scale`), which is ``[1, 0, 0]``.
    """
    _check(modality)
    return list(_DEFAULT_ALPHA[modality])


def forced_scale(modality: str) -> float | None:
    """The grounding scale a modality always uses whatever the schedule says (inpainting: 1), else None."""
    _check(modality)
    return _FORCED_SCALE.get(modality)


def is_inpainting(modality: str) -> bool:
    return modality.startswith("inpaint-")
