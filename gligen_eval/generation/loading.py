"""Load generation components: ``tiny``, a local diffusers folder, or a hub id from the local cache.

:func:`load_components` returns a :class:`Components` mapping with ``unet``, ``vae``,
``text_encoder``, ``tokenizer`` and ``scheduler`` (plus ``image_encoder``, ``processor`` and
``image_project`` for text+image grounding), remembers where each part came from
(:func:`describe` turns that, plus a content fingerprint of every model, into a manifest entry),
and knows its grounding modality (``Components.modality``), read from the UNet: the position net
type and the input channels (:func:`~gligen_eval.generation.grounding.detect_modality`).

The network is never used: a hub id is looked up in the local Hugging Face cache only
(``local_files_only=True``), and when it is not there a :class:`~gligen_eval.errors.MissingWeightsError`
says what is missing and how to get it, at once.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Mapping

from gligen_eval.errors import ConfigError, MissingWeightsError
from gligen_eval.hashing import tensors_sha256

PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
IMAGE_PARTS = ("image_encoder", "processor", "image_project")
"""The CLIP vision parts of text+image grounding (diffusers' ``StableDiffusionGLIGENTextImagePipeline`` names)."""
MODEL_PARTS = ("unet", "vae", "text_encoder", "image_encoder", "image_project")
"""The parts that are torch modules."""
TINY_GROUNDING_OPTIONS = {"reference_images": "synthetic", "input_images": "synthetic"}
"""Grounding defaults of ``load_components("tiny")``: tiny runs are offline smoke runs, usually on the
bundled sample, which has neither reference images nor photos to inpaint, so objects without a
reference image get a drawn one and inpainting starts from a drawn background
(:mod:`gligen_eval.generation.modalities.images`). Explicit grounding options override them."""
TINY_SPATIAL_OPTIONS = {"map_provider": "synthetic"}
"""Grounding defaults of tiny spatial models (a tiny model, or an official checkpoint on the tiny base): a
condition map drawn from each layout's boxes (:mod:`gligen_eval.generation.modalities.spatial`)."""


def unet_has_downsampler(unet: Any) -> bool:
    return getattr(unet, "downsample_net", None) is not None
CHECKPOINT_SUFFIXES = (".bin", ".pth", ".pt", ".ckpt", ".safetensors")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_DTYPES = {
    "float32": "float32", "fp32": "float32",
    "float16": "float16", "fp16": "float16",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
}  # fmt: skip


class Components(dict):
    """The components of a grounded diffusion model; ``sources`` says where each part came from."""

    def __init__(self, parts: Mapping[str, Any], sources: Mapping[str, str], name: str, modality: str | None = None):
        super().__init__(parts)
        self.sources = dict(sources)
        self.name = name
        self.modality = modality
        """The grounding modality (a name of :data:`gligen_eval.generation.modalities.MODALITIES`)."""
        self.grounding_options: dict[str, Any] = {}
        """Defaults for the grounding tokenizer's options (see ``grounding.default_grounding``)."""


def resolve_dtype(dtype: Any):
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    key = _DTYPES.get(str(dtype).replace("torch.", ""))
    if key is None:
        raise ConfigError(f"unknown dtype {dtype!r} (use float32, float16 or bfloat16)")
    return getattr(torch, key)


def load_components(
    name: str,
    *,
    device: Any = "cpu",
    dtype: Any = "float32",
    tiny_seed: int = 0,
    sample_size: int | None = None,
    base: str | None = None,
    modality: str | None = None,
    adapter: str | None = None,
) -> Components:
    """Components for ``name``:

    * ``"tiny"``: tiny random components built in code (``tiny_seed``; ``sample_size`` is the
      image size in pixels, default 64) for ``modality`` (default ``text-box``);
    * a local diffusers folder (with ``model_index.json``; a ``StableDiffusionGLIGENTextImagePipeline``
      folder brings its CLIP vision parts; a keypoint UNet saved by :func:`save_components` loads too);
    * a hub id such as ``masterful/gligen-1-4-generation-text-box``,
      ``masterful/gligen-1-4-inpainting-text-box``, ``anhnct/Gligen_Text_Image`` or
      ``anhnct/Gligen_Inpainting_Text_Image``, from the local Hugging Face cache only;
    * an official GLIGEN checkpoint file (``.bin``, ``.pth``, ``.pt``, ``.ckpt``, ``.safetensors``;
      converted by :func:`gligen_eval.generation.checkpoints.load_official_unet`) of any supported
      modality: it supplies the UNet, and ``base`` (a diffusers folder, a cached hub id, or ``"tiny"``)
      the VAE, text encoder, tokenizer and scheduler, and for text+image checkpoints the CLIP vision
      parts (``base`` must then be a text+image pipeline folder, or ``"tiny"``).

    For real weights the modality is read from the UNet; ``modality``, when given, must agree
    (a :class:`~gligen_eval.errors.ConfigError` otherwise).
    """
    from gligen_eval.devices import resolve_device

    dev = resolve_device(device)
    dt = resolve_dtype(dtype)
    if modality is not None:
        _check_modality(modality)
    if name == "tiny":
        from gligen_eval.generation.tiny import tiny_components

        size = 64 if sample_size is None else int(sample_size)
        kind = modality or "text-box"
        parts = tiny_components(seed=tiny_seed, sample_size=size, modality=kind)
        origin = f"tiny random components (seed={tiny_seed}, sample_size={size}, modality={kind})"
        comps = Components(parts, {p: origin for p in parts}, name)
        comps.grounding_options = dict(TINY_GROUNDING_OPTIONS)
        if unet_has_downsampler(parts["unet"]):
            comps.grounding_options.update(TINY_SPATIAL_OPTIONS)
    elif Path(name).expanduser().is_file() and Path(name).suffix in CHECKPOINT_SUFFIXES:
        comps = _load_official(Path(name).expanduser(), base, tiny_seed=tiny_seed, sample_size=sample_size)
    else:
        folder = _resolve_folder(name)
        comps = _load_folder(folder, name, optional=IMAGE_PARTS)
    if adapter is not None:
        comps = _with_adapter(comps, adapter)
    comps.modality = _detected_modality(comps, name, modality)
    for key in MODEL_PARTS:
        if comps.get(key) is not None:
            comps[key] = place(comps[key], dev, dt)
            comps[key].requires_grad_(False)
    return comps


def _with_adapter(comps: "Components", adapter: str) -> "Components":
    """Plug an adapter file (gated layers + position net, :func:`~gligen_eval.generation.adapters.save_adapter`)
    into the loaded UNet: a plain Stable Diffusion UNet becomes a GLIGEN UNet on the same frozen weights."""
    from gligen_eval.generation.adapters import apply_adapter

    path = Path(adapter).expanduser()
    if not path.is_file():
        raise MissingWeightsError(f"adapter file not found: {path} (model.adapter takes a .safetensors adapter file)")
    comps["unet"] = apply_adapter(comps["unet"], path)
    comps.sources["unet"] = f"{comps.sources.get('unet', 'unet')} + adapter {path}"
    return comps


def _check_modality(modality: str) -> None:
    from gligen_eval.generation.modalities import MODALITIES

    if modality not in MODALITIES:
        raise ConfigError(f"unknown model.modality {modality!r} (known: {', '.join(MODALITIES)})")


def _detected_modality(comps: "Components", name: str, wanted: str | None) -> str:
    from gligen_eval.errors import GligenEvalError
    from gligen_eval.generation.grounding import detect_modality

    try:
        found = detect_modality(comps)
    except ValueError as e:
        raise GligenEvalError(f"model '{name}': {e}") from e
    if wanted is not None and wanted != found:
        from gligen_eval.generation.modalities import compatible

        if compatible(wanted, found) and hasattr(comps["unet"].position_net, "modality"):
            comps["unet"].position_net.modality = wanted  # canny and depth weights look alike
            return wanted
        raise ConfigError(f"model.modality is '{wanted}' but model '{name}' is a {found} model")
    from gligen_eval.generation.modalities import MODALITIES

    if MODALITIES[found].position_net == "text-image":
        missing = [p for p in IMAGE_PARTS if comps.get(p) is None]
        if missing:
            raise MissingWeightsError(
                f"model '{name}' is a {found} model but has no {', '.join(missing)} (the CLIP vision encoder of "
                "image grounding); use a diffusers StableDiffusionGLIGENTextImagePipeline folder "
                "(e.g. anhnct/Gligen_Text_Image) as the model, or as model.base of an official checkpoint"
            )
    return found


def place(module: Any, device: Any, dtype: Any) -> Any:
    """``module`` on ``device`` in ``dtype``, in eval mode (casts only when the dtype differs)."""
    if getattr(module, "dtype", None) != dtype:
        module = module.to(dtype=dtype)
    return module.to(device).eval()


def _how_to_get(name: str) -> str:
    return (
        f"download it with `huggingface-cli download {name}` (or `hf download {name}`) where there is network, "
        f"or set model.name to a local diffusers folder"
    )


def _resolve_folder(name: str) -> Path:
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConfigError(
                f"model '{name}' is a file; expected 'tiny', a diffusers folder (with model_index.json) or a hub id"
            )
        if not (path / "model_index.json").is_file():
            raise MissingWeightsError(
                f"model folder '{name}' has no model_index.json: it is not a diffusers pipeline folder "
                f"(expected subfolders {', '.join(PARTS)})"
            )
        return path
    if not _HUB_ID.match(name):
        raise MissingWeightsError(
            f"model '{name}' not found: no such folder, and it is not a hub id (owner/name). "
            f"Use 'tiny', a local diffusers folder, or a hub id in the local Hugging Face cache"
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot = Path(snapshot_download(name, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError) as e:
        from huggingface_hub import constants

        raise MissingWeightsError(
            f"model '{name}' is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}); {_how_to_get(name)}"
        ) from e
    if not (snapshot / "model_index.json").is_file():
        raise MissingWeightsError(
            f"model '{name}' in the local cache ({snapshot}) has no model_index.json (incomplete download?); "
            f"{_how_to_get(name)}"
        )
    return snapshot


def _load_official(path: Path, base: str | None, *, tiny_seed: int, sample_size: int | None) -> Components:
    from gligen_eval.generation.checkpoints import load_official_unet

    if base is None:
        raise MissingWeightsError(
            f"'{path}' is an official GLIGEN checkpoint: it supplies the UNet only; set model.base to the "
            f"SD-1.4 diffusers folder (or cached hub id, e.g. CompVis/stable-diffusion-v1-4) for the VAE, "
            f"text encoder, tokenizer and scheduler"
        )
    if base == "tiny":
        from gligen_eval.generation.tiny import tiny_components

        size = 64 if sample_size is None else int(sample_size)
        parts = tiny_components(seed=tiny_seed, sample_size=size)
        origin = f"tiny random components (seed={tiny_seed}, sample_size={size})"
        comps = Components(parts, {p: origin for p in PARTS}, str(path))
        base_config: Any = parts["unet"]  # its config, and its first conv for a spatial model's α = 0 steps
    else:
        folder = _resolve_folder(base)
        comps = _load_folder(
            folder, base, wanted=("vae", "text_encoder", "tokenizer", "scheduler"), optional=IMAGE_PARTS
        )
        comps.name = str(path)
        base_config = folder
    unet, _, info = load_official_unet(path, base=base_config)
    comps["unet"] = unet
    if base == "tiny" and unet_has_downsampler(unet):
        comps.grounding_options = dict(TINY_SPATIAL_OPTIONS)
    comps.sources["unet"] = f"{path} (official GLIGEN checkpoint, {info.modality})"
    from gligen_eval.generation.modalities import MODALITIES

    if base == "tiny" and MODALITIES[info.modality].position_net == "text-image":
        from gligen_eval.generation.tiny import tiny_image_parts

        comps.update(tiny_image_parts(tiny_seed))
        comps.sources.update({p: f"tiny random CLIP vision parts (seed={tiny_seed})" for p in IMAGE_PARTS})
    return comps


def _load_folder(
    folder: Path, name: str, wanted: tuple[str, ...] = PARTS, optional: tuple[str, ...] = ()
) -> Components:
    """``wanted`` parts (all required) and those of ``optional`` that ``model_index.json`` names."""
    import diffusers
    import transformers

    index = json.loads((folder / "model_index.json").read_text())
    extra = tuple(p for p in optional if p not in wanted and (index.get(p) or [None, None])[1] is not None)
    missing = [p for p in wanted + extra if not (folder / p).is_dir()]
    if missing:
        raise MissingWeightsError(
            f"model '{name}' ({folder}) lacks the subfolder(s) {', '.join(missing)}; {_how_to_get(name)}"
        )
    loaded: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for part in wanted + extra:
        library, cls_name = (index.get(part) or [None, None])[:2]
        if cls_name is None:
            cls_name = {"unet": "UNet2DConditionModel", "vae": "AutoencoderKL", "text_encoder": "CLIPTextModel",
                        "tokenizer": "CLIPTokenizer", "scheduler": "PNDMScheduler"}[part]
            library = "transformers" if part in ("text_encoder", "tokenizer") else "diffusers"
        module = transformers if library == "transformers" else diffusers
        cls = getattr(module, cls_name, None)
        if cls is None:
            raise ConfigError(f"model '{name}': {part} class {library}.{cls_name} is not available here")
        sub = folder / part
        if sub.is_dir():
            from gligen_eval.safeload import check_model_folder

            check_model_folder(sub)  # a .bin beyond tensors is refused here (diffusers reads it weights_only too)
        try:
            if part == "scheduler":
                obj = cls.from_pretrained(str(sub))
            elif part == "unet" and _is_custom_unet(sub):
                obj = _load_custom_unet(sub)
            else:
                obj = cls.from_pretrained(str(sub), local_files_only=True)
        except (OSError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise MissingWeightsError(
                f"model '{name}': cannot load {part} from {sub}: {first}; {_how_to_get(name)}"
            ) from e
        loaded[part] = obj
        sources[part] = f"{name}:{part} ({cls_name} from {sub})"
    n_tokens = len(loaded["tokenizer"])
    if n_tokens <= 2:
        raise MissingWeightsError(
            f"model '{name}': the tokenizer in {folder / 'tokenizer'} has no vocabulary ({n_tokens} tokens); "
            f"{_how_to_get(name)}"
        )
    return Components(loaded, sources, name)


SPATIAL_SIDECAR = "gligen_spatial.json"
"""What a spatial UNet folder needs beside diffusers' files: the modality (canny and depth weights look
alike), the resize sizes of the position net and the downsampler, and the base first conv of the
α = 0 steps (``base_conv_in.safetensors``)."""


def _is_custom_unet(sub: Path) -> bool:
    """Whether a diffusers UNet folder holds a position net diffusers cannot build (keypoint, spatial)."""
    f = sub / "diffusion_pytorch_model.safetensors"
    if not f.is_file():
        return False
    from gligen_eval.safeload import safetensors_keys

    return "position_net.person_embedding" in set(safetensors_keys(f)) or (sub / SPATIAL_SIDECAR).is_file()


def _load_custom_unet(sub: Path) -> Any:
    """A gated UNet with our keypoint or spatial position net from a diffusers folder."""
    from gligen_eval.generation.checkpoints import build_unet, load_converted, read_checkpoint

    config = json.loads((sub / "config.json").read_text())
    state = read_checkpoint(sub / "diffusion_pytorch_model.safetensors")
    pos = {k[len("position_net."):]: v for k, v in state.items() if k.startswith("position_net.")}
    side = sub / SPATIAL_SIDECAR
    if not side.is_file():
        unet = build_unet(config, position_net="keypoint", position_state=pos)
        load_converted(unet, state, where=str(sub))
        return unet.eval()
    info = json.loads(side.read_text())
    down = {k[len("downsample_net."):]: v for k, v in state.items() if k.startswith("downsample_net.")}
    unet = build_unet(config, position_net=info["modality"], position_state=pos, downsampler_state=down, spatial=info)
    load_converted(unet, state, where=str(sub))
    conv = sub / "base_conv_in.safetensors"
    if conv.is_file():
        from gligen_eval.generation.unet_forward import set_base_conv_in

        c = read_checkpoint(conv)
        set_base_conv_in(unet, c["weight"], c["bias"])
    return unet.eval()


def _save_spatial_sidecar(unet: Any, sub: Path) -> None:
    from gligen_eval.generation.checkpoints import spatial_settings
    from gligen_eval.generation.unet_forward import base_conv_in

    info = {"modality": unet.position_net.modality, **spatial_settings(unet)}
    (sub / SPATIAL_SIDECAR).write_text(json.dumps(info, indent=2) + "\n")
    conv = base_conv_in(unet)
    if conv is not None:
        from safetensors.torch import save_file

        save_file({"weight": conv[0].detach().cpu().contiguous(), "bias": conv[1].detach().cpu().contiguous()},
                  str(sub / "base_conv_in.safetensors"))  # fmt: skip


def save_components(components: Mapping[str, Any], folder: str | Path) -> Path:
    """Write ``components`` as a diffusers folder (``model_index.json`` + one subfolder per part).

    Text+image components (with ``image_encoder``, ``processor``, ``image_project``) are written as a
    ``StableDiffusionGLIGENTextImagePipeline`` folder. A keypoint UNet is saved with its position net;
    :func:`load_components` reads it back (diffusers alone cannot).
    """
    import diffusers

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    image = all(components.get(p) is not None for p in IMAGE_PARTS)
    index: dict[str, Any] = {
        "_class_name": "StableDiffusionGLIGENTextImagePipeline" if image else "StableDiffusionGLIGENPipeline",
        "_diffusers_version": diffusers.__version__,
    }
    for part in PARTS + (IMAGE_PARTS if image else ()):
        obj = components[part]
        obj.save_pretrained(str(out / part))
        if part == "unet" and unet_has_downsampler(obj):
            _save_spatial_sidecar(obj, out / part)
        library = "transformers" if type(obj).__module__.startswith("transformers") else "diffusers"
        index[part] = [library, type(obj).__name__]
    index["safety_checker"] = [None, None]
    index["feature_extractor"] = [None, None]
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    return out


def fingerprint(module: Any) -> str:
    """sha256 over a module's state dict (names, dtypes, shapes and bytes, in key order).

    Independent of the device; the same weights give the same hex digest on every machine.
    For a tokenizer, the hash covers its vocabulary; for a scheduler, its class and configuration
    (without the private ``_`` keys that saving adds).
    """
    if hasattr(module, "state_dict"):
        return tensors_sha256(module.state_dict(), header="{name}{torch_dtype}{shape_tuple}", sort=False)
    h = hashlib.sha256()
    if hasattr(module, "get_vocab"):
        h.update(json.dumps(sorted(module.get_vocab().items())).encode())
        h.update(str(getattr(module, "model_max_length", "")).encode())
    elif hasattr(module, "config"):
        config = {k: v for k, v in dict(module.config).items() if not k.startswith("_")}
        h.update(type(module).__name__.encode())
        h.update(json.dumps(config, sort_keys=True, default=str).encode())
    elif hasattr(module, "to_dict"):  # an image processor
        config = {k: v for k, v in module.to_dict().items() if not k.startswith("_")}
        h.update(type(module).__name__.encode())
        h.update(json.dumps(config, sort_keys=True, default=str).encode())
    else:
        raise TypeError(f"cannot fingerprint a {type(module).__name__}")
    return h.hexdigest()


def describe(components: Mapping[str, Any]) -> dict[str, Any]:
    """Where each part came from, its class and its fingerprint (for the run manifest)."""
    sources = getattr(components, "sources", {})
    out: dict[str, Any] = {"name": getattr(components, "name", None)}
    if getattr(components, "modality", None) is not None:
        out["modality"] = components.modality
    if getattr(components, "grounding_options", None):
        out["grounding_options"] = dict(components.grounding_options)
    for part in PARTS + IMAGE_PARTS:
        if part not in components:
            continue
        obj = components[part]
        entry = {
            "class": type(obj).__name__,
            "source": sources.get(part, "given in code"),
            "fingerprint": fingerprint(obj),
        }
        if hasattr(obj, "parameters"):
            entry["parameters"] = int(sum(p.numel() for p in obj.parameters()))
            entry["dtype"] = str(next(obj.parameters()).dtype).replace("torch.", "")
        out[part] = entry
    return out
