"""Load generation components: ``tiny``, a local diffusers folder, or a hub id from the local cache.

:func:`load_components` returns a :class:`Components` mapping with ``unet``, ``vae``,
``text_encoder``, ``tokenizer`` and ``scheduler``, and remembers where each part came from
(:func:`describe` turns that, plus a content fingerprint of every model, into a manifest entry).

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

PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
CHECKPOINT_SUFFIXES = (".bin", ".pth", ".pt", ".ckpt", ".safetensors")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_DTYPES = {
    "float32": "float32", "fp32": "float32",
    "float16": "float16", "fp16": "float16",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
}  # fmt: skip


class Components(dict):
    """The components of a grounded diffusion model; ``sources`` says where each part came from."""

    def __init__(self, parts: Mapping[str, Any], sources: Mapping[str, str], name: str):
        super().__init__(parts)
        self.sources = dict(sources)
        self.name = name


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
) -> Components:
    """Components for ``name``:

    * ``"tiny"``: tiny random components built in code (``tiny_seed``; ``sample_size`` is the
      image size in pixels, default 64);
    * a local diffusers folder (with ``model_index.json``);
    * a hub id such as ``masterful/gligen-1-4-generation-text-box``, from the local Hugging Face
      cache only;
    * an official GLIGEN checkpoint file (``.bin``, ``.pth``, ``.pt``, ``.ckpt``, ``.safetensors``;
      converted by :func:`gligen_eval.generation.checkpoints.load_official_unet`): it supplies the
      UNet, and ``base`` (a diffusers folder, a cached hub id, or ``"tiny"``) the VAE, text encoder,
      tokenizer and scheduler.
    """
    from gligen_eval.generation.sampler import resolve_device

    dev = resolve_device(device)
    dt = resolve_dtype(dtype)
    if name == "tiny":
        from gligen_eval.generation.tiny import tiny_components

        size = 64 if sample_size is None else int(sample_size)
        parts = tiny_components(seed=tiny_seed, sample_size=size)
        origin = f"tiny random components (seed={tiny_seed}, sample_size={size})"
        comps = Components(parts, {p: origin for p in PARTS}, name)
    elif Path(name).expanduser().is_file() and Path(name).suffix in CHECKPOINT_SUFFIXES:
        comps = _load_official(Path(name).expanduser(), base, tiny_seed=tiny_seed, sample_size=sample_size)
    else:
        folder = _resolve_folder(name)
        comps = _load_folder(folder, name)
    for key in ("unet", "vae", "text_encoder"):
        comps[key] = place(comps[key], dev, dt)
        comps[key].requires_grad_(False)
    return comps


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
        base_config: Any = parts["unet"].config
    else:
        folder = _resolve_folder(base)
        comps = _load_folder(folder, base, wanted=("vae", "text_encoder", "tokenizer", "scheduler"))
        comps.name = str(path)
        base_config = folder
    unet, _, info = load_official_unet(path, base=base_config)
    comps["unet"] = unet
    comps.sources["unet"] = f"{path} (official GLIGEN checkpoint, {info.modality})"
    return comps


def _load_folder(folder: Path, name: str, wanted: tuple[str, ...] = PARTS) -> Components:
    import diffusers
    import transformers

    index = json.loads((folder / "model_index.json").read_text())
    missing = [p for p in wanted if not (folder / p).is_dir()]
    if missing:
        raise MissingWeightsError(
            f"model '{name}' ({folder}) lacks the subfolder(s) {', '.join(missing)}; {_how_to_get(name)}"
        )
    loaded: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for part in wanted:
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
        try:
            if part == "scheduler":
                obj = cls.from_pretrained(str(sub))
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


def save_components(components: Mapping[str, Any], folder: str | Path) -> Path:
    """Write ``components`` as a diffusers folder (``model_index.json`` + one subfolder per part)."""
    import diffusers

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    index: dict[str, Any] = {
        "_class_name": "StableDiffusionGLIGENPipeline",
        "_diffusers_version": diffusers.__version__,
    }
    for part in PARTS:
        obj = components[part]
        obj.save_pretrained(str(out / part))
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
    import torch

    h = hashlib.sha256()
    if hasattr(module, "state_dict"):
        for key, tensor in module.state_dict().items():
            t = tensor.detach().to("cpu").contiguous()
            h.update(key.encode())
            h.update(str(t.dtype).encode())
            h.update(repr(tuple(t.shape)).encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif hasattr(module, "get_vocab"):
        h.update(json.dumps(sorted(module.get_vocab().items())).encode())
        h.update(str(getattr(module, "model_max_length", "")).encode())
    elif hasattr(module, "config"):
        config = {k: v for k, v in dict(module.config).items() if not k.startswith("_")}
        h.update(type(module).__name__.encode())
        h.update(json.dumps(config, sort_keys=True, default=str).encode())
    else:
        raise TypeError(f"cannot fingerprint a {type(module).__name__}")
    return h.hexdigest()


def describe(components: Mapping[str, Any]) -> dict[str, Any]:
    """Where each part came from, its class and its fingerprint (for the run manifest)."""
    sources = getattr(components, "sources", {})
    out: dict[str, Any] = {"name": getattr(components, "name", None)}
    for part in PARTS:
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
