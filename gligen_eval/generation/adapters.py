"""Adapters as Lego: GLIGEN's trainable layers, saved, applied and removed apart from the frozen base.

A GLIGEN model is a frozen SD UNet (the *base*) plus an *adapter*: the gated self-attention fusers
in every transformer block, the position net, a spatial model's map downsampler, and, when the model
takes extra input channels (inpainting: 9, HED: 5, other spatial: 12), the input convolution's weight.
An adapter applied to a base UNet keeps the base's own first conv for a spatial model's α = 0 steps.
Key classification lives in
:func:`gligen_eval.generation.checkpoints.classify_key`.

* :func:`save_adapter` writes the adapter weights only, as safetensors, with metadata (modality,
  attention type, the fingerprint of the base it was trained on, the base keys it replaces).
* :func:`apply_adapter` plugs an adapter into a base UNet (a plain SD UNet gains gated fusers);
  the result shares the base's tensors, nothing is copied.
* :func:`unplug` gives the plain base UNet back; its outputs equal the base's exactly.
* :func:`base_fingerprint` hashes the frozen-base weights only; :func:`frozen_base_check` lists every
  base weight a candidate model or checkpoint changed (the regression check for a training run).
* :func:`describe_checkpoint` says what a weights file is, where it came from and its fingerprints
  (JSON-friendly, for the run manifest).

Fingerprints are ``"sha256:<hex>"`` over the sorted key names, dtypes, shapes and raw bytes, so the
same weights in another dtype have another fingerprint.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal, Mapping

from gligen_eval.errors import GligenEvalError, InputError
from gligen_eval.generation.checkpoints import (
    BASE_IN_CHANNELS,
    MODALITIES,
    build_unet,
    classify_key,
    classify_official_key,
    convert_official_state_dict,
    detect_official_modality,
    load_converted,
    modality_of_state,
    official_model_dict,
    plain_unet_config,
    position_net_kind,
    read_checkpoint,
    safetensors_metadata,
    spatial_settings,
    unet_config_from_official,
)
from gligen_eval.generation.keymap import spatial_kinds
from gligen_eval.hashing import file_sha256, tensors_sha256

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

ADAPTER_FORMAT = "gligen-eval-adapter"
ADAPTER_FORMAT_VERSION = "1"


# --------------------------------------------------------------------------------------------
# state splitting and fingerprints


def _state(obj: Any) -> dict[str, Any]:
    if isinstance(obj, Mapping):
        return dict(obj)
    if hasattr(obj, "state_dict"):
        return obj.state_dict()
    raise TypeError(f"expected a UNet or a state dict, got {type(obj).__name__}")


def _in_channels(state: Mapping[str, Any]) -> int:
    w = state.get("conv_in.weight")
    return BASE_IN_CHANNELS if w is None else int(w.shape[1])


def split_state(
    unet_or_state: Any, *, base_in_channels: int = BASE_IN_CHANNELS
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(base, adapter)`` parts of a UNet state dict (our key names)."""
    state = _state(unet_or_state)
    in_ch = _in_channels(state)
    base, adapter = {}, {}
    for k, v in state.items():
        kind = classify_key(k, in_channels=in_ch, base_in_channels=base_in_channels)
        (base if kind == "base" else adapter)[k] = v
    return base, adapter


def adapter_state(unet_or_state: Any, *, base_in_channels: int = BASE_IN_CHANNELS) -> dict[str, Any]:
    """The adapter part of a UNet state dict: fusers, position net, a widened input-conv weight."""
    return split_state(unet_or_state, base_in_channels=base_in_channels)[1]


def base_state(unet_or_state: Any, *, base_in_channels: int = BASE_IN_CHANNELS) -> dict[str, Any]:
    """Everything that is not adapter: the frozen base weights."""
    return split_state(unet_or_state, base_in_channels=base_in_channels)[0]


