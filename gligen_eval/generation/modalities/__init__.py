"""Grounding modalities: one :class:`ModalitySpec` per modality, in one table (:data:`MODALITIES`).

Every place that asks "which modality is this?" reads this table: checkpoint conversion and loading
(recognising an official or our state dict by its position-net keys, input channels and downsampler),
detection from a loaded UNet, the grounding tokenizer registry, the tiny models, the runner and the
reports. Adding a modality is adding its spec here, its tokenizer module and its tests.

=========================  ========================  =====  ==================  ===============
modality                   position net              in ch  extra UNet input    α default
=========================  ========================  =====  ==================  ===============
``text-box``               text (diffusers)          4      none                [0.3, 0, 0.7]
``text-image-box``         text-image (diffusers)    4      none                [1, 0, 0]
``keypoint``               keypoint                  4      none                [0.3, 0, 0.7]
``inpaint-text-box``       text                      9      masked latents      scale 1 forced
``inpaint-text-image-box`` text-image                9      masked latents      scale 1 forced
``hed``                    ConvNeXt (spatial)        5      map, 1 channel      [0.9, 0, 0.1]
``canny``                  ConvNeXt                  12     map, 8 channels     [0.9, 0, 0.1]
``depth``                  ConvNeXt                  12     map, 8 channels     [0.7, 0, 0.3]
``normal``                 ConvNeXt                  12     map, 8 channels     [0.7, 0, 0.3]
``sem``                    ConvNeXt + ``in_conv``    12     one-hot, 8 channels [0.7, 0, 0.3]
=========================  ========================  =====  ==================  ===============

This module imports neither torch nor PIL: the table is cheap to read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection

from gligen_eval.errors import ConfigError, GligenEvalError

_PKG = "gligen_eval.generation"
_LDM = "ldm.modules.diffusionmodules"
_CONVNEXT = ("convnext_tiny_backbone.downsample_layers.0.0.weight", "pos_embedding", "null_feature")


@dataclass(frozen=True)
class ModalitySpec:
    """One grounding modality: its official checkpoint, how to recognise it, and how it runs."""

    name: str
    attention_type: str
    """diffusers ``UNet2DConditionModel(attention_type=...)``."""
    position_net: str
    """Position-net kind: ``text``, ``text-image``, ``keypoint``, or the spatial modality's name."""
    in_channels: int
    """UNet input channels (4 latents + the extra input)."""
    manifest: str
    """The official modality name (``generation_text_box``, ``inpainting_text_box``, ...)."""
    released_checkpoint: str
    tokenizer: str
    """Its grounding tokenizer, ``"module:Class"`` (imported on first use)."""
    alpha: tuple[float, float, float]
    """Official scheduled sampling ``alpha_type = [p1, p2, p3]``."""
    official_keys: tuple[str, ...]
    """``position_net.*`` names (prefix removed) that an official dict of this modality has."""
    our_keys: tuple[str, ...] | None = None
    """The same for our state dicts (``None``: the official names)."""
    downsampler_in: int | None = None
    """Input channels of ``downsample_net.layers.0`` (``None``: no downsampler weights)."""
    extra_input: str | None = None
    """``"inpaint"`` (masked-image latents + mask), ``"spatial"`` (the downsampled map) or ``None``."""
    forced_scale: float | None = None
    """When set, the grounding scale at every step whatever the schedule says (inpainting: 1)."""
    layout_images: tuple[str, ...] = ()
    """Layout images it may use: ``reference`` (object images), ``input`` (the photo to inpaint),
    ``condition`` (the condition map or the real image it is extracted from)."""
    same_keys_as: str | None = None
    """A modality whose weights have the same keys and shapes (depth: canny); told apart by the config."""
    tiny: str = f"{_PKG}.tiny:tiny_unet"
    """``"module:function"`` building its tiny random UNet (``function(spec, seed=..., sample_size=...)``)."""
    official_targets: tuple[str, str | None] | None = None
    """Official ``grounding_tokenizer`` and ``grounding_downsampler`` config targets."""
    map_input: str | None = None
    """Spatial: the position net's official keyword for the map (``canny_edge``, ``hed_edge``, ...)."""
    map_classes: int | None = None
    """Spatial label maps (sem): the one-hot width (152); the map is then integer labels, not an image."""

    @property
    def spatial(self) -> bool:
        return self.extra_input == "spatial"

    @property
    def inpainting(self) -> bool:
        return self.extra_input == "inpaint"

    def keys(self, *, official: bool) -> tuple[str, ...]:
        return self.official_keys if official or self.our_keys is None else self.our_keys


