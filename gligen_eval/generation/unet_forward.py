"""One grounded UNet evaluation, shared by the sampler and the reference forward of the tests.

:func:`grounded_forward` is what every denoising step runs: set the gated layers' scale, append the
extra input channels (inpainting latents, a spatial model's downsampled map) after the latents, and run
the UNet with the grounding tokens. At scale 0 the position net and the gated layers are skipped; a
spatial model with a known base first conv then runs the official α = 0 path: the base model's own
4-channel first conv replaces the trained 12- (HED: 5-) channel one and the map is not appended.

:func:`official_forward` takes the official ``UNetModel`` input dict, so the official code's outputs
(``../shared/data/gligen_official/fixtures``) can drive it.

The base first conv lives on the UNet as two non-persistent buffers (:func:`set_base_conv_in`): it
moves with the UNet's device and dtype but is not part of its state dict, so conversions, fingerprints
and saved files are unchanged.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

_W, _B = "base_conv_in_weight", "base_conv_in_bias"


def set_base_conv_in(unet: nn.Module, weight: torch.Tensor, bias: torch.Tensor) -> None:
    """Keep ``(weight, bias)``, a 4-channel first conv, on ``unet`` for the α = 0 steps."""
    conv = unet.conv_in
    if tuple(weight.shape) != (conv.weight.shape[0], 4, *conv.weight.shape[2:]) or bias.shape[0] != conv.weight.shape[0]:
        raise ValueError(
            f"the base first conv {tuple(weight.shape)} does not fit this UNet's conv_in {tuple(conv.weight.shape)}"
        )
    ref = conv.weight
    device = ref.device if ref.device.type != "meta" else torch.device("cpu")
    unet.register_buffer(_W, weight.detach().to(device=device, dtype=ref.dtype).clone(), persistent=False)
    unet.register_buffer(_B, bias.detach().to(device=device, dtype=ref.dtype).clone(), persistent=False)


def base_conv_in(unet: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The base first conv kept by :func:`set_base_conv_in`, or ``None``."""
    w, b = getattr(unet, _W, None), getattr(unet, _B, None)
    return None if w is None or b is None else (w, b)


class _FirstConv(nn.Module):
    """A 3×3 conv from given tensors (no parameters of its own), standing in for ``conv_in``."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, padding: Any):
        super().__init__()
        self.weight, self.bias, self.padding = weight, bias, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight.to(x), self.bias.to(x), padding=self.padding)


def _set_scale(unet: nn.Module, scale: float, fusers: Sequence[Any] | None) -> None:
    if fusers is None:
        from gligen_eval.generation.grounding import set_grounding_scale

        set_grounding_scale(unet, scale)
        return
    for f in fusers:
        f.scale = scale


def grounded_forward(
    unet: nn.Module,
    sample: torch.Tensor,
    timestep: Any,
    context: torch.Tensor,
    *,
    gligen: Mapping[str, torch.Tensor] | None,
    scale: float,
    extra: torch.Tensor | None = None,
    base_conv: tuple[torch.Tensor, torch.Tensor] | None = None,
    fusers: Sequence[Any] | None = None,
) -> torch.Tensor:
    """ε of one UNet call at grounding scale ``scale`` (see the module docstring).

    ``extra``: channels appended after ``sample``. ``base_conv``: with ``scale == 0``, the first conv
    to use instead of ``conv_in``, and then ``extra`` is dropped. ``fusers``: the UNet's scaled gated
    layers, when the caller keeps the list (else they are found and installed).
    """
    _set_scale(unet, float(scale), fusers)
    swap = scale == 0 and base_conv is not None
    x = sample if extra is None or swap else torch.cat([sample, extra.to(sample.dtype)], dim=1)
    kwargs = {"gligen": dict(gligen)} if scale != 0 and gligen is not None else None
    if not swap:
        return unet(x, timestep, encoder_hidden_states=context, cross_attention_kwargs=kwargs).sample
    trained = unet.conv_in
    unet.conv_in = _FirstConv(base_conv[0], base_conv[1], trained.padding)
    try:
        return unet(x, timestep, encoder_hidden_states=context, cross_attention_kwargs=kwargs).sample
    finally:
        unet.conv_in = trained


def official_forward(
    unet: nn.Module,
    inputs: Mapping[str, Any],
    *,
    scale: float,
    base_conv_in: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Our UNet on the official model's input dict; returns ε.

    ``inputs``: ``{"x", "timesteps", "context", "grounding_input": {<the position net's official keyword
    arguments>}, "grounding_extra_input": <the map, spatial models>, "inpainting_extra_input": <masked
    latents + mask, inpainting models>}``. ``scale`` is the gated layers' scale; ``scale == 0`` with
    ``base_conv_in=(weight, bias)`` is the official α = 0 path of a spatial model (base 4-channel first
    conv, no map).
    """
    x = inputs["x"]
    parts = []
    down = getattr(unet, "downsample_net", None)
    if down is not None and inputs.get("grounding_extra_input") is not None:
        parts.append(down(inputs["grounding_extra_input"], latent_size=int(x.shape[-1])))
    if inputs.get("inpainting_extra_input") is not None:
        parts.append(inputs["inpainting_extra_input"])
    extra = torch.cat(parts, dim=1) if parts else None
    return grounded_forward(
        unet, x, inputs["timesteps"], inputs["context"], gligen=inputs.get("grounding_input"),
        scale=scale, extra=extra, base_conv=base_conv_in if scale == 0 else None,
    )  # fmt: skip