def fingerprint(state: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of a dict of tensors (key names, dtypes, shapes and bytes, in key order)."""
    return "sha256:" + tensors_sha256(state, header="{name}|{dtype}|{shape}\n")


def base_fingerprint(
    unet_or_state: Any, *, base_in_channels: int = BASE_IN_CHANNELS, exclude: Iterable[str] = ()
) -> str:
    """Fingerprint of the frozen-base weights only (adapter keys and ``exclude`` left out)."""
    skip = set(exclude)
    base = base_state(unet_or_state, base_in_channels=base_in_channels)
    return fingerprint({k: v for k, v in base.items() if k not in skip})


def adapter_fingerprint(unet_or_state: Any, *, base_in_channels: int = BASE_IN_CHANNELS) -> str:
    return fingerprint(adapter_state(unet_or_state, base_in_channels=base_in_channels))


# --------------------------------------------------------------------------------------------
# save / load / apply / unplug


@dataclass
class AppliedAdapter:
    """Kept on a UNet built by :func:`apply_adapter` (``unet.gligen_adapter``) so it can be unplugged."""

    modality: str
    source: str
    metadata: dict[str, str]
    replaced_base: dict[str, Any] = field(default_factory=dict, repr=False)
    """Base tensors the adapter replaced (e.g. the 4-channel ``conv_in.weight`` of an inpainting adapter)."""


def save_adapter(
    unet: "nn.Module",
    path: str | Path,
    *,
    modality: str | None = None,
    source: str | None = None,
    base_in_channels: int = BASE_IN_CHANNELS,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write the adapter weights of ``unet`` (our key names) as safetensors with metadata.

    Metadata: ``format``, ``format_version``, ``modality``, ``attention_type``, ``position_net``,
    ``base_fingerprint`` (of the base weights the adapter sits on, without the keys it replaces),
    ``adapter_fingerprint``, ``replaces_base_keys`` (JSON list), ``base_in_channels``,
    ``unet_config`` (JSON) and ``source``.
    """
    from safetensors.torch import save_file

    state = unet.state_dict()
    base, adapter = split_state(state, base_in_channels=base_in_channels)
    if not any(k.startswith("position_net.") for k in adapter):
        raise GligenEvalError("save_adapter: the UNet has no position net, so it carries no GLIGEN adapter")
    modality = modality or getattr(unet.position_net, "modality", None) or modality_of_state(state)
    replaced = sorted(k for k in adapter if classify_key(k, in_channels=_in_channels(state)) == "input_conv")
    meta = {
        "format": ADAPTER_FORMAT,
        "format_version": ADAPTER_FORMAT_VERSION,
        "modality": modality,
        "attention_type": str(unet.config.attention_type),
        "position_net": str(position_net_kind(state)),
        "base_fingerprint": fingerprint(base),
        "adapter_fingerprint": fingerprint(adapter),
        "replaces_base_keys": json.dumps(replaced),
        "base_in_channels": str(base_in_channels),
        "unet_config": json.dumps(plain_unet_config(unet.config), sort_keys=True),
        "source": source or "",
    }
    if spatial_settings(unet):  # the resize sizes of the position net and the downsampler
        meta["spatial"] = json.dumps(spatial_settings(unet), sort_keys=True)
    meta.update({str(k): str(v) for k, v in (metadata or {}).items()})
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in adapter.items()}, str(p), metadata=meta)
    return p


def load_adapter(path: str | Path) -> tuple[dict[str, Any], dict[str, str]]:
    """``(adapter_state, metadata)`` of an adapter file written by :func:`save_adapter`."""
    p = Path(path)
    if p.suffix != ".safetensors":
        raise InputError("adapter files are .safetensors written by save_adapter", path=str(p))
    state = read_checkpoint(p)
    meta = safetensors_metadata(p)
    if meta.get("format") != ADAPTER_FORMAT:
        raise InputError(f"not a {ADAPTER_FORMAT} file (metadata format={meta.get('format')!r})", path=str(p))
    if meta.get("format_version") != ADAPTER_FORMAT_VERSION:
        raise InputError(f"adapter format version {meta.get('format_version')!r} is not supported", path=str(p))
    return state, meta


