"""Speed options users expect on a GPU: half precision (``model.dtype``), the attention kernel,
channels-last memory format and ``torch.compile``.

``attention="sdpa"`` (the default) uses PyTorch's fused ``scaled_dot_product_attention`` in every
attention layer, the gated grounding layers included; ``"classic"`` uses the explicit
softmax(QKᵀ)V implementation (slower, for comparison and debugging).
"""

from __future__ import annotations

from typing import Any, Mapping


def apply_performance_options(
    components: Mapping[str, Any],
    *,
    attention: str = "sdpa",
    channels_last: bool = False,
    compile: bool = False,
) -> dict[str, Any]:
    """Apply the options to ``components`` in place; returns what was applied (for the manifest)."""
    import torch
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    from gligen_eval.errors import ConfigError

    unet, vae = components["unet"], components["vae"]
    if attention == "sdpa":
        unet.set_attn_processor(AttnProcessor2_0())
    elif attention == "classic":
        unet.set_attn_processor(AttnProcessor())
    else:
        raise ConfigError(f"config key 'model.attention' must be 'sdpa' or 'classic', got {attention!r}")
    if channels_last:
        unet.to(memory_format=torch.channels_last)
        vae.to(memory_format=torch.channels_last)
    if compile:
        unet.compile()  # compiles forward in place: the module, its config and its state dict stay as they are
    return {"attention": attention, "channels_last": channels_last, "compile": compile}
