"""Spatial-map grounding (HED, canny, depth, normal, semantic maps): a reserved place, not yet supported.

The released spatial checkpoints (``gligen-generation-{hed,canny,depth,normal,sem}``) ground on a
whole-image condition map through a ConvNeXt position net and extra input channels (HED 5, others
12 through a downsampler). Their base and fuser weights are already understood by
:mod:`gligen_eval.generation.checkpoints`; the position net and the map preprocessing are not.
Asking for one of these modalities raises a :class:`~gligen_eval.errors.GligenEvalError` that says so.

To add one: implement ``prepare`` (the map per layout -> the position net's keyword arguments, plus
``extra_channels`` for the downsampled map) in a subclass of
:class:`~gligen_eval.generation.grounding.GroundingTokenizer` and point its registry entry in
:mod:`gligen_eval.generation.grounding` at it.
"""

from __future__ import annotations

from typing import Any

from gligen_eval.errors import GligenEvalError
from gligen_eval.generation.grounding import GroundingTokenizer


class SpatialMapTokenizer(GroundingTokenizer):
    """Placeholder of the spatial-map modalities: constructing it raises a clear error."""

    modality = "spatial"
    in_channels = None

    def __init__(self, **options: Any):
        raise GligenEvalError(
            f"grounding modality '{self.modality}' (spatial condition maps) is not yet supported; "
            "supported: text-box, text-image-box, keypoint, inpaint-text-box, inpaint-text-image-box"
        )


class HedTokenizer(SpatialMapTokenizer):
    modality = "hed"


class CannyTokenizer(SpatialMapTokenizer):
    modality = "canny"


class DepthTokenizer(SpatialMapTokenizer):
    modality = "depth"


class NormalTokenizer(SpatialMapTokenizer):
    modality = "normal"


class SemTokenizer(SpatialMapTokenizer):
    modality = "sem"
