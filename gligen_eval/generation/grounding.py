"""Grounding: from layouts to the grounding tokens of the UNet, and the scaled gated layers.

Two parts live here.

**Grounding tokenizers** (one per modality). A grounding tokenizer turns a batch of layouts
into the keyword arguments of the UNet's ``position_net`` (``cross_attention_kwargs["gligen"]``),
for the conditional branch and for the unconditional one (the *null grounding*: the same
tensors with all masks zeroed, so every slot takes the learnable null features). A modality
that needs more than grounding tokens (inpainting: extra UNet input channels and a per-step
blend of the latents; a modality that fixes the grounding scale) fills the optional fields of
:class:`GroundingInputs`; the sampler's loop uses them without knowing the modality.

To add a modality, subclass :class:`GroundingTokenizer`, implement :meth:`~GroundingTokenizer.prepare`
and register it with :func:`register_grounding` (or pass an instance to the sampler).

**Scaled gated layers.** diffusers' ``GatedSelfAttentionDense`` can only be switched on or off.
GLIGEN's scheduled sampling needs a fractional scale ``s`` per step::

    x = x + s * tanh(alpha_attn) * SelfAttn(LN([x, Linear(objs)]))[:, :N_visual]
    x = x + s * tanh(alpha_dense) * FF(LN(x))

:func:`install_scaled_fusers` replaces every fuser of a UNet by a :class:`ScaledGatedSelfAttentionDense`
that holds the *same* submodules and parameters (the UNet's ``state_dict`` keys and tensors do
not change); :func:`set_grounding_scale` sets ``s``, :func:`unplug` sets it to 0 and
:func:`unplugged` is a context manager that runs the base model within its block (``s = 0`` skips
the layers entirely, so the output is exactly the base UNet's).
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import torch
import torch.nn as nn

from gligen_eval.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from gligen_eval.records import Layout


# --------------------------------------------------------------------------------------------
# grounding tokenizers


@dataclass
class GroundingContext:
    """What a grounding tokenizer may use while preparing one batch.

    ``cache`` lives for one ``generate`` call (shared by all its batches): tokenizers keep
    per-phrase (or per-image) features there, so a phrase that occurs many times is encoded once.
    """

    components: Mapping[str, Any]
    device: Any
    dtype: Any
    max_objects: int
    latent_shape: tuple[int, int, int]
    """(channels, height, width) of the latents."""
    cache: dict[Any, Any] = field(default_factory=dict)
    image_size: tuple[int, int] | None = None
    """(height, width) of the output images in pixels."""
    seeds: list[int] | None = None
    """The seed of each sample of the batch."""
    generators: list[Any] | None = None
    """One CPU ``torch.Generator`` per sample, seeded with its seed. A tokenizer that needs random
    numbers (inpainting: the VAE posterior sample, the noise of the known region) draws them from
    these, so a sample does not depend on its batch; the sampler draws the initial noise from the
    same generators right after :meth:`GroundingTokenizer.prepare`."""
    scheduler: Any = None
    """The batch's scheduler (its timesteps are set)."""


@dataclass
class GroundingInputs:
    """Grounding for one batch of ``B`` samples (all tensors batch-first)."""

    cond: dict[str, torch.Tensor]
    """Keyword arguments of ``unet.position_net`` for the conditional branch."""
    uncond: dict[str, torch.Tensor]
    """The same for the unconditional branch of classifier-free guidance (null grounding)."""
    num_objects: list[int]
    """Objects used per sample (after truncation to ``max_objects``)."""
    extra_channels: torch.Tensor | None = None
    """(B, C, h, w) appended to the UNet input after the latents (inpainting)."""
    fixed_scale: float | None = None
    """When set, the grounding scale at every step (inpainting forces 1)."""
    step_hook: Callable[[torch.Tensor, Any, int], torch.Tensor] | None = None
    """``hook(latents, t, step_index) -> latents`` called before each UNet evaluation."""
    final_hook: Callable[[torch.Tensor], torch.Tensor] | None = None
    """``hook(latents) -> latents`` called once after the last step, before decoding."""
    extras: dict[str, Any] = field(default_factory=dict)
    """Modality-specific tensors kept for inspection (inpainting: ``input_latents``, ``known_mask``)."""


