"""UNet configs and construction: diffusers configs read from official shapes, and empty UNets to fill.

* :func:`unet_config_from_official` reads a diffusers ``UNet2DConditionModel`` config from an official
  ``model`` dict's shapes (what shapes cannot tell comes from a base config);
* :func:`build_unet` builds the UNet (on the meta device by default) with the position net of its
  modality (diffusers' text/text+image projection, :class:`~.keypoint_net.KeypointPositionNet`, or the
  spatial :class:`~.spatial_net.SpatialPositionNet` plus its ``downsample_net``);
* :func:`official_config_dict` describes one of our UNets as an official ``config_dict``.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Mapping

from gligen_eval.errors import GligenEvalError
from gligen_eval.generation.keymap import KeyMapper, PositionNetKind, position_net_kind, spatial_kinds
from gligen_eval.generation.modalities import MODALITIES, ModalitySpec

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

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


def build_position_net(
    kind: PositionNetKind, state: Mapping[str, Any], *, cross_attention_dim: int, resize_input: int | None = None
) -> "nn.Module":
    """An empty position net of ``kind`` shaped like ``state`` (our keys, without ``position_net.``)."""
    if kind in spatial_kinds():
        from gligen_eval.generation.spatial_net import SpatialPositionNet, position_net_params

        params = position_net_params(state)
        if resize_input is not None:
            _check_tokens(resize_input, params["resize_input"])
            params["resize_input"] = int(resize_input)
        return SpatialPositionNet(kind, **params)
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
        kind = (
            "keypoint" if "person_embeddings" in names else "text-image" if "null_image_feature" in names
            else position_net_kind(state) if "convnext_tiny_backbone.downsample_layers.0.0.weight" in names else "text"
        )  # fmt: skip
    mapper = KeyMapper(pairs=[], position_net=kind)
    if kind in spatial_kinds():
        ours = {k[len("position_net."):]: v for k, v in state.items()}
        net = build_position_net(kind, ours, cross_attention_dim=int(ours["linears.4.weight"].shape[0]))
        net.load_state_dict(ours, strict=True)
        return net.eval()
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
    downsampler_state: Mapping[str, Any] | None = None,
    spatial: Mapping[str, Any] | None = None,
    device: "str | torch.device | None" = "meta",
) -> "nn.Module":
    """A diffusers ``UNet2DConditionModel`` for ``config`` with the position net of ``position_net``.

    Keypoint models get a :class:`KeypointPositionNet`; spatial ones a :class:`SpatialPositionNet` and a
    ``downsample_net`` (:class:`SpatialDownsampler`), shaped like ``position_state`` /
    ``downsampler_state`` (our keys, prefixes removed); ``spatial`` may set ``position_resize`` and
    ``downsampler_resize`` (the official configs' ``resize_input``; the downsampler's default is 4× the
    latent size). Built on the meta device by default (no memory, no random init): fill it with
    ``load_state_dict(..., assign=True)``.
    """
    import torch
    from diffusers import UNet2DConditionModel

    ctx = torch.device(device) if device is not None else contextlib.nullcontext()
    dim = int(config["cross_attention_dim"])
    with ctx:
        unet = UNet2DConditionModel(**plain_unet_config(config))
        if position_net in spatial_kinds():
            from gligen_eval.generation.spatial_net import SpatialDownsampler, SpatialPositionNet, downsampler_params

            sp = dict(spatial or {})
            if position_state is None:
                resize = sp.get("position_resize", 448)
                unet.position_net = SpatialPositionNet(position_net, resize_input=resize, out_dim=dim)
            else:
                unet.position_net = build_position_net(
                    position_net, position_state, cross_attention_dim=dim, resize_input=sp.get("position_resize")
                )
            sample = config.get("sample_size", 64)
            resize = sp.get("downsampler_resize") or 4 * int(sample if isinstance(sample, int) else sample[0])
            unet.downsample_net = SpatialDownsampler(
                position_net, resize_input=int(resize), **downsampler_params(downsampler_state or {})
            )
        elif position_net == "keypoint":
            if position_state is None:
                from gligen_eval.generation.keypoint_net import KeypointPositionNet

                unet.position_net = KeypointPositionNet(out_dim=dim)
            else:
                unet.position_net = build_position_net("keypoint", position_state, cross_attention_dim=dim)
        elif position_net is not None and position_state is not None:
            unet.position_net = build_position_net(position_net, position_state, cross_attention_dim=dim)
    return unet


def _check_tokens(resize_input: int, from_weights: int) -> None:
    if int(resize_input) // 32 != from_weights // 32:
        raise GligenEvalError(
            f"the config's resize_input {resize_input} gives {(int(resize_input) // 32) ** 2} tokens, "
            f"but the position net's pos_embedding has {(from_weights // 32) ** 2}"
        )


def spatial_settings(unet: "nn.Module") -> dict[str, int]:
    """``position_resize`` / ``downsampler_resize`` of a spatial UNet ({} for other UNets)."""
    net, down = getattr(unet, "position_net", None), getattr(unet, "downsample_net", None)
    if down is None or not hasattr(net, "resize_input"):
        return {}
    return {"position_resize": int(net.resize_input), "downsampler_resize": int(down.resize_input)}


def load_converted(unet: "nn.Module", state: Mapping[str, Any], *, where: str = "checkpoint") -> None:
    """``unet.load_state_dict(state, strict=True, assign=True)`` with a one-line error on mismatch."""
    try:
        unet.load_state_dict(dict(state), strict=True, assign=True)
    except RuntimeError as e:
        first = [ln.strip() for ln in str(e).splitlines() if ln.strip()][1:3]
        raise GligenEvalError(f"{where}: weights do not fit the UNet: {' '.join(first)[:400]}") from e



def official_config_dict(unet: "nn.Module") -> dict[str, Any]:
    """A plain config in the official layout (``model.params``) describing ``unet``."""
    c = unet.config
    state = unet.state_dict()
    kind = position_net_kind(state)
    spec = _spec_for(unet, kind)
    n = len(c.block_out_channels)
    heads = c.num_attention_heads or c.attention_head_dim
    targets = spec.official_targets if spec is not None and spec.official_targets else (None, None)
    params: dict[str, Any] = {
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
        "grounding_tokenizer": {"target": targets[0]},
    }
    if spec is not None and spec.spatial:
        net, down = unet.position_net, unet.downsample_net
        params["in_channels"] = 4  # the official UNet adds the downsampler's channels itself
        tok = {"resize_input": int(net.resize_input), "out_dim": int(net.out_dim)}
        if net.in_dim is not None:
            tok["in_dim"] = int(net.in_dim)
        params["grounding_tokenizer"]["params"] = tok
        dparams: dict[str, Any] = {"out_dim": int(down.out_dim)}
        if down.layers is not None:  # HED's downsampler has no parameters and a fixed size
            dparams["resize_input"] = int(down.resize_input)
            if down.classes:
                dparams["in_dim"] = int(down.in_dim)
        params["grounding_downsampler"] = {"target": targets[1], "params": dparams}
    return {"model": {"target": "ldm.modules.diffusionmodules.openaimodel.UNetModel", "params": params}}


def _spec_for(unet: "nn.Module", kind: str | None) -> ModalitySpec | None:
    if kind is None:
        return None
    name = getattr(getattr(unet, "position_net", None), "modality", None)
    if name in MODALITIES:
        return MODALITIES[name]
    inpaint = int(unet.config.in_channels) == 9
    for s in MODALITIES.values():
        if s.position_net == kind and s.inpainting == inpaint:
            return s
    return None
