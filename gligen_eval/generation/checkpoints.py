"""Official GLIGEN checkpoints ⇄ our modules (diffusers ``UNet2DConditionModel`` + position nets).

An official checkpoint (``diffusion_pytorch_model.bin`` of ``gligen/<name>`` on the hub) is a dict
``{"model": UNetModel.state_dict(), "text_encoder": ..., "autoencoder": ..., "diffusion": ...,
"config_dict": ...}``. Its ``model`` dict uses the LDM ``openaimodel`` layout; this module maps every
key onto a diffusers UNet state dict, in memory:

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
==============================================  ==================================================

with ``b = (i - 1) // (L + 1)``, ``l = (i - 1) % (L + 1)`` for input blocks and ``b = i // (L + 1)``,
``l = i % (L + 1)`` for output blocks (``L`` = ``layers_per_block``). :func:`to_official` is the
exact inverse.

Adapter vs frozen base follows the official trainer: a key is *adapter* when it belongs to a gated
fuser, the position net or the spatial downsampler, or when it is the input convolution's weight of
a model whose input channels differ from the base's 4 (inpainting: 9, HED: 5, other spatial: 12).
Everything else is the frozen SD-1.x UNet (686 keys; 685 when the input conv weight is adapter).

Loading never runs code from a file (:mod:`gligen_eval.safeload`): ``.safetensors``, or
``torch.load(weights_only=True)``. Official training checkpoints pickle their config as OmegaConf objects; names from a short list of plain-data
config modules (:data:`CONFIG_PLACEHOLDER_MODULES`) are rebuilt as inert placeholders, and any other
global makes the load fail with :class:`~gligen_eval.errors.InputError`.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal, Mapping

from gligen_eval.errors import GligenEvalError, InputError, MissingWeightsError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

PositionNetKind = Literal["text", "text-image", "keypoint"]


@dataclass(frozen=True)
class ModalitySpec:
    """One released GLIGEN modality and how it maps onto our modules."""

    name: str
    attention_type: str
    """diffusers ``UNet2DConditionModel(attention_type=...)``."""
    position_net: str
    """``text``, ``text-image``, ``keypoint``, or a spatial kind (not yet supported)."""
    in_channels: int
    manifest: str
    """The official modality name (``generation_text_box``, ``inpainting_text_box``, ...)."""
    released_checkpoint: str
    supported: bool = True


MODALITIES: dict[str, ModalitySpec] = {
    s.name: s
    for s in (
        ModalitySpec("text-box", "gated", "text", 4, "generation_text_box", "gligen/gligen-generation-text-box"),
        ModalitySpec(
            "text-image-box", "gated-text-image", "text-image", 4, "generation_text_image_box",
            "gligen/gligen-generation-text-image-box",
        ),
        ModalitySpec("keypoint", "gated", "keypoint", 4, "generation_keypoint", "gligen/gligen-generation-keypoint"),
        ModalitySpec(
            "inpaint-text-box", "gated", "text", 9, "inpainting_text_box", "gligen/gligen-inpainting-text-box"
        ),
        ModalitySpec(
            "inpaint-text-image-box", "gated-text-image", "text-image", 9, "inpainting_text_image_box",
            "gligen/gligen-inpainting-text-image-box",
        ),
        ModalitySpec("hed", "gated", "hed", 5, "generation_hed", "gligen/gligen-generation-hed", False),
        ModalitySpec("canny", "gated", "canny", 12, "generation_canny", "gligen/gligen-generation-canny", False),
        ModalitySpec("depth", "gated", "depth", 12, "generation_depth", "gligen/gligen-generation-depth", False),
        ModalitySpec("normal", "gated", "normal", 12, "generation_normal", "gligen/gligen-generation-normal", False),
        ModalitySpec("sem", "gated", "sem", 12, "generation_sem", "gligen/gligen-generation-sem", False),
    )
}
SUPPORTED_MODALITIES = tuple(name for name, s in MODALITIES.items() if s.supported)
BASE_IN_CHANNELS = 4
"""Input channels of the frozen SD-1.x UNet that every GLIGEN adapter is trained on."""

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
# safe reading (one loader for every weight file: gligen_eval.safeload)

from gligen_eval.safeload import (  # noqa: E402  (re-exported: the names other code imports from here)
    CONFIG_PLACEHOLDER_MODULES,
    ConfigPlaceholder,
    _placeholder_allowed,
    _refuse,
    _torch_load_safe,
    read_checkpoint,
    safetensors_metadata,
)


def _plain(obj: Any, depth: int = 0) -> Any:
    """Turn placeholders of pickled OmegaConf containers back into plain dicts/lists (best effort)."""
    if depth > 50:
        return None
    if isinstance(obj, ConfigPlaceholder):
        st = obj.state
        if isinstance(st, Mapping):
            if "_content" in st:
                return _plain(st["_content"], depth + 1)
            if "_val" in st:
                return _plain(st["_val"], depth + 1)
        return None
    if isinstance(obj, Mapping):
        return {k: _plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, depth + 1) for v in obj]
    return obj


def official_config(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The checkpoint's ``config_dict`` as plain data ({} when absent or unreadable)."""
    cfg = _plain(checkpoint.get("config_dict"))
    if isinstance(cfg, dict) and isinstance(cfg.get("_content"), dict):  # vars(OmegaConf container)
        cfg = cfg["_content"]
    return cfg if isinstance(cfg, dict) else {}


