"""Official GLIGEN checkpoints: safe reading, loading into our modules, saving, the reference forward.

An official checkpoint (``diffusion_pytorch_model.bin`` of ``gligen/<name>`` on the hub) is a dict
``{"model": UNetModel.state_dict(), "text_encoder": ..., "autoencoder": ..., "diffusion": ...,
"config_dict": ...}``. Its ``model`` dict uses the LDM ``openaimodel`` layout; it is converted in memory
onto a diffusers UNet (the key mapping is in :mod:`~gligen_eval.generation.keymap`, configs and
construction in :mod:`~gligen_eval.generation.unet_build`; both are re-exported here).

Loading never runs code from a file (:mod:`gligen_eval.safeload`): ``.safetensors``, or
``torch.load(weights_only=True)``. Official training checkpoints pickle their config as OmegaConf objects; names from a short list of plain-data
config modules (:data:`CONFIG_PLACEHOLDER_MODULES`) are rebuilt as inert placeholders, and any other
global makes the load fail with :class:`~gligen_eval.errors.InputError`.

:func:`official_forward` runs one of our UNets on the official model's input dict (tests drive it with
outputs of the official code; the sampler runs the same :func:`~.unet_forward.grounded_forward`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from gligen_eval.errors import GligenEvalError, InputError, MissingWeightsError
from gligen_eval.generation.keymap import (  # noqa: F401  (re-exported)
    BASE_IN_CHANNELS,
    spatial_kinds,
    KeyMapper,
    PositionNetKind,
    classify_key,
    classify_official_key,
    convert_official_state_dict,
    detect_official_modality,
    modality_from_config,
    modality_of_state,
    position_net_kind,
    split_official_keys,
    to_official,
)
from gligen_eval.generation.modalities import MODALITIES, ModalitySpec, compatible  # noqa: F401
from gligen_eval.generation.unet_build import (  # noqa: F401  (re-exported)
    _spec,
    build_position_net,
    build_unet,
    load_converted,
    official_config_dict,
    plain_unet_config,
    position_net_from_official,
    sd14_unet_config,
    spatial_settings,
    unet_config_from_official,
)

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

SUPPORTED_MODALITIES = tuple(MODALITIES)
_FORWARD = ("official_forward", "grounded_forward", "base_conv_in", "set_base_conv_in")


def __getattr__(name: str) -> Any:  # the reference forward imports torch: only when asked for
    if name in _FORWARD:
        from gligen_eval.generation import unet_forward

        return getattr(unet_forward, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    ``position_net`` (diffusers' text/text+image projection, :class:`KeypointPositionNet`, or for the
    spatial modalities :class:`SpatialPositionNet`, with the map downsampler as ``unet.downsample_net``).
    The modality is detected from the keys, and canny vs depth from the ``config_dict``
    (``modality=`` asserts it). ``base`` (a UNet, its config, or a diffusers folder) supplies what
    shapes cannot tell, such as the head count; for spatial models a base UNet or folder also supplies
    its own 4-channel first conv, which the α = 0 steps use (:func:`~.unet_forward.set_base_conv_in`).
    """
    p = Path(path)
    ckpt = read_checkpoint(p)
    model_sd = official_model_dict(ckpt, path=p)
    detected = detect_official_modality(model_sd)
    cfg = official_config(ckpt)
    named = modality_from_config(cfg)
    if named is not None and compatible(named, detected):
        detected = named  # canny and depth share one layout; the config names the tokenizer
    if modality is not None:
        if not compatible(_spec(modality).name, detected):
            raise InputError(f"expected a {modality} checkpoint, but its weights are {detected}", path=str(p))
        detected = modality
    spec = MODALITIES[detected]
    in_ch = int(model_sd["input_blocks.0.0.weight"].shape[1])
    groups: dict[str, int] = {}
    for k in model_sd:
        g = classify_official_key(k, in_channels=in_ch)
        groups[g] = groups.get(g, 0) + 1
    params = _model_params(cfg)
    heads = params.get("num_heads")
    config = unet_config_from_official(
        model_sd, modality=detected, base_config=_base_config(base), num_heads=heads if isinstance(heads, int) else None
    )
    kind: PositionNetKind = spec.position_net
    state = convert_official_state_dict(model_sd, config, position_net=kind)
    pos_state = {k[len("position_net."):]: v for k, v in state.items() if k.startswith("position_net.")}
    down_state = {k[len("downsample_net."):]: v for k, v in state.items() if k.startswith("downsample_net.")}
    unet = build_unet(
        config, position_net=kind, position_state=pos_state, downsampler_state=down_state,
        spatial=_spatial_config(params) if spec.spatial else None,
    )  # fmt: skip
    load_converted(unet, state, where=str(p))
    if spec.spatial:
        conv = _base_first_conv(base)
        if conv is not None:
            from gligen_eval.generation.unet_forward import set_base_conv_in

            set_base_conv_in(unet, *conv)
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


def _spatial_config(params: Mapping[str, Any]) -> dict[str, int]:
    """``resize_input`` of the position net and the downsampler from an official config's params."""
    out: dict[str, int] = {}
    for key, name in (("grounding_tokenizer", "position_resize"), ("grounding_downsampler", "downsampler_resize")):
        entry = params.get(key)
        value = ((entry or {}).get("params") or {}).get("resize_input") if isinstance(entry, Mapping) else None
        if isinstance(value, int):
            out[name] = value
    return out


def _base_first_conv(base: Any) -> "tuple[torch.Tensor, torch.Tensor] | None":
    """The 4-channel first conv (weight, bias) of a base UNet, or of a diffusers folder's UNet weights."""
    conv = getattr(base, "conv_in", None)
    if conv is not None:
        return (conv.weight.detach(), conv.bias.detach()) if int(conv.weight.shape[1]) == BASE_IN_CHANNELS else None
    if base is None or isinstance(base, Mapping):
        return None
    p = Path(base)
    for sub in ("unet", "."):
        f = p / sub / "diffusion_pytorch_model.safetensors"
        if f.is_file():
            from safetensors import safe_open

            with safe_open(str(f), framework="pt") as st:
                return st.get_tensor("conv_in.weight"), st.get_tensor("conv_in.bias")
        if (p / sub / "diffusion_pytorch_model.bin").is_file():
            sd = read_checkpoint(p / sub / "diffusion_pytorch_model.bin")
            return sd["conv_in.weight"], sd["conv_in.bias"]
    return None


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