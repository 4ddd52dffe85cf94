"""Spatial-map grounding (HED, canny, depth, normal, semantic maps): one condition map per layout.

A spatial model (``gligen-generation-{hed,canny,depth,normal,sem}``) grounds on a whole-image map:
its position net (:class:`~gligen_eval.generation.spatial_net.SpatialPositionNet`) turns the map into
grounding tokens, and its downsampler (``unet.downsample_net``) brings the map to latent size as extra
UNet input channels, appended after the latents. The tokenizer here gets one map per layout and fills:

* ``cond``: ``{<official name>: maps, "mask": 1}`` (``canny_edge``, ``hed_edge``, ``depth``, ``normal``,
  ``sem``), ``uncond``: the same maps with mask 0 (null tokens); the unconditional branch of guidance
  still gets the map through the extra channels, as in the official sampler;
* ``extra_channels``: the downsampled map (computed once per batch).

At steps where the schedule's scale is 0 the sampler swaps in the base model's 4-channel first conv
and drops the extra channels (:func:`~gligen_eval.generation.unet_forward.grounded_forward`).

**Where the map comes from** (the tokenizer's ``options``):

* ``map_provider``: a callable ``(layout, size) -> np.ndarray``, or ``"synthetic"`` (:func:`drawn_map`,
  maps drawn from the layout's boxes; the offline default of tiny models, which yields to an explicit
  ``map`` option other than ``auto``/``synthetic``);
* otherwise :func:`gligen_eval.conditions.load_condition` with the run's condition options
  (:data:`~gligen_eval.conditions.CONDITION_OPTIONS`: a given map file per layout, or extraction from the
  layout's real image).

A map is float32 ``(3, size, size)`` in [-1, 1] (hed, canny, depth, normal) or int64 ``(size, size)``
ADE20K labels (sem; 0 = other), taken at ``size`` = the run's image size (the larger side): the official
convention is a 512-px map for 512-px images, and the nets resize it to their own ``resize_input``
(256 in the released configs) anyway, so smaller runs need no bigger maps. Sem maps stay labels until
the nets one-hot them after their nearest resize (the same result as the official 152-channel one-hot,
at a fraction of the memory).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch

from gligen_eval.conditions import CONDITION_OPTIONS
from gligen_eval.errors import GligenEvalError
from gligen_eval.generation.grounding import GroundingContext, GroundingInputs, GroundingTokenizer
from gligen_eval.generation.modalities.images import _rng

if TYPE_CHECKING:  # pragma: no cover
    from gligen_eval.records import Layout

MapProvider = Callable[["Layout", int], np.ndarray]
SEM_LABELS = 150
"""ADE20K classes (labels 1..150; 0 = other)."""


class SpatialMapTokenizer(GroundingTokenizer):
    """One condition map per layout -> the spatial position net's inputs and the extra UNet channels."""

    modality = "spatial"
    position_net_type = "SpatialPositionNet"
    options = ("map_provider",) + CONDITION_OPTIONS

    def __init__(self, map_provider: MapProvider | str | None = None, **condition_options: Any):
        unknown = sorted(set(condition_options) - set(CONDITION_OPTIONS))
        if unknown:
            raise ValueError(f"unknown {self.modality} grounding option(s) {', '.join(unknown)}")
        if not (map_provider is None or map_provider == "synthetic" or callable(map_provider)):
            raise ValueError(f"map_provider must be a callable (layout, size) -> map or 'synthetic', got {map_provider!r}")
        self.map_provider = map_provider
        self.condition_options = {k: v for k, v in condition_options.items() if v is not None}
        for key in CONDITION_OPTIONS:
            setattr(self, key, self.condition_options.get(key))

    @property
    def in_channels(self) -> int:  # type: ignore[override]
        from gligen_eval.generation.modalities import spec

        return spec(self.modality).in_channels

    def check(self, components) -> None:
        super().check(components)
        unet = components["unet"]
        net_modality = getattr(unet.position_net, "modality", None)
        from gligen_eval.generation.modalities import compatible

        if net_modality is None or not compatible(self.modality, net_modality):
            raise ValueError(f"the '{self.modality}' grounding needs a {self.modality} model, this one is {net_modality}")
        if getattr(unet, "downsample_net", None) is None:
            raise ValueError(f"the '{self.modality}' grounding needs the UNet's downsample_net (the map downsampler)")

    def grounded_boxes(self, layout: "Layout", max_objects: int) -> list:
        return []  # the whole map grounds the image; no box is a grounding token

    # ---------------------------------------------------------------------------------------

    def map_for(self, layout: "Layout", size: int) -> np.ndarray:
        """The condition map of ``layout`` at ``size`` (checked: shape, dtype, range)."""
        drawn = self.map_provider == "synthetic" and self.condition_options.get("map") in (None, "auto", "synthetic")
        if drawn:
            m = drawn_map(layout, self.modality, size)
        elif callable(self.map_provider):
            m = self.map_provider(layout, size)
        else:
            from gligen_eval.conditions import load_condition

            m = load_condition(layout, self.modality, size=size, **self.condition_options)
        return check_map(np.asarray(m), self.modality, size, layout_id=layout.layout_id)

    def prepare(self, layouts: Sequence["Layout"], ctx: GroundingContext) -> GroundingInputs:
        unet = ctx.components["unet"]
        size = max(ctx.image_size) if ctx.image_size else 8 * max(ctx.latent_shape[1:])
        store = ctx.cache.setdefault("condition_maps", {})
        maps = []
        for layout in layouts:
            key = (layout.layout_id, layout.content_hash(), size)
            if key not in store:
                store[key] = self.map_for(layout, size)
            maps.append(store[key])
        x = torch.from_numpy(np.stack(maps)).to(ctx.device)
        if x.is_floating_point():
            x = x.to(ctx.dtype)
        b = len(layouts)
        name = unet.position_net.input_name
        ones = torch.ones(b, dtype=ctx.dtype, device=ctx.device)
        cond = {name: x, "mask": ones}
        with torch.no_grad():
            extra = unet.downsample_net(x, latent_size=int(ctx.latent_shape[-1]))
        return GroundingInputs(
            cond=cond,
            uncond={name: x, "mask": torch.zeros_like(ones)},
            num_objects=[0] * b,
            extra_channels=extra.to(ctx.dtype),
            extras={"condition_maps": x},
        )


