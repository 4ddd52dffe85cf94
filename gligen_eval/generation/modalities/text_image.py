"""Text+image+box grounding (``attention_type="gated-text-image"``).

Every grounded object is one box with up to two entities, a phrase and a reference image; the
position net (diffusers' ``GLIGENTextBoundingboxProjection(feature_type="text-image")``) turns them
into ``2N`` tokens: ``N`` text tokens (phrase feature + box) and ``N`` image tokens (image feature +
box), ``N = max_objects``. Its keyword arguments::

    boxes (B, N, 4)  masks (B, N)                     1 for a used slot
    phrases_embeddings (B, N, D)  phrases_masks (B, N)  1 where the phrase grounds
    image_embeddings (B, N, D)    image_masks (B, N)    1 where the reference image grounds

A masked entity takes the learnable null feature (``null_text_feature`` / ``null_image_feature``).

* Phrase feature: the CLIP text encoder's ``pooler_output`` (as for text+box).
* Image feature: CLIP vision ``image_embeds`` of the reference image (through
  ``components["processor"]``), times the projection ``components["image_project"]`` (diffusers'
  ``CLIPImageProjection``, the official ``projection_matrix`` that maps CLIP image embeddings into
  the phrase-feature space), renormalized to length ``normalize_constant`` (28.7, the typical norm
  of a phrase feature)::

      feature = image_project(image_embeds);  feature = feature / ||feature|| * 28.7

* An object with an empty phrase is *image-only* (phrase mask 0); an object without a reference
  image is *text-only* (image mask 0) unless ``reference_images`` supplies one (``crop`` of the
  layout's image, or a ``synthetic`` drawing; see :mod:`.images`).
* Style grounding (official ``text_mask=[..., 0]``, ``image_mask=[..., 1]`` at location
  ``[0, 1, 0, 1]``): ``style_image=PATH`` adds to every layout one image-only entity at that
  out-of-image location (a zero-size box, so it covers no region), after the layout's objects.

The null grounding of classifier-free guidance zeroes all three masks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch

from gligen_eval.generation.grounding import (
    GroundingContext,
    GroundingInputs,
    GroundingTokenizer,
    encode_phrases,
    truncate_objects,
)
from gligen_eval.generation.modalities.images import (
    REFERENCE_IMAGE_SOURCES,
    load_rgb,
    reference_image,
    reference_key,
)

if TYPE_CHECKING:  # pragma: no cover
    from gligen_eval.records import Layout

STYLE_BOX = (0.0, 1.0, 0.0, 1.0)
"""The official location of a style image: outside the image (x0 = x1 = 0, y0 = y1 = 1)."""
IMAGE_PARTS = ("image_encoder", "processor", "image_project")


def encode_images(keys: Sequence[tuple], ctx: GroundingContext, normalize_constant: float, layout_ids: Sequence[str]):
    """Projected, renormalized CLIP image features of the reference images named by ``keys``, cached per call."""
    cache = ctx.cache.setdefault(("image_features", float(normalize_constant)), {})
    new = list(dict.fromkeys(k for k in keys if k not in cache))
    if new:
        where = dict(zip(keys, layout_ids))
        images = [
            load_rgb(k[1], what="style image") if k[0] == "style" else reference_image(k, layout_id=where.get(k))
            for k in new
        ]
        processor = ctx.components["processor"]
        encoder = ctx.components["image_encoder"]
        project = ctx.components["image_project"]
        pixels = processor(images=images, return_tensors="pt")["pixel_values"]
        pixels = pixels.to(device=encoder.device, dtype=encoder.dtype)
        with torch.no_grad():
            embeds = encoder(pixel_values=pixels).image_embeds
            feats = project(embeds.to(project.dtype))
        for k, f in zip(new, feats):
            cache[k] = f / f.norm() * normalize_constant
    return {k: cache[k] for k in keys}


class TextImageBoxTokenizer(GroundingTokenizer):
    """Text+image+box grounding tokens (module docstring).

    Options: ``reference_images`` (``given``, ``crop``, ``synthetic``: the reference of an object
    that has none), ``style_image`` (a path: one image-only style entity per layout),
    ``normalize_constant`` (28.7).
    """

    modality = "text-image-box"
    position_net_type = "GLIGENTextBoundingboxProjection"
    options = ("reference_images", "style_image", "normalize_constant")

    def __init__(
        self,
        reference_images: str = "given",
        style_image: str | None = None,
        normalize_constant: float = 28.7,
    ):
        if reference_images not in REFERENCE_IMAGE_SOURCES:
            raise ValueError(
                f"reference_images must be one of {', '.join(REFERENCE_IMAGE_SOURCES)}, got {reference_images!r}"
            )
        self.reference_images = reference_images
        self.style_image = style_image
        self.normalize_constant = float(normalize_constant)

    def check(self, components: Mapping[str, Any]) -> None:
        super().check(components)
        if not hasattr(components["unet"].position_net, "linears_image"):
            raise ValueError(
                f"the '{self.modality}' grounding needs a text+image position net (attention_type='gated-text-image'); "
                "this UNet was built for text+box grounding ('gated')"
            )
        missing = [p for p in IMAGE_PARTS if components.get(p) is None]
        if missing:
            raise ValueError(
                f"the '{self.modality}' grounding needs a CLIP vision encoder: components lack {', '.join(missing)} "
                "(a diffusers StableDiffusionGLIGENTextImagePipeline folder has them)"
            )

    def grounded_boxes(self, layout: "Layout", max_objects: int) -> list:
        return [o.box for o in layout.objects[: max_objects - (1 if self.style_image else 0)]]

    def entities(self, layout: "Layout", max_objects: int) -> list[tuple[Any, str | None, tuple | None]]:
        """``(box, phrase or None, reference image key or None)`` of each slot of ``layout``."""
        objs = truncate_objects(layout, max_objects - (1 if self.style_image else 0))
        out = []
        for o in objs:
            phrase = o.phrase if o.phrase.strip() else None
            key = reference_key(o, layout, source=self.reference_images)  # type: ignore[arg-type]
            out.append((o.box, phrase, key))
        if self.style_image:
            out.append((STYLE_BOX, None, ("style", str(self.style_image))))
        return out

    def prepare(self, layouts: Sequence["Layout"], ctx: GroundingContext) -> GroundingInputs:
        n = ctx.max_objects
        dim = ctx.components["unet"].position_net.positive_len
        b = len(layouts)
        per_layout = [self.entities(layout, n) for layout in layouts]
        phrases = [p for ents in per_layout for _, p, _ in ents if p is not None]
        text = encode_phrases(phrases, ctx) if phrases else {}
        pairs = [(k, lay.layout_id) for lay, ents in zip(layouts, per_layout) for _, _, k in ents if k is not None]
        images = (
            encode_images([k for k, _ in pairs], ctx, self.normalize_constant, [i for _, i in pairs]) if pairs else {}
        )

        dt, dev = ctx.dtype, ctx.device
        boxes = torch.zeros(b, n, 4, dtype=dt)
        masks = torch.zeros(b, n, dtype=dt)
        phrase_masks = torch.zeros(b, n, dtype=dt)
        image_masks = torch.zeros(b, n, dtype=dt)
        phrase_emb = torch.zeros(b, n, dim, dtype=dt, device=dev)
        image_emb = torch.zeros(b, n, dim, dtype=dt, device=dev)
        for i, ents in enumerate(per_layout):
            for j, (box, phrase, key) in enumerate(ents):
                boxes[i, j] = torch.tensor([float(v) for v in box], dtype=dt)
                masks[i, j] = 1
                if phrase is not None:
                    phrase_emb[i, j] = text[phrase].to(dt)
                    phrase_masks[i, j] = 1
                if key is not None:
                    image_emb[i, j] = images[key].to(dt)
                    image_masks[i, j] = 1
        cond = {
            "boxes": boxes.to(dev),
            "masks": masks.to(dev),
            "phrases_masks": phrase_masks.to(dev),
            "image_masks": image_masks.to(dev),
            "phrases_embeddings": phrase_emb,
            "image_embeddings": image_emb,
        }
        return GroundingInputs(
            cond=cond,
            uncond=self.null_of(cond, ["masks", "phrases_masks", "image_masks"]),
            num_objects=[len(ents) for ents in per_layout],
        )
