"""Grounded image generation on diffusers building blocks.

Modules (each imports torch/diffusers only when used):

* :mod:`~gligen_eval.generation.sampler`: :class:`GroundedSampler`, the batched grounded sampler;
* :mod:`~gligen_eval.generation.grounding`: grounding tokenizers (one per modality) and the
  scaled gated layers;
* :mod:`~gligen_eval.generation.schedule`: the α (official) and β (diffusers) grounding schedules;
* :mod:`~gligen_eval.generation.loading`: components from ``tiny``, a diffusers folder, a hub id
  or an official checkpoint, plus fingerprints;
* :mod:`~gligen_eval.generation.tiny`: tiny random components built in code;
* :mod:`~gligen_eval.generation.modalities`: the modality table (one ``ModalitySpec`` per modality:
  text+box, text+image+box, keypoint, inpainting, the spatial maps hed/canny/depth/normal/sem) and
  their tokenizers, inpainting preservation (PSNR);
* :mod:`~gligen_eval.generation.checkpoints`: official checkpoints (safe reading, load, save, the
  reference forward), with :mod:`~.keymap` (official ⇄ our key names), :mod:`~.unet_build`
  (configs, building), :mod:`~.unet_forward` (one grounded UNet call), :mod:`~.spatial_net`
  (ConvNeXt position net and map downsamplers).

The main names are importable from here; the module behind a name is imported on first use::

    from gligen_eval.generation import GroundedSampler, load_components
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "GroundedSampler": "sampler",
    "make_scheduler": "sampler",
    "load_components": "loading",
    "save_components": "loading",
    "describe": "loading",
    "fingerprint": "loading",
    "tiny_components": "tiny",
    "alpha_schedule": "schedule",
    "beta_schedule": "schedule",
    "grounding_schedule": "schedule",
    "set_grounding_scale": "grounding",
    "unplug": "grounding",
    "unplugged": "grounding",
    "register_grounding": "grounding",
    "get_grounding": "grounding",
    "default_grounding": "grounding",
    "detect_modality": "grounding",
    "default_alpha": "modalities",
    "forced_scale": "modalities",
    "outside_psnr": "modalities.preservation",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