def apply_adapter(
    base_unet: "nn.Module",
    adapter: str | Path | tuple[Mapping[str, Any], Mapping[str, str]],
    *,
    on_base_mismatch: Literal["error", "warn", "ignore"] = "warn",
) -> "nn.Module":
    """A GLIGEN UNet made of ``base_unet``'s frozen weights and an adapter (file or ``(state, metadata)``).

    A plain SD UNet gains gated fusers (``attention_type`` from the adapter) and the position net;
    an adapter with a widened input conv sets ``in_channels``. The new UNet *shares* the base's
    tensors. When the base's fingerprint differs from the one the adapter records, ``on_base_mismatch``
    decides: raise, warn (the default: applying an adapter to another SD-1.x base is legitimate) or
    stay silent.
    """
    if on_base_mismatch not in ("error", "warn", "ignore"):
        raise GligenEvalError(f"on_base_mismatch must be 'error', 'warn' or 'ignore', got {on_base_mismatch!r}")
    if isinstance(adapter, (str, Path)):
        state, meta = load_adapter(adapter)
        source = str(adapter)
    else:
        state, meta = dict(adapter[0]), dict(adapter[1])
        source = meta.get("source", "") or "<in memory>"
    base_in = int(meta.get("base_in_channels", BASE_IN_CHANNELS))
    replaced = json.loads(meta.get("replaces_base_keys", "[]"))
    base = base_state(base_unet, base_in_channels=base_in)
    recorded = meta.get("base_fingerprint")
    if recorded and on_base_mismatch != "ignore":
        actual = fingerprint({k: v for k, v in base.items() if k not in replaced})
        if actual != recorded:
            msg = (
                f"adapter {source} was saved on base {recorded[:19]}…, but this base is {actual[:19]}… "
                "(a different or modified base UNet)"
            )
            if on_base_mismatch == "error":
                raise GligenEvalError(msg)
            warnings.warn(msg, stacklevel=2)

    ref = next(iter(base.values()))
    state = {k: v.to(device=ref.device, dtype=ref.dtype) for k, v in state.items()}
    config = plain_unet_config(base_unet.config)
    config["attention_type"] = meta.get("attention_type", "gated")
    if "conv_in.weight" in state:
        config["in_channels"] = int(state["conv_in.weight"].shape[1])
    kind = position_net_kind(state)
    modality = meta.get("modality") or modality_of_state(state)
    if kind in spatial_kinds() and modality in spatial_kinds():
        kind = modality  # canny and depth adapters have the same keys; the metadata names the modality
    pos = {k[len("position_net."):]: v for k, v in state.items() if k.startswith("position_net.")}
    down = {k[len("downsample_net."):]: v for k, v in state.items() if k.startswith("downsample_net.")}
    spatial = json.loads(meta["spatial"]) if meta.get("spatial") else None
    unet = build_unet(config, position_net=kind, position_state=pos, downsampler_state=down, spatial=spatial)
    merged = {k: v for k, v in base.items() if k not in replaced}
    merged.update(state)
    load_converted(unet, merged, where=f"adapter {source}")
    base_conv = base_unet.conv_in
    if kind in spatial_kinds() and int(base_conv.weight.shape[1]) == BASE_IN_CHANNELS:
        from gligen_eval.generation.unet_forward import set_base_conv_in

        set_base_conv_in(unet, base_conv.weight, base_conv.bias)  # the base's own first conv for α = 0 steps
    unet.train(base_unet.training)
    unet.gligen_adapter = AppliedAdapter(
        modality=modality,
        source=source,
        metadata=dict(meta),
        replaced_base={k: base[k] for k in replaced if k in base},
    )
    return unet


def unplug(unet: "nn.Module", *, base: "nn.Module | Mapping[str, Any] | None" = None) -> "nn.Module":
    """The plain base UNet inside a GLIGEN UNet (no fusers, no position net; shares tensors).

    Base weights an adapter replaced (an inpainting adapter's input conv) come from the UNet's
    :class:`AppliedAdapter` record or, for UNets not built by :func:`apply_adapter`, from ``base``.
    """
    info: AppliedAdapter | None = getattr(unet, "gligen_adapter", None)
    base_in = int(info.metadata.get("base_in_channels", BASE_IN_CHANNELS)) if info else BASE_IN_CHANNELS
    state = base_state(unet, base_in_channels=base_in)
    restore = dict(info.replaced_base) if info else {}
    if "conv_in.weight" not in state and "conv_in.weight" not in restore:
        if base is None:
            raise GligenEvalError(
                "unplug: the UNet's input conv is part of its adapter (inpainting); pass base= (the base "
                "UNet or its state dict) to restore the base's conv_in.weight"
            )
        restore["conv_in.weight"] = _state(base)["conv_in.weight"]
    ref = state["conv_in.bias"]
    state.update({k: v.to(device=ref.device, dtype=ref.dtype) for k, v in restore.items()})
    config = plain_unet_config(unet.config)
    config["attention_type"] = "default"
    config["in_channels"] = int(state["conv_in.weight"].shape[1])
    plain = build_unet(config)
    load_converted(plain, state, where="unplug")
    plain.train(unet.training)
    return plain


# --------------------------------------------------------------------------------------------
# frozen-base check


