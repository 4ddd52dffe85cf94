"""What the metric keys of ``metrics.json`` mean for reports: order, direction, formatting.

Everything here reads the key specs the scorers declare (:class:`~gligen_eval.scoring.protocol.KeySpec`);
a key no scorer declares (a user's scorer that is not installed here) is shown after the others, by
name, as a higher-is-better score with 3 decimals.
"""

from __future__ import annotations

import math
from typing import Any, Iterable


def _spec(key: str) -> Any:
    from gligen_eval.scoring.protocol import key_spec

    return key_spec(base_key(key))


def is_ci_key(key: str) -> bool:
    return key.endswith(("/lo", "/hi"))


def base_key(key: str) -> str:
    return key[:-3] if is_ci_key(key) else key


def is_coco_key(key: str) -> bool:
    """A COCO summary key (``box/AP``, ``kp/AR50``, ...), where -1 means "undefined"."""
    spec = _spec(key)
    return bool(spec and spec.coco)


def higher_is_better(key: str) -> bool:
    """``False`` for distances (FID, KID, FD-DINOv2, CMMD), condition errors (``cond/depth_rmse``...) and
    the AP lost to one error type (``box/tide/*``); ``True`` for scores."""
    spec = _spec(key)
    return spec.higher_is_better if spec is not None else True


def _rank(key: str) -> tuple:
    from gligen_eval.scoring.protocol import OTHER, all_key_specs

    spec = _spec(key)
    if spec is None or spec.section == OTHER:
        return (OTHER, 0, key)
    return (spec.section, all_key_specs().index(spec), key)


def order_metrics(keys: Iterable[str]) -> list[str]:
    """By report section (COCO box keys, per-instance means, COCO keypoint keys, image quality and CLIP,
    condition consistency, composition), in the order the scorers declare them; then the rest by name."""
    return sorted(set(keys), key=_rank)


def metric_keys(metrics: dict[str, Any], skip: Iterable[str] = ()) -> list[str]:
    """The numeric metric keys of one ``metrics.json`` (without CI bounds and counts)."""
    skip = set(skip)
    out = []
    for k, v in metrics.items():
        if k in skip or is_ci_key(k) or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        out.append(k)
    return order_metrics(out)


def decimals(key: str) -> int:
    spec = _spec(key)
    return spec.decimals if spec is not None else 3


def headline_keys() -> list[str]:
    """The keys shown first after a run, in sweeps and by the pytest plugin."""
    from gligen_eval.scoring.protocol import headline_keys as keys

    return keys()


def fmt(key: str, value: float | None, ci: tuple[float, float] | None = None) -> str:
    """``0.213 [0.190, 0.240]``; an empty string for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    d = decimals(key)
    text = f"{value:.{d}f}"
    if ci is not None:
        text += f" [{ci[0]:.{d}f}, {ci[1]:.{d}f}]"
    return text
