"""Keypoint grounding: the persons of each layout as ``max_persons x 17`` keypoint tokens.

Feeds :class:`~gligen_eval.generation.keypoint_net.KeypointPositionNet` (``unet.position_net`` of a
keypoint model) with ``points (B, max_persons * 17, 2)`` and ``masks (B, max_persons * 17)``.

Packing follows the official rules (:func:`~gligen_eval.generation.keypoint_net.pack_keypoints`):

* a person is an object of the layout with ``keypoints`` (other objects are ignored: the keypoint
  model has no phrase or box tokens; the caption carries the text);
* persons are ordered by box area, largest first (ties keep layout order), and the first
  ``max_persons`` (8 for the released model) are kept;
* only keypoints with visibility 2 ground the image; the others are null tokens.

The null grounding of classifier-free guidance zeroes every mask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch

from gligen_eval.boxes import area_xyxy
from gligen_eval.generation.grounding import GroundingContext, GroundingInputs, GroundingTokenizer
from gligen_eval.generation.keypoint_net import pack_keypoints

if TYPE_CHECKING:  # pragma: no cover
    from gligen_eval.records import Layout


class KeypointTokenizer(GroundingTokenizer):
    """Keypoint grounding tokens (module docstring). ``min_visibility``: 2 (official)."""

    modality = "keypoint"
    position_net_type = "KeypointPositionNet"
    options = ("min_visibility",)

    def __init__(self, min_visibility: int = 2):
        if min_visibility not in (1, 2):
            raise ValueError(f"min_visibility must be 1 or 2, got {min_visibility!r}")
        self.min_visibility = int(min_visibility)

    def grounded_boxes(self, layout: "Layout", max_objects: int) -> list:
        return [o.box for o in layout.objects if o.keypoints is not None]

    def prepare(self, layouts: Sequence["Layout"], ctx: GroundingContext) -> GroundingInputs:
        net = ctx.components["unet"].position_net
        points, masks, used = [], [], []
        for layout in layouts:
            persons = [o for o in layout.objects if o.keypoints is not None]
            p, m = pack_keypoints(
                [o.keypoints for o in persons],
                [area_xyxy(o.box) for o in persons],
                max_persons=net.max_persons,
                min_visibility=self.min_visibility,
            )
            points.append(p)
            masks.append(m)
            used.append(min(len(persons), net.max_persons))
        cond = {
            "points": torch.stack(points).to(device=ctx.device, dtype=ctx.dtype),
            "masks": torch.stack(masks).to(device=ctx.device, dtype=ctx.dtype),
        }
        return GroundingInputs(cond=cond, uncond=self.null_of(cond, ["masks"]), num_objects=used)
