"""Checking the condition options (names, types, values) once, for every entry point."""

from __future__ import annotations

from typing import Any, Mapping

from gligen_eval.conditions import CONDITION_DEFAULTS, CONDITION_OPTIONS, MAP_SOURCES, SPATIAL_MODALITIES
from gligen_eval.errors import ConfigError


def check_modality(modality: str) -> str:
    if modality not in SPATIAL_MODALITIES:
        raise ConfigError(f"{modality!r} is not a spatial modality (one of {', '.join(SPATIAL_MODALITIES)})")
    return modality


def condition_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` over :data:`CONDITION_DEFAULTS` (``None`` means "not set"); unknown names and bad
    values are a :class:`ConfigError` naming the ``grounding`` key."""
    unknown = sorted(set(options) - set(CONDITION_OPTIONS))
    if unknown:
        raise ConfigError(f"unknown condition option(s) {', '.join(unknown)} (known: {', '.join(CONDITION_OPTIONS)})")
    out = dict(CONDITION_DEFAULTS)
    out.update({k: v for k, v in options.items() if v is not None})
    if out["map"] not in MAP_SOURCES:
        raise ConfigError(f"grounding.map must be one of {list(MAP_SOURCES)}, got {out['map']!r}")
    for key in ("canny_low", "canny_high"):
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1000:
            raise ConfigError(f"grounding.{key} must be a number in [0, 1000] (OpenCV Canny threshold), got {v!r}")
    if out["canny_low"] > out["canny_high"]:
        raise ConfigError(f"grounding.canny_low ({out['canny_low']}) must not exceed grounding.canny_high ({out['canny_high']})")
    for key in ("map_dir", "hed_weights", "depth_model", "normal_model", "sem_model", "extract_device"):
        if out[key] is not None and not isinstance(out[key], str):
            raise ConfigError(f"grounding.{key} must be a string, got {out[key]!r}")
    return out