def _model_params(cfg: Mapping[str, Any]) -> dict[str, Any]:
    model = cfg.get("model")
    if isinstance(model, Mapping) and isinstance(model.get("params"), Mapping):
        return dict(model["params"])
    return {}


def official_model_dict(checkpoint: Mapping[str, Any], *, path: str | Path | None = None) -> dict[str, Any]:
    """The official UNet state dict inside a checkpoint (``model`` entry, or the dict itself)."""
    sd: Mapping[str, Any] = checkpoint
    for part in ("model", "state_dict"):
        if isinstance(sd.get(part), Mapping):
            sd = sd[part]
            break
    sd = {k: v for k, v in sd.items() if hasattr(v, "shape")}
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    ldm = "model.diffusion_model."
    if any(k.startswith(ldm) for k in sd):  # an LDM / SD .ckpt: keep the UNet only
        sd = {k[len(ldm):]: v for k, v in sd.items() if k.startswith(ldm)}
    if "input_blocks.0.0.weight" not in sd:
        raise InputError(
            "not an official GLIGEN checkpoint: no 'model' dict with 'input_blocks.0.0.weight' "
            "(a diffusers UNet folder or an adapter file is loaded differently)",
            path=None if path is None else str(path),
        )
    return sd


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


def detect_official_modality(model_sd: Mapping[str, Any]) -> str:
    """The modality of an official ``model`` dict, from its keys and input-conv shape.

    Canny and depth checkpoints have identical keys and shapes; they are reported as ``canny``.
    """
    in_ch = int(model_sd["input_blocks.0.0.weight"].shape[1])
    names = {k[len("position_net."):] for k in model_sd if k.startswith("position_net.")}
    if any(n.startswith("convnext_tiny_backbone.") for n in names):
        if "in_conv.weight" in names:
            return "sem"
        if not any(k.startswith("downsample_net.") for k in model_sd):
            return "hed"
        w = model_sd.get("downsample_net.layers.0.weight")
        if w is not None and int(w.shape[1]) == 3:
            return "normal"
        return "canny"
    if "person_embeddings" in names:
        return "keypoint"
    if any(n.startswith("linears_image.") for n in names):
        return "inpaint-text-image-box" if in_ch == 9 else "text-image-box"
    if any(n.startswith("linears.") for n in names):
        return "inpaint-text-box" if in_ch == 9 else "text-box"
    raise GligenEvalError(
        "cannot tell the GLIGEN modality: the checkpoint has no recognised position_net.* keys "
        f"(found {sorted(names)[:5]})"
    )


def position_net_kind(state: Mapping[str, Any], *, prefix: str = "position_net.") -> PositionNetKind | None:
    """Kind of position net in one of *our* state dicts (``None`` when there is none)."""
    if f"{prefix}person_embedding" in state:
        return "keypoint"
    if f"{prefix}linears_image.0.weight" in state:
        return "text-image"
    if f"{prefix}linears.0.weight" in state:
        return "text"
    return None