def check_map(m: np.ndarray, modality: str, size: int, *, layout_id: str | None = None) -> np.ndarray:
    """``m`` as the model takes it, or a one-line error naming the layout."""
    from gligen_eval.generation.modalities import spec

    where = f"layout {layout_id}: " if layout_id is not None else ""
    classes = spec(modality).map_classes
    if classes:
        if m.shape != (size, size) or not np.issubdtype(m.dtype, np.integer):
            raise GligenEvalError(
                f"{where}a {modality} map must be integer labels of shape ({size}, {size}), got {m.dtype} {m.shape}"
            )
        if m.min() < 0 or m.max() >= classes:
            raise GligenEvalError(f"{where}{modality} labels must be in [0, {classes - 1}], got [{m.min()}, {m.max()}]")
        return m.astype(np.int64)
    if m.shape != (3, size, size) or not np.issubdtype(m.dtype, np.floating):
        raise GligenEvalError(
            f"{where}a {modality} map must be float (3, {size}, {size}) in [-1, 1], got {m.dtype} {m.shape}"
        )
    if not np.isfinite(m).all() or m.min() < -1.0 - 1e-3 or m.max() > 1.0 + 1e-3:
        raise GligenEvalError(f"{where}a {modality} map must lie in [-1, 1], got [{m.min():.3g}, {m.max():.3g}]")
    return m.astype(np.float32)


def drawn_map(layout: "Layout", modality: str, size: int) -> np.ndarray:
    """A deterministic condition map drawn from the layout's boxes (offline runs and tests).

    canny/hed: box outlines (hed a little blurred); depth: filled boxes, larger = nearer = brighter;
    normal: each box a face with its own normal colour over a floor-facing background; sem: each box
    filled with a label drawn from its phrase (1..150) over 0. The same layout and size give the same
    map on every machine.
    """
    boxes = [o.box for o in layout.objects]
    phrases = [o.phrase for o in layout.objects]
    px = [tuple(int(round(v * (size - 1))) for v in b) for b in boxes]
    order = sorted(range(len(px)), key=lambda i: -(boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1]))
    if modality == "sem":
        out = np.zeros((size, size), np.int64)
        for i in order:  # largest first, so smaller objects stay visible
            x0, y0, x1, y1 = px[i]
            out[y0 : y1 + 1, x0 : x1 + 1] = 1 + int(_rng("sem:" + phrases[i]).integers(0, SEM_LABELS))
        return out
    img = np.zeros((3, size, size), np.float32)
    if modality in ("canny", "hed"):
        w = max(1, size // 64)
        for x0, y0, x1, y1 in px:
            for c in range(3):
                img[c, y0 : y0 + w, x0 : x1 + 1] = img[c, max(y0, y1 - w + 1) : y1 + 1, x0 : x1 + 1] = 1.0
                img[c, y0 : y1 + 1, x0 : x0 + w] = img[c, y0 : y1 + 1, max(x0, x1 - w + 1) : x1 + 1] = 1.0
        if modality == "hed":
            img = (img + np.roll(img, 1, 1) + np.roll(img, -1, 1) + np.roll(img, 1, 2) + np.roll(img, -1, 2)) / 5
    elif modality == "depth":
        img[:] = np.linspace(0.0, 0.3, size, dtype=np.float32)[None, :, None]  # the floor comes nearer downwards
        for i in order:
            x0, y0, x1, y1 = px[i]
            area = (boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1])
            img[:, y0 : y1 + 1, x0 : x1 + 1] = 0.4 + 0.6 * min(1.0, area * 2)
    elif modality == "normal":
        img[:] = np.array([0.5, 1.0, 0.5], np.float32)[:, None, None]  # facing up: (0, 1, 0) as colour
        for i in order:
            x0, y0, x1, y1 = px[i]
            n = _rng("normal:" + phrases[i]).normal(size=3)
            n[2] = abs(n[2]) + 0.5  # towards the camera
            n = n / np.linalg.norm(n)
            img[:, y0 : y1 + 1, x0 : x1 + 1] = (n * 0.5 + 0.5).astype(np.float32)[:, None, None]
    else:
        raise ValueError(f"no drawn map for modality {modality!r}")
    return (img * 2.0 - 1.0).astype(np.float32)  # [0, 1] -> the model's [-1, 1]


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