def _spatial(
    name: str, in_ch: int, down_in: int | None, alpha, map_input: str, *, same_as: str | None = None,
    extra_keys: tuple[str, ...] = (), classes: int | None = None,
) -> ModalitySpec:
    """A spatial spec: ``down_in`` is the downsampler's input (None: HED's parameter-free one, 1: the map's
    first channel, 3: all three, ``classes``: the one-hot of a label map)."""
    cls = name.capitalize()
    return ModalitySpec(
        name, "gated", name, in_ch, f"generation_{name}", f"gligen/gligen-generation-{name}",
        f"{_PKG}.modalities.spatial:{cls}Tokenizer", alpha, _CONVNEXT + tuple(extra_keys),
        downsampler_in=down_in, extra_input="spatial", layout_images=("condition",), same_keys_as=same_as,
        map_input=map_input, map_classes=classes,
        official_targets=(
            f"{_LDM}.{name}_grounding_net.PositionNet", f"{_LDM}.{name}_grounding_downsampler.GroundingDownsampler"
        ),
    )  # fmt: skip


_TEXT_KEYS = ("linears.0.weight", "null_positive_feature")
_IMAGE_KEYS = ("linears_image.0.weight", "null_image_feature")
_TEXT_T = (f"{_LDM}.text_grounding_net.PositionNet", None)
_IMAGE_T = (f"{_LDM}.text_image_grounding_net.PositionNet", None)

MODALITIES: dict[str, ModalitySpec] = {
    s.name: s
    for s in (
        ModalitySpec(
            "text-box", "gated", "text", 4, "generation_text_box", "gligen/gligen-generation-text-box",
            f"{_PKG}.grounding:TextBoxTokenizer", (0.3, 0.0, 0.7), _TEXT_KEYS, official_targets=_TEXT_T,
        ),
        ModalitySpec(
            "text-image-box", "gated-text-image", "text-image", 4, "generation_text_image_box",
            "gligen/gligen-generation-text-image-box", f"{_PKG}.modalities.text_image:TextImageBoxTokenizer",
            (1.0, 0.0, 0.0), _IMAGE_KEYS, layout_images=("reference",), official_targets=_IMAGE_T,
        ),
        ModalitySpec(
            "keypoint", "gated", "keypoint", 4, "generation_keypoint", "gligen/gligen-generation-keypoint",
            f"{_PKG}.modalities.keypoint:KeypointTokenizer", (0.3, 0.0, 0.7), ("person_embeddings",),
            our_keys=("person_embedding",),
            official_targets=(f"{_LDM}.keypoint_grounding_net.PositionNet", None),
        ),
        ModalitySpec(
            "inpaint-text-box", "gated", "text", 9, "inpainting_text_box", "gligen/gligen-inpainting-text-box",
            f"{_PKG}.modalities.inpaint:InpaintTextBoxTokenizer", (1.0, 0.0, 0.0), _TEXT_KEYS,
            extra_input="inpaint", forced_scale=1.0, layout_images=("input",), official_targets=_TEXT_T,
        ),
        ModalitySpec(
            "inpaint-text-image-box", "gated-text-image", "text-image", 9, "inpainting_text_image_box",
            "gligen/gligen-inpainting-text-image-box", f"{_PKG}.modalities.inpaint:InpaintTextImageBoxTokenizer",
            (1.0, 0.0, 0.0), _IMAGE_KEYS, extra_input="inpaint", forced_scale=1.0,
            layout_images=("input", "reference"), official_targets=_IMAGE_T,
        ),
        _spatial("hed", 5, None, (0.9, 0.0, 0.1), "hed_edge"),
        _spatial("canny", 12, 1, (0.9, 0.0, 0.1), "canny_edge"),
        _spatial("depth", 12, 1, (0.7, 0.0, 0.3), "depth", same_as="canny"),
        _spatial("normal", 12, 3, (0.7, 0.0, 0.3), "normal"),
        _spatial("sem", 12, 152, (0.7, 0.0, 0.3), "sem", extra_keys=("in_conv.weight",), classes=152),
    )  # fmt: skip
}