def modality_of_state(state: Mapping[str, Any]) -> str:
    """Modality name for one of our UNet state dicts (or an adapter state)."""
    kind = position_net_kind(state)
    if kind is None:
        raise GligenEvalError("no position_net.* weights: not a GLIGEN model or adapter")
    w = state.get("conv_in.weight")
    inpaint = w is not None and int(w.shape[1]) == 9
    name = {"text": "text-box", "text-image": "text-image-box", "keypoint": "keypoint"}[kind]
    if inpaint:
        if kind == "keypoint":
            raise GligenEvalError("keypoint grounding with a 9-channel (inpainting) UNet is not a released modality")
        name = "inpaint-" + name
    return name


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
        return name if self.position_net in ("text", "text-image") else None

    def _pos_to_official(self, name: str) -> str | None:
        if self.position_net == "keypoint":
            from gligen_eval.generation.keypoint_net import OURS_TO_OFFICIAL

            return OURS_TO_OFFICIAL.get(name)
        return name if self.position_net in ("text", "text-image") else None

    def to_ours(self, key: str) -> str | None:
        """Our name for an official key (``None`` when it has no counterpart)."""
        if key.startswith("position_net."):
            name = self._pos_to_ours(key[len("position_net."):])
            return None if name is None else "position_net." + name
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


# --------------------------------------------------------------------------------------------
# configs and building


def sd14_unet_config(modality: str = "text-box") -> dict[str, Any]:
    """The UNet config of the released (SD-1.4 based) GLIGEN checkpoints for ``modality``."""
    spec = _spec(modality)
    return {
        "sample_size": 64,
        "in_channels": spec.in_channels,
        "out_channels": 4,
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
        "block_out_channels": [320, 640, 1280, 1280],
        "layers_per_block": 2,
        "cross_attention_dim": 768,
        "transformer_layers_per_block": 1,
        "use_linear_projection": False,
        "attention_head_dim": 8,
        "attention_type": spec.attention_type,
    }


def _spec(modality: str) -> ModalitySpec:
    if modality not in MODALITIES:
        raise GligenEvalError(f"unknown GLIGEN modality {modality!r}; known: {', '.join(MODALITIES)}")
    return MODALITIES[modality]


