"""Official GLIGEN ⇄ our (diffusers) UNet key names, key classification and modality recognition.

==============================================  ==================================================
official                                        ours (diffusers)
==============================================  ==================================================
``time_embed.{0,2}.*``                          ``time_embedding.linear_{1,2}.*``
``input_blocks.0.0.*``                          ``conv_in.*``
``input_blocks.{i}.0.*`` (ResBlock)             ``down_blocks.{b}.resnets.{l}.*``
``input_blocks.{i}.1.*`` (SpatialTransformer)   ``down_blocks.{b}.attentions.{l}.*``
``input_blocks.{i}.0.op.*``                     ``down_blocks.{b}.downsamplers.0.conv.*``
``middle_block.{0,1,2}.*``                      ``mid_block.{resnets.0,attentions.0,resnets.1}.*``
``output_blocks.{i}.0.*`` / ``.1.*``            ``up_blocks.{b}.resnets.{l}.*`` / ``attentions.{l}.*``
``output_blocks.{i}.{1|2}.conv.*``              ``up_blocks.{b}.upsamplers.0.conv.*``
``out.{0,2}.*``                                 ``conv_norm_out.*`` / ``conv_out.*``
ResBlock ``in_layers.{0,2}``, ``emb_layers.1``,  ``norm1``, ``conv1``, ``time_emb_proj``,
``out_layers.{0,3}``, ``skip_connection``        ``norm2``, ``conv2``, ``conv_shortcut``
``...transformer_blocks.{j}.fuser.*``           same name (diffusers ``GatedSelfAttentionDense``)
``position_net.*`` text+box / text+image+box    same name (diffusers ``GLIGENTextBoundingboxProjection``)
``position_net.*`` keypoint                     :data:`keypoint_net.OFFICIAL_TO_OURS`
``position_net.*`` spatial (ConvNeXt)           same name (:class:`~.spatial_net.SpatialPositionNet`)
``downsample_net.*`` spatial                    same name (:class:`~.spatial_net.SpatialDownsampler`)
==============================================  ==================================================

with ``b = (i - 1) // (L + 1)``, ``l = (i - 1) % (L + 1)`` for input blocks and ``b = i // (L + 1)``,
``l = i % (L + 1)`` for output blocks (``L`` = ``layers_per_block``). :meth:`KeyMapper.to_official`
is the exact inverse.

Adapter vs frozen base follows the official trainer: a key is *adapter* when it belongs to a gated
fuser, the position net or the spatial downsampler, or when it is the input convolution's weight of
a model whose input channels differ from the base's 4 (inpainting: 9, HED: 5, other spatial: 12).

Which modality a state dict is comes from the modality table
(:func:`gligen_eval.generation.modalities.recognise`): its position-net keys, input channels and
downsampler input channels. This module imports no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from gligen_eval.errors import GligenEvalError
from gligen_eval.generation.modalities import MODALITIES, recognise

PositionNetKind = str
"""``text``, ``text-image``, ``keypoint`` or a spatial modality name (``hed``, ``canny``, ...)."""

BASE_IN_CHANNELS = 4
"""Input channels of the frozen SD-1.x UNet that every GLIGEN adapter is trained on."""

def spatial_kinds() -> tuple[str, ...]:
    """Position-net kinds of the spatial modalities in the table (their names; our keys are the official ones)."""
    return tuple(s.position_net for s in MODALITIES.values() if s.spatial)

_RESNET_OFFICIAL_TO_OURS = {
    "in_layers.0": "norm1",
    "in_layers.2": "conv1",
    "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2",
    "out_layers.3": "conv2",
    "skip_connection": "conv_shortcut",
}
_RESNET_OURS_TO_OFFICIAL = {v: k for k, v in _RESNET_OFFICIAL_TO_OURS.items()}


# --------------------------------------------------------------------------------------------
# classification and modality detection


def classify_official_key(key: str, *, in_channels: int) -> str:
    """``fuser``, ``position_net``, ``downsample_net``, ``input_conv`` (adapter) or ``base``."""
    if "transformer_blocks" in key and ".fuser." in key:
        return "fuser"
    if key.startswith("position_net."):
        return "position_net"
    if key.startswith("downsample_net."):
        return "downsample_net"
    if key == "input_blocks.0.0.weight" and in_channels != BASE_IN_CHANNELS:
        return "input_conv"
    return "base"


def classify_key(key: str, *, in_channels: int, base_in_channels: int = BASE_IN_CHANNELS) -> str:
    """Same as :func:`classify_official_key` for our (diffusers) key names."""
    if ".fuser." in key:
        return "fuser"
    if key.startswith("position_net."):
        return "position_net"
    if key.startswith("downsample_net."):
        return "downsample_net"
    if key == "conv_in.weight" and in_channels != base_in_channels:
        return "input_conv"
    return "base"


def split_official_keys(keys: Iterable[str], *, in_channels: int) -> tuple[list[str], list[str]]:
    """``(adapter_keys, base_keys)`` of an official ``model`` dict, in input order."""
    adapter, base = [], []
    for k in keys:
        (base if classify_official_key(k, in_channels=in_channels) == "base" else adapter).append(k)
    return adapter, base


def _downsampler_in(state: Mapping[str, Any]) -> int | None:
    w = state.get("downsample_net.layers.0.weight")
    return None if w is None else int(w.shape[1])


def detect_official_modality(model_sd: Mapping[str, Any]) -> str:
    """The modality of an official ``model`` dict, from its keys and input-conv shape.

    Canny and depth checkpoints have identical keys and shapes; they are reported as ``canny``
    (the checkpoint's ``config_dict`` tells them apart, see :func:`modality_from_config`).
    """
    in_ch = int(model_sd["input_blocks.0.0.weight"].shape[1])
    names = {k[len("position_net."):] for k in model_sd if k.startswith("position_net.")}
    return recognise(names, in_channels=in_ch, downsampler_in=_downsampler_in(model_sd), official=True).name


def modality_from_config(cfg: Mapping[str, Any]) -> str | None:
    """The modality an official ``config_dict`` names through its grounding tokenizer target (or ``None``)."""
    params = (cfg.get("model") or {}).get("params") if isinstance(cfg.get("model"), Mapping) else None
    target = ((params or {}).get("grounding_tokenizer") or {}).get("target") if isinstance(params, Mapping) else None
    if not isinstance(target, str):
        return None
    inpaint = bool(params.get("inpaint_mode"))
    hits = [
        s.name for s in MODALITIES.values()
        if s.official_targets and s.official_targets[0] == target and s.inpainting == inpaint
    ]  # fmt: skip
    return hits[0] if len(hits) == 1 else None


def position_net_kind(state: Mapping[str, Any], *, prefix: str = "position_net.") -> PositionNetKind | None:
    """Kind of position net in one of *our* state dicts (``None`` when there is none)."""
    if f"{prefix}person_embedding" in state:
        return "keypoint"
    if f"{prefix}linears_image.0.weight" in state:
        return "text-image"
    if f"{prefix}convnext_tiny_backbone.downsample_layers.0.0.weight" in state:  # spatial: our names = official
        names = {k[len(prefix):] for k in state if k.startswith(prefix)}
        w = state.get("conv_in.weight")
        in_ch = int(w.shape[1]) if w is not None else (5 if _downsampler_in(state) is None else 12)
        return recognise(names, in_channels=in_ch, downsampler_in=_downsampler_in(state), official=False).position_net
    if f"{prefix}linears.0.weight" in state:
        return "text"
    return None


def modality_of_state(state: Mapping[str, Any], *, in_channels: int | None = None) -> str:
    """Modality name for one of our UNet state dicts (or an adapter state)."""
    names = {k[len("position_net."):] for k in state if k.startswith("position_net.")}
    if not names:
        raise GligenEvalError("no position_net.* weights: not a GLIGEN model or adapter")
    if in_channels is None:
        w = state.get("conv_in.weight")
        in_channels = BASE_IN_CHANNELS if w is None else int(w.shape[1])
    return recognise(names, in_channels=in_channels, downsampler_in=_downsampler_in(state), official=False).name


# --------------------------------------------------------------------------------------------
# UNet layout ⇄ key mapping


def _block_plan(config: Mapping[str, Any]) -> tuple[int, int, list[bool], list[bool]]:
    layers = config.get("layers_per_block", 2)
    if not isinstance(layers, int):
        raise GligenEvalError(f"official GLIGEN layouts have one layers_per_block for all blocks, got {layers!r}")
    down = list(config["down_block_types"])
    up = list(config["up_block_types"])
    if len(down) != len(up):
        raise GligenEvalError("down_block_types and up_block_types differ in length")
    return len(down), layers, ["CrossAttn" in t for t in down], ["CrossAttn" in t for t in up]


@dataclass
class KeyMapper:
    """Bidirectional official ⇄ diffusers key mapping for one UNet config."""

    pairs: list[tuple[str, str, bool]]
    """(official prefix, our prefix, is_resnet), longest prefixes first."""
    position_net: PositionNetKind | None = None

    @classmethod
    def for_config(cls, config: Mapping[str, Any], position_net: PositionNetKind | None = None) -> "KeyMapper":
        n, L, down_attn, up_attn = _block_plan(config)
        pairs: list[tuple[str, str, bool]] = [
            ("time_embed.0.", "time_embedding.linear_1.", False),
            ("time_embed.2.", "time_embedding.linear_2.", False),
            ("input_blocks.0.0.", "conv_in.", False),
            ("out.0.", "conv_norm_out.", False),
            ("out.2.", "conv_out.", False),
            ("middle_block.0.", "mid_block.resnets.0.", True),
            ("middle_block.1.", "mid_block.attentions.0.", False),
            ("middle_block.2.", "mid_block.resnets.1.", True),
        ]
        for b in range(n):
            for l in range(L):
                i = 1 + b * (L + 1) + l
                pairs.append((f"input_blocks.{i}.0.", f"down_blocks.{b}.resnets.{l}.", True))
                if down_attn[b]:
                    pairs.append((f"input_blocks.{i}.1.", f"down_blocks.{b}.attentions.{l}.", False))
            if b < n - 1:
                i = 1 + b * (L + 1) + L
                pairs.append((f"input_blocks.{i}.0.op.", f"down_blocks.{b}.downsamplers.0.conv.", False))
        for b in range(n):
            for l in range(L + 1):
                i = b * (L + 1) + l
                pairs.append((f"output_blocks.{i}.0.", f"up_blocks.{b}.resnets.{l}.", True))
                if up_attn[b]:
                    pairs.append((f"output_blocks.{i}.1.", f"up_blocks.{b}.attentions.{l}.", False))
                if l == L and b < n - 1:
                    j = 2 if up_attn[b] else 1
                    pairs.append((f"output_blocks.{i}.{j}.conv.", f"up_blocks.{b}.upsamplers.0.conv.", False))
        pairs.sort(key=lambda p: -len(p[0]))
        return cls(pairs=pairs, position_net=position_net)

    def _pos_to_ours(self, name: str) -> str | None:
        if self.position_net == "keypoint":
            from gligen_eval.generation.keypoint_net import OFFICIAL_TO_OURS

            return OFFICIAL_TO_OURS.get(name)
        return name if self.position_net in ("text", "text-image") + spatial_kinds() else None

    def _pos_to_official(self, name: str) -> str | None:
        if self.position_net == "keypoint":
            from gligen_eval.generation.keypoint_net import OURS_TO_OFFICIAL

            return OURS_TO_OFFICIAL.get(name)
        return name if self.position_net in ("text", "text-image") + spatial_kinds() else None

    def to_ours(self, key: str) -> str | None:
        """Our name for an official key (``None`` when it has no counterpart)."""
        if key.startswith("position_net."):
            name = self._pos_to_ours(key[len("position_net."):])
            return None if name is None else "position_net." + name
        if key.startswith("downsample_net."):
            return key if self.position_net in spatial_kinds() else None
        for off, ours, resnet in self.pairs:
            if key.startswith(off):
                rest = key[len(off):]
                if resnet:
                    head, _, leaf = rest.rpartition(".")
                    if head not in _RESNET_OFFICIAL_TO_OURS:
                        return None
                    rest = f"{_RESNET_OFFICIAL_TO_OURS[head]}.{leaf}"
                return ours + rest
        return None

    def to_official(self, key: str) -> str | None:
        """The official name for one of our keys (``None`` when it has no counterpart)."""
        if key.startswith("position_net."):
            name = self._pos_to_official(key[len("position_net."):])
            return None if name is None else "position_net." + name
        if key.startswith("downsample_net."):
            return key if self.position_net in spatial_kinds() else None
        best = None
        for off, ours, resnet in self.pairs:
            if key.startswith(ours) and (best is None or len(ours) > len(best[1])):
                best = (off, ours, resnet)
        if best is None:
            return None
        off, ours, resnet = best
        rest = key[len(ours):]
        if resnet:
            head, _, leaf = rest.rpartition(".")
            if head not in _RESNET_OURS_TO_OFFICIAL:
                return None
            rest = f"{_RESNET_OURS_TO_OFFICIAL[head]}.{leaf}"
        return off + rest


def convert_official_state_dict(
    model_sd: Mapping[str, Any], config: Mapping[str, Any], *, position_net: PositionNetKind | None
) -> dict[str, Any]:
    """Official ``model`` dict → our UNet state dict (same tensors, renamed).

    Raises :class:`GligenEvalError` naming the keys that have no place in our modules.
    """
    mapper = KeyMapper.for_config(config, position_net)
    out: dict[str, Any] = {}
    unknown = []
    for k, v in model_sd.items():
        new = mapper.to_ours(k)
        if new is None:
            unknown.append(k)
        else:
            out[new] = v
    if unknown:
        raise GligenEvalError(
            f"{len(unknown)} official key(s) have no counterpart in our modules, e.g. {unknown[:4]}"
        )
    return out


def to_official(
    unet_or_state: "nn.Module | Mapping[str, Any]", *, config: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Our UNet (or its state dict) → the official ``model`` dict (inverse of the conversion)."""
    if isinstance(unet_or_state, Mapping):
        state = dict(unet_or_state)
        if config is None:
            raise GligenEvalError("to_official(state_dict) needs the UNet config")
    else:
        state = unet_or_state.state_dict()
        config = dict(unet_or_state.config) if config is None else config
    mapper = KeyMapper.for_config(config, position_net_kind(state))
    out: dict[str, Any] = {}
    unknown = []
    for k, v in state.items():
        new = mapper.to_official(k)
        if new is None:
            unknown.append(k)
        else:
            out[new] = v
    if unknown:
        raise GligenEvalError(f"{len(unknown)} key(s) have no official counterpart, e.g. {unknown[:4]}")
    return out