@dataclass
class FrozenBaseReport:
    """Which base weights a candidate changed.

    ``ok``: every base weight is present and within ``atol`` (for an adapter file: the base
    fingerprint it records equals this base's). The fingerprints cover the compared weights.
    """

    candidate: str
    kind: str
    """``model`` (a full UNet or checkpoint) or ``adapter`` (an adapter file: no base weights inside)."""
    checked: int
    changed: list[dict[str, Any]] = field(default_factory=list)
    """``{"key", "max_abs_diff"}`` or ``{"key", "shape", "base_shape"}`` per changed weight."""
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    replaced_by_adapter: list[str] = field(default_factory=list)
    base_fingerprint: str = ""
    candidate_base_fingerprint: str = ""

    @property
    def ok(self) -> bool:
        if self.kind == "adapter":
            return self.base_fingerprint == self.candidate_base_fingerprint
        return not (self.changed or self.missing or self.unexpected)

    def summary(self) -> str:
        if self.kind == "adapter":
            state = "matches" if self.ok else "does NOT match"
            return f"{self.candidate}: adapter file; the base it records {state} this base"
        if self.ok:
            extra = f" ({len(self.replaced_by_adapter)} replaced by the adapter)" if self.replaced_by_adapter else ""
            return f"{self.candidate}: frozen base intact, {self.checked} weights identical{extra}"
        parts = []
        if self.changed:
            shown = ", ".join(c["key"] for c in self.changed[:3])
            parts.append(f"{len(self.changed)} changed ({shown}{', …' if len(self.changed) > 3 else ''})")
        if self.missing:
            parts.append(f"{len(self.missing)} missing")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected")
        return f"{self.candidate}: frozen base CHANGED: " + "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        d["summary"] = self.summary()
        return d