def plain_unet_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A UNet config as plain, JSON-friendly data (diffusers' private ``_*`` entries dropped)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(config).items() if not k.startswith("_")}


_STRUCTURAL = ("block_out_channels", "layers_per_block", "cross_attention_dim", "down_block_types", "up_block_types")


def unet_config_from_official(
    model_sd: Mapping[str, Any],
    *,
    modality: str | None,
    base_config: Mapping[str, Any] | None = None,
    num_heads: int | None = None,
) -> dict[str, Any]:
    """A diffusers UNet config for an official ``model`` dict, read from its shapes.

    What shapes cannot tell (head count, sample size, norm groups) comes from ``base_config``
    (a base UNet's config), then ``num_heads``, then the SD-1.x defaults (8 heads, 64 latent px).
    ``modality=None`` reads a plain SD UNet in the LDM layout (``attention_type="default"``).
    """
    if modality is not None:
        attention_type = _spec(modality).attention_type
    else:  # a plain SD UNet (or a gated one without a recognised position net)
        attention_type = "gated" if any(".fuser." in k for k in model_sd) else "default"
    w = model_sd["input_blocks.0.0.weight"]
    in_ch = int(w.shape[1])
    ids = {int(k.split(".")[1]) for k in model_sd if k.startswith("input_blocks.")}
    ops = {int(k.split(".")[1]) for k in model_sd if k.startswith("input_blocks.") and ".0.op." in k}
    n = len(ops) + 1
    if (len(ids) - 1 - len(ops)) % n:
        raise GligenEvalError("official UNet layout: input blocks do not split evenly into resolution levels")
    L = (len(ids) - 1 - len(ops)) // n
    block_out, down, up = [], [], []
    for b in range(n):
        i = 1 + b * (L + 1)
        block_out.append(int(model_sd[f"input_blocks.{i}.0.out_layers.3.weight"].shape[0]))
        down.append("CrossAttnDownBlock2D" if f"input_blocks.{i}.1.norm.weight" in model_sd else "DownBlock2D")
        up.append("CrossAttnUpBlock2D" if f"output_blocks.{b * (L + 1)}.1.norm.weight" in model_sd else "UpBlock2D")
    to_k = next((k for k in model_sd if k.endswith("attn2.to_k.weight")), None)
    if to_k is None:
        raise GligenEvalError("official UNet layout: no cross-attention (attn2) weights")
    cross = int(model_sd[to_k].shape[1])
    attn_prefix = to_k.split("transformer_blocks.")[0]
    depth = len({k[len(attn_prefix):].split(".")[1] for k in model_sd if k.startswith(attn_prefix + "transformer_blocks.")})
    linear_proj = len(model_sd[attn_prefix + "proj_in.weight"].shape) == 2
    inferred = {
        "in_channels": in_ch,
        "out_channels": int(model_sd["out.2.weight"].shape[0]),
        "down_block_types": down,
        "up_block_types": up,
        "block_out_channels": block_out,
        "layers_per_block": L,
        "cross_attention_dim": cross,
        "transformer_layers_per_block": depth,
        "use_linear_projection": linear_proj,
        "attention_type": attention_type,
    }
    if base_config is not None:
        config = plain_unet_config(base_config)
        for key in _STRUCTURAL:
            if key in config and _norm(config[key]) != _norm(inferred[key]):
                raise GligenEvalError(
                    f"the checkpoint does not fit the base UNet: {key} is {inferred[key]} in the checkpoint "
                    f"but {config[key]} in the base"
                )
        config.update(inferred)
        return config
    config = {"sample_size": 64, "attention_head_dim": num_heads or 8}
    config.update(inferred)
    return config


def _norm(v: Any) -> Any:
    return list(v) if isinstance(v, (list, tuple)) else v


def build_position_net(kind: PositionNetKind, state: Mapping[str, Any], *, cross_attention_dim: int) -> "nn.Module":
    """An empty position net of ``kind`` shaped like ``state`` (our keys, without ``position_net.``)."""
    if kind == "keypoint":
        from gligen_eval.generation.keypoint_net import KeypointPositionNet

        return KeypointPositionNet(
            out_dim=int(state["person_embedding"].shape[1]),
            max_persons=int(state["person_embedding"].shape[0]),
            num_keypoints=int(state["keypoint_embedding"].shape[0]),
            fourier_freqs=int(state["null_position_feature"].shape[0]) // 4,
            hidden_dim=int(state["linears.0.weight"].shape[0]),
        )
    from diffusers.models.embeddings import GLIGENTextBoundingboxProjection

    null = "null_positive_feature" if kind == "text" else "null_text_feature"
    return GLIGENTextBoundingboxProjection(
        positive_len=int(state[null].shape[0]),
        out_dim=cross_attention_dim,
        feature_type="text-only" if kind == "text" else "text-image",
        fourier_freqs=int(state["null_position_feature"].shape[0]) // 8,
    )


def position_net_from_official(official_state: Mapping[str, Any], *, kind: PositionNetKind | None = None) -> "nn.Module":
    """A position net loaded from official ``position_net.*`` weights (prefix optional).

    Uses the same key conversion as a full checkpoint.
    """
    state = {k if k.startswith("position_net.") else "position_net." + k: v for k, v in official_state.items()}
    if kind is None:
        names = {k[len("position_net."):] for k in state}
        kind = "keypoint" if "person_embeddings" in names else "text-image" if "null_image_feature" in names else "text"
    mapper = KeyMapper(pairs=[], position_net=kind)
    ours = {}
    for k, v in state.items():
        new = mapper.to_ours(k)
        if new is None:
            raise GligenEvalError(f"official position net key {k!r} has no counterpart in our {kind} position net")
        ours[new[len("position_net."):]] = v
    out_dim = int(ours["linears.4.weight" if kind != "text-image" else "linears_text.4.weight"].shape[0])
    net = build_position_net(kind, ours, cross_attention_dim=out_dim)
    net.load_state_dict(ours, strict=True)
    return net.eval()


def build_unet(
    config: Mapping[str, Any],
    *,
    position_net: PositionNetKind | None = None,
    position_state: Mapping[str, Any] | None = None,
    device: "str | torch.device | None" = "meta",
) -> "nn.Module":
    """A diffusers ``UNet2DConditionModel`` for ``config``; keypoint models get a :class:`KeypointPositionNet`.

    Built on the meta device by default (no memory, no random init): fill it with
    ``load_state_dict(..., assign=True)``.
    """
    import torch
    from diffusers import UNet2DConditionModel

    ctx = torch.device(device) if device is not None else contextlib.nullcontext()
    with ctx:
        unet = UNet2DConditionModel(**plain_unet_config(config))
        if position_net == "keypoint":
            if position_state is None:
                from gligen_eval.generation.keypoint_net import KeypointPositionNet

                unet.position_net = KeypointPositionNet(out_dim=int(config["cross_attention_dim"]))
            else:
                unet.position_net = build_position_net(
                    "keypoint", position_state, cross_attention_dim=int(config["cross_attention_dim"])
                )
        elif position_net is not None and position_state is not None:
            unet.position_net = build_position_net(
                position_net, position_state, cross_attention_dim=int(config["cross_attention_dim"])
            )
    return unet


def load_converted(unet: "nn.Module", state: Mapping[str, Any], *, where: str = "checkpoint") -> None:
    """``unet.load_state_dict(state, strict=True, assign=True)`` with a one-line error on mismatch."""
    try:
        unet.load_state_dict(dict(state), strict=True, assign=True)
    except RuntimeError as e:
        first = [ln.strip() for ln in str(e).splitlines() if ln.strip()][1:3]
        raise GligenEvalError(f"{where}: weights do not fit the UNet: {' '.join(first)[:400]}") from e


# --------------------------------------------------------------------------------------------
# loading and saving official checkpoints


@dataclass
class CheckpointInfo:
    """What :func:`load_official_unet` found (JSON-friendly through :meth:`to_dict`)."""

    path: str
    modality: str
    num_keys: int
    adapter_keys: int
    base_keys: int
    parts: list[str]
    config: dict[str, Any]
    groups: dict[str, int] = field(default_factory=dict)
    official_config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _base_config(base: Any) -> dict[str, Any] | None:
    if base is None:
        return None
    if isinstance(base, Mapping):
        return dict(base)
    if hasattr(base, "config"):
        return dict(base.config)
    p = Path(base)
    for cand in (p / "unet" / "config.json", p / "config.json", p):
        if cand.is_file() and cand.suffix == ".json":
            return json.loads(cand.read_text())
    raise MissingWeightsError(f"{p}: no UNet config.json found (expected a diffusers folder or its unet/)")


def load_official_unet(
    path: str | Path,
    *,
    base: Any = None,
    modality: str | None = None,
    device: "str | torch.device | None" = None,
    dtype: "torch.dtype | None" = None,
) -> tuple["nn.Module", "nn.Module", CheckpointInfo]:
    """Load an official GLIGEN checkpoint as ``(unet, position_net, info)``.

    ``unet`` is a diffusers ``UNet2DConditionModel`` with gated attention whose ``position_net`` is
    ``position_net`` (diffusers' text/text+image projection, or :class:`KeypointPositionNet`).
    The modality is detected from the keys (``modality=`` asserts it). ``base`` (a UNet, its config,
    or a diffusers folder) supplies what shapes cannot tell, such as the head count. Spatial
    modalities (hed, canny, depth, normal, sem) are recognised but not yet supported.
    """
    p = Path(path)
    ckpt = read_checkpoint(p)
    model_sd = official_model_dict(ckpt, path=p)
    detected = detect_official_modality(model_sd)
    if modality is not None and _spec(modality).name != detected:
        raise InputError(f"expected a {modality} checkpoint, but its weights are {detected}", path=str(p))
    spec = MODALITIES[detected]
    in_ch = int(model_sd["input_blocks.0.0.weight"].shape[1])
    groups: dict[str, int] = {}
    for k in model_sd:
        g = classify_official_key(k, in_channels=in_ch)
        groups[g] = groups.get(g, 0) + 1
    if not spec.supported:
        label = "canny or depth (identical layouts)" if detected == "canny" else detected
        raise GligenEvalError(
            f"{p}: spatial modality '{label}' is not yet supported "
            f"(keys: {', '.join(f'{g} {n}' for g, n in sorted(groups.items()))}); "
            "its base and fuser weights are understood, its ConvNeXt position net is not"
        )
    cfg = official_config(ckpt)
    heads = _model_params(cfg).get("num_heads")
    config = unet_config_from_official(
        model_sd, modality=detected, base_config=_base_config(base), num_heads=heads if isinstance(heads, int) else None
    )
    kind: PositionNetKind = spec.position_net  # type: ignore[assignment]
    state = convert_official_state_dict(model_sd, config, position_net=kind)
    pos_state = {k[len("position_net."):]: v for k, v in state.items() if k.startswith("position_net.")}
    unet = build_unet(config, position_net=kind, position_state=pos_state)
    load_converted(unet, state, where=str(p))
    if device is not None or dtype is not None:
        unet = unet.to(device=device, dtype=dtype)
    unet.eval()
    adapter = sum(v for g, v in groups.items() if g != "base")
    info = CheckpointInfo(
        path=str(p),
        modality=detected,
        num_keys=len(model_sd),
        adapter_keys=adapter,
        base_keys=groups.get("base", 0),
        parts=sorted(k for k, v in ckpt.items() if k not in ("model", "config_dict") and isinstance(v, Mapping)),
        config=plain_unet_config(unet.config),
        groups=groups,
        official_config=_jsonable(cfg),
    )
    return unet, unet.position_net, info


def _jsonable(obj: Any) -> Any:
    try:
        json.dumps(obj)
        return obj
    except (TypeError, ValueError):
        if isinstance(obj, Mapping):
            return {str(k): _jsonable(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [_jsonable(v) for v in obj]
        return repr(obj)


def official_config_dict(unet: "nn.Module") -> dict[str, Any]:
    """A plain config in the official layout (``model.params``) describing ``unet``."""
    c = unet.config
    state = unet.state_dict()
    kind = position_net_kind(state)
    n = len(c.block_out_channels)
    heads = c.num_attention_heads or c.attention_head_dim
    tokenizer = {
        "text": "ldm.modules.diffusionmodules.text_grounding_net.PositionNet",
        "text-image": "ldm.modules.diffusionmodules.text_image_grounding_net.PositionNet",
        "keypoint": "ldm.modules.diffusionmodules.keypoint_grounding_net.PositionNet",
    }.get(kind or "", None)
    return {
        "model": {
            "target": "ldm.modules.diffusionmodules.openaimodel.UNetModel",
            "params": {
                "image_size": int(c.sample_size) if isinstance(c.sample_size, int) else list(c.sample_size),
                "in_channels": int(c.in_channels),
                "out_channels": int(c.out_channels),
                "model_channels": int(c.block_out_channels[0]),
                "channel_mult": [int(ch) // int(c.block_out_channels[0]) for ch in c.block_out_channels],
                "num_res_blocks": int(c.layers_per_block),
                "attention_resolutions": [2**i for i, t in enumerate(c.down_block_types) if "CrossAttn" in t][:n],
                "num_heads": int(heads) if isinstance(heads, int) else list(heads),
                "context_dim": int(c.cross_attention_dim),
                "inpaint_mode": int(c.in_channels) == 9,
                "grounding_tokenizer": {"target": tokenizer},
            },
        }
    }


def save_official(unet: "nn.Module", path: str | Path, *, parts: Mapping[str, Mapping[str, Any]] | None = None) -> Path:
    """Write ``unet`` as an official-layout checkpoint (``{"model": ..., "config_dict": ...}``).

    ``.safetensors`` holds the flat ``model`` dict only; other suffixes are ``torch.save`` of plain
    dicts of tensors (readable with ``weights_only=True``). ``parts`` adds e.g. ``text_encoder``.
    """
    import torch

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    model = {k: v.detach().cpu().contiguous() for k, v in to_official(unet).items()}
    if p.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(model, str(p), metadata={"format": "gligen-official"})
        return p
    ckpt: dict[str, Any] = {"model": model, "config_dict": official_config_dict(unet)}
    for name, part in (parts or {}).items():
        ckpt[name] = dict(part)
    torch.save(ckpt, str(p))
    return p