class GroundingTokenizer:
    """Turns layouts into the grounding inputs of one modality."""

    modality: str = "?"
    position_net_type: str | None = None
    """The ``position_net`` class this tokenizer feeds (checked by :meth:`check`), if any."""
    in_channels: int | None = 4
    """The UNet input channels this tokenizer fills (4: latents only; checked by :meth:`check`)."""
    options: tuple[str, ...] = ()
    """Names of the constructor options (``get_grounding(name, **options)``)."""

    def prepare(self, layouts: Sequence["Layout"], ctx: GroundingContext) -> GroundingInputs:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """The modality and the options that change the images (for manifests and cache keys)."""
        return {"modality": self.modality, **{k: _plain_option(getattr(self, k, None)) for k in self.options}}

    def grounded_boxes(self, layout: "Layout", max_objects: int) -> list:
        """The boxes this tokenizer grounds for ``layout`` (normalized xyxy; inpainting regenerates them)."""
        return [o.box for o in layout.objects[:max_objects]]

    def check(self, components: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` when the components cannot take this modality."""
        unet = components["unet"]
        if self.in_channels is not None and int(unet.config.in_channels) != self.in_channels:
            hint = ""
            if int(unet.config.in_channels) == 9:
                hint = " (an inpainting model: use an 'inpaint-*' grounding)"
            raise ValueError(
                f"the '{self.modality}' grounding needs a UNet with {self.in_channels} input channels, "
                f"this one has {unet.config.in_channels}{hint}"
            )
        if self.position_net_type is None:
            return
        net = getattr(unet, "position_net", None)
        name = type(net).__name__ if net is not None else None
        if name != self.position_net_type:
            raise ValueError(
                f"the '{self.modality}' grounding needs a UNet whose position_net is {self.position_net_type}, "
                f"this one has {name or 'none (not a gated UNet)'}"
            )

    @staticmethod
    def null_of(cond: Mapping[str, torch.Tensor], mask_keys: Sequence[str]) -> dict[str, torch.Tensor]:
        """The null grounding of ``cond``: the same tensors with the masks in ``mask_keys`` zeroed."""
        return {k: (torch.zeros_like(v) if k in mask_keys else v) for k, v in cond.items()}


def _plain_option(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return f"<{type(value).__name__}>"  # images given in code (a mapping or a callable)


def truncate_objects(layout: "Layout", max_objects: int) -> tuple:
    """The first ``max_objects`` objects of ``layout``; warns when some are dropped."""
    objs = layout.objects
    if len(objs) > max_objects:
        warnings.warn(
            f"layout {layout.layout_id}: {len(objs)} objects, only the first {max_objects} are used for grounding",
            stacklevel=3,
        )
        objs = objs[:max_objects]
    return objs


def encode_phrases(phrases: Sequence[str], ctx: GroundingContext) -> dict[str, torch.Tensor]:
    """CLIP ``pooler_output`` of each distinct phrase, through ``ctx.cache`` (one encoder call for the new ones)."""
    cache = ctx.cache.setdefault("phrase_features", {})
    new = list(dict.fromkeys(p for p in phrases if p not in cache))
    if new:
        tokenizer = ctx.components["tokenizer"]
        encoder = ctx.components["text_encoder"]
        inputs = tokenizer(new, padding=True, truncation=True, return_tensors="pt").to(encoder.device)
        with torch.no_grad():
            feats = encoder(**inputs).pooler_output
        for p, f in zip(new, feats):
            cache[p] = f
    return {p: cache[p] for p in phrases}


class TextBoxTokenizer(GroundingTokenizer):
    """Text+box grounding: phrase features (CLIP ``pooler_output``), boxes (normalized xyxy), masks.

    Feeds diffusers' ``GLIGENTextBoundingboxProjection`` (``attention_type="gated"``):
    ``boxes`` (B, N, 4), ``positive_embeddings`` (B, N, D), ``masks`` (B, N), with
    ``N = max_objects``; empty slots have zero box, zero feature and mask 0.
    """

    modality = "text-box"
    position_net_type = "GLIGENTextBoundingboxProjection"

    def check(self, components: Mapping[str, Any]) -> None:
        super().check(components)
        net = components["unet"].position_net
        if not hasattr(net, "linears"):
            raise ValueError(
                "the 'text-box' grounding needs a text-only position net (attention_type='gated'); "
                "this UNet was built for text+image grounding ('gated-text-image')"
            )

    def prepare(self, layouts: Sequence["Layout"], ctx: GroundingContext) -> GroundingInputs:
        n = ctx.max_objects
        dim = ctx.components["unet"].config.cross_attention_dim
        if isinstance(dim, (list, tuple)):
            dim = dim[0]
        b = len(layouts)
        per_layout = [truncate_objects(layout, n) for layout in layouts]
        feats = encode_phrases([o.phrase for objs in per_layout for o in objs], ctx)

        boxes = torch.zeros(b, n, 4, dtype=ctx.dtype)
        emb = torch.zeros(b, n, dim, dtype=ctx.dtype, device=ctx.device)
        masks = torch.zeros(b, n, dtype=ctx.dtype)
        for i, objs in enumerate(per_layout):
            if not objs:
                continue
            boxes[i, : len(objs)] = torch.tensor([list(o.box) for o in objs], dtype=ctx.dtype)
            emb[i, : len(objs)] = torch.stack([feats[o.phrase] for o in objs]).to(ctx.dtype)
            masks[i, : len(objs)] = 1
        cond = {"boxes": boxes.to(ctx.device), "positive_embeddings": emb, "masks": masks.to(ctx.device)}
        return GroundingInputs(
            cond=cond,
            uncond=self.null_of(cond, ["masks"]),
            num_objects=[len(objs) for objs in per_layout],
        )


def _table_tokenizers() -> dict[str, str]:
    from gligen_eval.generation.modalities import MODALITIES

    return {name: s.tokenizer for name, s in MODALITIES.items()}


GROUNDINGS = Registry("grounding modality", _table_tokenizers)
"""Modality name -> ``"module:Class"`` of its tokenizer (imported only when asked for): the modality
table's tokenizers, plus those registered in code."""


def register_grounding(name: str, target: str) -> None:
    """Register a grounding tokenizer class as ``"package.module:ClassName"`` under ``name``."""
    GROUNDINGS.register(name, target)


def available_groundings() -> list[str]:
    return GROUNDINGS.names()


def grounding_class(name: str) -> type[GroundingTokenizer]:
    """The grounding tokenizer class registered as ``name`` (or given as ``"module:Class"``; imports its module)."""
    return GROUNDINGS.resolve(name)


def get_grounding(name: str, **kwargs: Any) -> GroundingTokenizer:
    """An instance of the grounding tokenizer registered as ``name``."""
    return grounding_class(name)(**kwargs)


def detect_modality(components: Mapping[str, Any]) -> str:
    """The modality of ``components['unet']``, from the modality table.

    The position net's parameter names, the UNet's input channels and the downsampler's input
    channels are matched against each :class:`~gligen_eval.generation.modalities.ModalitySpec`
    (:func:`~gligen_eval.generation.modalities.recognise`); a spatial position net also names its
    modality (canny and depth have the same weights).
    """
    from gligen_eval.errors import GligenEvalError
    from gligen_eval.generation.modalities import MODALITIES, compatible, recognise

    unet = components["unet"]
    net = getattr(unet, "position_net", None)
    if net is None:
        raise ValueError("the UNet has no position_net: it is not a GLIGEN (gated) UNet")
    down = getattr(unet, "downsample_net", None)
    layers = getattr(down, "layers", None)
    down_in = int(layers[0].weight.shape[1]) if layers is not None else None
    try:
        found = recognise(
            [k for k, _ in net.named_parameters()], in_channels=int(unet.config.in_channels),
            downsampler_in=down_in, official=False,
        ).name  # fmt: skip
    except GligenEvalError as e:
        raise ValueError(f"no grounding modality known for this UNet (position_net {type(net).__name__}): {e}") from e
    named = getattr(net, "modality", None)
    if named in MODALITIES and compatible(named, found):
        return named
    return found


def grounding_option_names() -> list[str]:
    """Every option name the supported modalities take."""
    from gligen_eval.generation.modalities import MODALITIES

    return sorted({o for m in MODALITIES for o in grounding_class(m).options})


def default_grounding(components: Mapping[str, Any], **options: Any) -> GroundingTokenizer:
    """The grounding tokenizer that fits ``components['unet']`` (:func:`detect_modality`).

    ``options`` are tokenizer options; those the detected modality does not take are ignored
    (e.g. ``input_images`` for a generation model), but a name no modality knows is an error.
    Components may carry defaults for them (``components.grounding_options``; tiny components
    from :func:`~gligen_eval.generation.loading.load_components` use drawn reference and input
    images); ``options`` win over those.
    """
    from gligen_eval.errors import ConfigError

    name = detect_modality(components)
    cls = grounding_class(name)
    unknown = sorted(set(options) - set(grounding_option_names()))
    if unknown:
        raise ConfigError(
            f"unknown grounding option(s) {', '.join(unknown)} (known: {', '.join(grounding_option_names())})"
        )
    merged = {**dict(getattr(components, "grounding_options", None) or {}), **options}
    return cls(**{k: v for k, v in merged.items() if k in cls.options})


# --------------------------------------------------------------------------------------------
# scaled gated layers


class ScaledGatedSelfAttentionDense(nn.Module):
    """GLIGEN's gated self-attention + gated dense layer with a fractional scale.

    Holds the submodules and parameters of a diffusers ``GatedSelfAttentionDense`` under the
    same names (``linear``, ``attn``, ``ff``, ``norm1``, ``norm2``, ``alpha_attn``,
    ``alpha_dense``), so the UNet's state dict is unchanged. ``scale == 0`` returns the input
    untouched without computing anything.
    """

    def __init__(self, fuser: nn.Module):
        super().__init__()
        # parameters first, then submodules: the registration order of the original
        self.alpha_attn = fuser.alpha_attn
        self.alpha_dense = fuser.alpha_dense
        self.linear = fuser.linear
        self.attn = fuser.attn
        self.ff = fuser.ff
        self.norm1 = fuser.norm1
        self.norm2 = fuser.norm2
        self.scale = 1.0
        self.enabled = bool(getattr(fuser, "enabled", True))

    def forward(self, x: torch.Tensor, objs: torch.Tensor) -> torch.Tensor:
        s = self.scale
        if not self.enabled or s == 0:
            return x
        n_visual = x.shape[1]
        objs = self.linear(objs)
        gate_attn = self.alpha_attn.tanh()
        gate_dense = self.alpha_dense.tanh()
        if s != 1:
            gate_attn = s * gate_attn
            gate_dense = s * gate_dense
        x = x + gate_attn * self.attn(self.norm1(torch.cat([x, objs], dim=1)))[:, :n_visual, :]
        x = x + gate_dense * self.ff(self.norm2(x))
        return x

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


def _fuser_owners(unet) -> Iterator[Any]:
    for module in unet.modules():
        if "fuser" in getattr(module, "_modules", {}):
            yield module


def install_scaled_fusers(unet) -> int:
    """Replace every gated fuser of ``unet`` by a scaled one (idempotent). Returns how many there are."""
    from diffusers.models.attention import GatedSelfAttentionDense

    cls = ScaledGatedSelfAttentionDense
    count = 0
    for owner in _fuser_owners(unet):
        fuser = owner.fuser
        if isinstance(fuser, cls):
            count += 1
        elif isinstance(fuser, GatedSelfAttentionDense):
            owner.fuser = cls(fuser)
            count += 1
    return count


def uninstall_scaled_fusers(unet) -> int:
    """Put diffusers' ``GatedSelfAttentionDense`` back (the same submodules and parameters)."""
    from diffusers.models.attention import GatedSelfAttentionDense

    cls = ScaledGatedSelfAttentionDense
    count = 0
    for owner in _fuser_owners(unet):
        scaled = owner.fuser
        if not isinstance(scaled, cls):
            continue
        original = GatedSelfAttentionDense.__new__(GatedSelfAttentionDense)
        nn.Module.__init__(original)
        original.linear = scaled.linear
        original.attn = scaled.attn
        original.ff = scaled.ff
        original.norm1 = scaled.norm1
        original.norm2 = scaled.norm2
        original.alpha_attn = scaled.alpha_attn
        original.alpha_dense = scaled.alpha_dense
        original.enabled = True
        owner.fuser = original
        count += 1
    return count


def scaled_fusers(unet) -> list[Any]:
    cls = ScaledGatedSelfAttentionDense
    return [m for m in unet.modules() if isinstance(m, cls)]


def set_grounding_scale(unet, scale: float) -> None:
    """Set the scale of every gated layer (installs the scaled layers on first use)."""
    scale = float(scale)
    if scale < 0:
        raise ValueError(f"grounding scale must be >= 0, got {scale}")
    fusers = scaled_fusers(unet)
    if not fusers:
        install_scaled_fusers(unet)
        fusers = scaled_fusers(unet)
    for m in fusers:
        m.scale = scale


def get_grounding_scale(unet) -> float | None:
    """The common scale of the gated layers (None when there are none or they differ)."""
    scales = {m.scale for m in scaled_fusers(unet)}
    return scales.pop() if len(scales) == 1 else None


def unplug(unet) -> None:
    """Switch grounding off (scale 0): the UNet behaves exactly as its base model."""
    set_grounding_scale(unet, 0.0)


@contextmanager
def unplugged(unet) -> Iterator[None]:
    """Within the block the gated layers are skipped (the base model); the previous scale is restored."""
    before = [(m, m.scale) for m in scaled_fusers(unet)]
    set_grounding_scale(unet, 0.0)
    try:
        yield
    finally:
        for m, s in before:
            m.scale = s