def _as_our_state(obj: Any, *, base_config: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    """Our-layout state dict of a UNet, a state dict (ours or official) or a weights file."""
    if isinstance(obj, (str, Path)):
        obj = read_checkpoint(obj)
    elif not isinstance(obj, Mapping):
        return _state(obj)
    if "conv_in.weight" in obj:
        return {k: v for k, v in obj.items() if hasattr(v, "shape")}
    model_sd = official_model_dict(obj, path=where)
    try:
        modality: str | None = detect_official_modality(model_sd)
    except GligenEvalError:
        modality = None
    config = unet_config_from_official(model_sd, modality=modality, base_config=base_config)
    kind = MODALITIES[modality].position_net if modality else None
    return convert_official_state_dict(model_sd, config, position_net=kind)  # type: ignore[arg-type]


def frozen_base_check(
    base: Any,
    candidate: Any,
    *,
    atol: float = 0.0,
    base_in_channels: int = BASE_IN_CHANNELS,
) -> FrozenBaseReport:
    """Compare every frozen-base weight of ``base`` with ``candidate``.

    ``base``: a UNet, a state dict, a diffusers UNet folder/file or an SD checkpoint.
    ``candidate``: the same kinds, an official GLIGEN checkpoint, or an adapter file (then only the
    base fingerprint it records is compared). A weight counts as changed when any element differs
    by more than ``atol`` (default: any difference at all).
    """
    base_cfg = dict(base.config) if hasattr(base, "config") else None
    base_sd = base_state(_as_our_state(base, base_config=None, where="base"), base_in_channels=base_in_channels)
    name = str(candidate) if isinstance(candidate, (str, Path)) else type(candidate).__name__

    if isinstance(candidate, (str, Path)) and Path(candidate).suffix == ".safetensors":
        meta = safetensors_metadata(candidate)
        if meta.get("format") == ADAPTER_FORMAT:
            replaced = json.loads(meta.get("replaces_base_keys", "[]"))
            fp = fingerprint({k: v for k, v in base_sd.items() if k not in replaced})
            return FrozenBaseReport(
                candidate=name,
                kind="adapter",
                checked=0,
                replaced_by_adapter=list(replaced),
                base_fingerprint=fp,
                candidate_base_fingerprint=meta.get("base_fingerprint", ""),
            )

    cand = _as_our_state(candidate, base_config=base_cfg, where=name)
    cand_in = _in_channels(cand)
    report = FrozenBaseReport(candidate=name, kind="model", checked=0)
    checked_base, checked_cand = {}, {}
    for k, v in base_sd.items():
        if k not in cand:
            report.missing.append(k)
            continue
        c = cand[k]
        if classify_key(k, in_channels=cand_in, base_in_channels=base_in_channels) != "base":
            report.replaced_by_adapter.append(k)
            continue
        report.checked += 1
        checked_base[k], checked_cand[k] = v, c
        if tuple(c.shape) != tuple(v.shape):
            report.changed.append({"key": k, "shape": list(c.shape), "base_shape": list(v.shape)})
            continue
        diff = _max_abs_diff(v, c)
        if diff > atol:
            report.changed.append({"key": k, "max_abs_diff": diff})
    report.unexpected = sorted(
        k
        for k in cand
        if k not in base_sd and classify_key(k, in_channels=cand_in, base_in_channels=base_in_channels) == "base"
    )
    report.base_fingerprint = fingerprint(checked_base)
    report.candidate_base_fingerprint = fingerprint(checked_cand)
    return report


def _max_abs_diff(a: Any, b: Any) -> float:
    import torch

    a = a.detach().to("cpu")
    b = b.detach().to("cpu")
    if a.dtype == b.dtype and torch.equal(a, b):
        return 0.0
    if a.numel() == 0:
        return 0.0
    return float((a.double() - b.double()).abs().max())


# --------------------------------------------------------------------------------------------
# describe


def hub_origin(path: str | Path) -> dict[str, str] | None:
    """``{"hub_id", "revision"}`` when ``path`` lies in a Hugging Face cache snapshot."""
    parts = Path(path).resolve().parts
    for i, part in enumerate(parts):
        if part.startswith("models--") and i + 2 < len(parts) and parts[i + 1] == "snapshots":
            return {"hub_id": part[len("models--"):].replace("--", "/"), "revision": parts[i + 2]}
    return None


def describe_checkpoint(path: str | Path, *, hash_file: bool = True) -> dict[str, Any]:
    """What a weights file is, where it came from and its fingerprints (JSON-friendly).

    Handles official GLIGEN checkpoints (every modality, spatial ones included), adapter files and
    diffusers UNet weights (file or folder). Fingerprints use our key names, so they compare with
    :func:`base_fingerprint` of a loaded UNet.
    """
    p = Path(path)
    file = p
    if p.is_dir():
        for cand in ("unet/diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors",
                     "unet/diffusion_pytorch_model.bin", "diffusion_pytorch_model.bin"):
            if (p / cand).is_file():
                file = p / cand
                break
    out: dict[str, Any] = {"path": str(p.resolve())}
    if file.is_file():
        out["file"] = str(file.resolve())
        out["bytes"] = file.stat().st_size
        if hash_file:
            out["file_sha256"] = "sha256:" + file_sha256(file)
    origin = hub_origin(p)
    if origin:
        out["origin"] = origin

    if file.suffix == ".safetensors" and file.is_file():
        meta = safetensors_metadata(file)
        if meta.get("format") == ADAPTER_FORMAT:
            state, meta = load_adapter(file)
            out.update(
                kind="adapter",
                modality=meta.get("modality"),
                supported=True,
                num_keys=len(state),
                adapter_keys=len(state),
                base_keys=0,
                adapter_fingerprint=fingerprint(state),
                base_fingerprint=meta.get("base_fingerprint"),
                base_fingerprint_recorded=True,
                replaces_base_keys=json.loads(meta.get("replaces_base_keys", "[]")),
                source=meta.get("source") or None,
            )
            return out

    ckpt = read_checkpoint(p)
    if "conv_in.weight" in ckpt:
        state = {k: v for k, v in ckpt.items() if hasattr(v, "shape")}
        base, adapter = split_state(state)
        modality = modality_of_state(state) if position_net_kind(state) else "base"
        out.update(
            kind="diffusers-unet",
            modality=modality,
            supported=True,
            num_keys=len(state),
            adapter_keys=len(adapter),
            base_keys=len(base),
            adapter_fingerprint=fingerprint(adapter) if adapter else None,
            base_fingerprint=fingerprint(base),
        )
        return out

    model_sd = official_model_dict(ckpt, path=p)
    in_ch = int(model_sd["input_blocks.0.0.weight"].shape[1])
    try:
        modality = detect_official_modality(model_sd)
    except GligenEvalError:
        modality = "base"
    groups: dict[str, int] = {}
    for k in model_sd:
        g = classify_official_key(k, in_channels=in_ch)
        groups[g] = groups.get(g, 0) + 1
    supported = True
    ours = _as_our_state(model_sd, base_config=None, where=str(p))
    base, adapter = split_state(ours)
    out.update(
        kind="official",
        modality=modality,
        supported=supported,
        num_keys=len(model_sd),
        adapter_keys=sum(n for g, n in groups.items() if g != "base"),
        base_keys=groups.get("base", 0),
        groups=groups,
        parts=sorted(k for k, v in ckpt.items() if k not in ("model", "config_dict") and isinstance(v, Mapping)),
        adapter_fingerprint=fingerprint(adapter) if supported and adapter else None,
        base_fingerprint=fingerprint(base),
    )
    return out