ALL_MODALITIES = tuple(MODALITIES)
"""Every modality the sampler runs."""
SPATIAL_MODALITIES = tuple(n for n, s in MODALITIES.items() if s.spatial)
"""The spatial-map modalities (hed, canny, depth, normal, sem)."""
MODALITY_NAMES = tuple(n for n, s in MODALITIES.items() if not s.spatial)
"""The object-grounded modalities (boxes, reference images, keypoints; generation and inpainting)."""


def spec(modality: str) -> ModalitySpec:
    """The :class:`ModalitySpec` of ``modality`` (a :class:`ConfigError` naming the known ones otherwise)."""
    if modality not in MODALITIES:
        raise ConfigError(f"unknown modality {modality!r} (known: {', '.join(MODALITIES)})")
    return MODALITIES[modality]


def recognise(
    position_keys: Collection[str], *, in_channels: int, downsampler_in: int | None, official: bool
) -> ModalitySpec:
    """The spec whose position-net keys, input channels and downsampler fit a state dict.

    ``position_keys``: the ``position_net.*`` names without the prefix. Modalities with the same keys
    as another (depth: canny) are never the answer; the config or an assertion tells them apart.
    """
    names = set(position_keys)
    fits = [
        s for s in MODALITIES.values()
        if s.same_keys_as is None and set(s.keys(official=official)) <= names
        and s.in_channels == in_channels and s.downsampler_in == downsampler_in
    ]  # fmt: skip
    if fits:
        return max(fits, key=lambda s: len(s.keys(official=official)))
    known = [s for s in MODALITIES.values() if s.same_keys_as is None and set(s.keys(official=official)) <= names]
    if known:
        best = max(known, key=lambda s: len(s.keys(official=official)))
        raise GligenEvalError(
            f"a {best.position_net} position net with {in_channels} UNet input channels"
            f"{'' if downsampler_in is None else f' and a {downsampler_in}-channel downsampler'} "
            f"is not a released GLIGEN modality (a {best.name} model has {best.in_channels})"
        )
    raise GligenEvalError(
        "cannot tell the GLIGEN modality: no recognised position_net.* keys "
        f"(found {sorted(names)[:5]})"
    )


def compatible(asked: str, found: str) -> bool:
    """Whether weights recognised as ``found`` can be the asked modality (the same, or the same keys)."""
    a, f = spec(asked), spec(found)
    return a.name == f.name or a.same_keys_as == f.name or f.same_keys_as == a.name


def default_alpha(modality: str) -> list[float]:
    """The official scheduled-sampling ``alpha_type = [p1, p2, p3]`` of ``modality``.

    box and keypoint ``[0.3, 0, 0.7]``; image ``[1, 0, 0]``; hed/canny ``[0.9, 0, 0.1]``;
    depth/normal/sem ``[0.7, 0, 0.3]``. Inpainting runs at scale 1 at every step
    (:func:`forced_scale`), which is ``[1, 0, 0]``.
    """
    return list(spec(modality).alpha)


def forced_scale(modality: str) -> float | None:
    """The grounding scale a modality always uses whatever the schedule says (inpainting: 1), else None."""
    return spec(modality).forced_scale


def is_inpainting(modality: str) -> bool:
    return spec(modality).inpainting if modality in MODALITIES else modality.startswith("inpaint-")


def uses_layout_image(modality: str, kind: str) -> bool:
    """Whether ``modality`` may read the layout's ``kind`` image (``reference``, ``input``, ``condition``)."""
    return kind in spec(modality).layout_images
