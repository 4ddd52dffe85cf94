"""What the metric keys of ``metrics.json`` mean for reports: order, direction, formatting."""

from __future__ import annotations

import math
from typing import Any, Iterable

BOX_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
            "APr", "APc", "APf")  # fmt: skip
KP_KEYS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
_FIRST = ("box/mIoU", "box/success")
_QUALITY = ("fid", "kid", "fd_dinov2", "cmmd", "prdc/precision", "prdc/recall", "prdc/density", "prdc/coverage",
            "pref/pickscore", "clip/global", "clip/regional")  # fmt: skip
_LOWER_IS_BETTER = ("fid", "kid", "fd_dinov2", "cmmd")
_LOWER_IS_BETTER_PREFIXES = ("box/tide/",)  # AP lost to one error type
_COND_WIDE = ("depth_rmse", "normal_angle_mean", "normal_angle_median")  # 0-255 levels and degrees: 2 decimals


def _cond_names() -> tuple[str, ...]:
    from gligen_eval.scoring.condition import METRIC_NAMES

    return METRIC_NAMES


def _cond_name(key: str) -> str | None:
    """``canny_f1`` for ``cond/canny_f1`` and ``cond/real/canny_f1``; None for other keys."""
    k = base_key(key)
    if not k.startswith("cond/"):
        return None
    name = k.rsplit("/", 1)[-1]
    return name if name in _cond_names() else None


def is_ci_key(key: str) -> bool:
    return key.endswith(("/lo", "/hi"))


def base_key(key: str) -> str:
    return key[:-3] if is_ci_key(key) else key


def is_coco_key(key: str) -> bool:
    """A COCO summary key (``box/AP``, ``kp/AR50``, ...), where -1 means "undefined"."""
    head, _, name = base_key(key).partition("/")
    return (head == "box" and name in BOX_KEYS) or (head == "kp" and name in KP_KEYS) or (
        head == "box" and name.startswith("AR") and name[2:].isdigit())


def higher_is_better(key: str) -> bool:
    """``False`` for distances (FID, KID, FD-DINOv2, CMMD and their variants) and condition errors (``cond/depth_rmse``,
    ``cond/depth_absrel``, ``cond/normal_angle_mean``, ``cond/normal_angle_median``), ``True`` for scores."""
    if _cond_name(key) is not None:
        from gligen_eval.scoring.condition import lower_is_better

        return not lower_is_better(base_key(key))
    head = base_key(key).split("/")[0]
    if base_key(key).startswith(_LOWER_IS_BETTER_PREFIXES):
        return False
    return head not in _LOWER_IS_BETTER and not base_key(key).startswith(tuple(f"{k}_" for k in _LOWER_IS_BETTER))


def _comp_keys() -> tuple[str, ...]:
    """Compositional keys (all higher is better): ``comp/`` counts, relations, colours, then COCO-MIG ``mig/``."""
    from gligen_eval.scoring.compositional import COMP_KEYS, MIG_KEYS

    return COMP_KEYS + MIG_KEYS


def _rank(key: str) -> tuple:
    if key.startswith("box/") and key[4:] in BOX_KEYS:
        return (0, BOX_KEYS.index(key[4:]), key)
    if key in _FIRST:
        return (1, _FIRST.index(key), key)
    if key.startswith("kp/") and key[3:] in KP_KEYS:
        return (2, KP_KEYS.index(key[3:]), key)
    if key in _QUALITY:
        return (3, _QUALITY.index(key), key)
    cond = _cond_name(key)
    if cond is not None:  # generated first, then the real-image ceiling
        names = _cond_names()
        return (3, 100 + names.index(cond) + (len(names) if key.startswith("cond/real/") else 0), key)
    if key in _comp_keys():
        return (3, 1000 + _comp_keys().index(key), key)
    return (4, 0, key)


def order_metrics(keys: Iterable[str]) -> list[str]:
    """``box/`` COCO keys (``summarize()`` order), ``box/mIoU`` and ``box/success``, ``kp/`` COCO keys,
    then FID, KID and CLIP, then the ``cond/`` keys (``scoring.condition.METRIC_NAMES`` order,
    ``cond/real/`` after them), then the ``comp/`` and ``mig/`` keys, then the rest by name."""
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
    k = base_key(key)
    if _cond_name(k) in _COND_WIDE:
        return 2
    if k.split("/")[0] in ("fid", "fd_dinov2", "pref"):
        return 2
    return 4 if k.split("/")[0] == "kid" else 3


def fmt(key: str, value: float | None, ci: tuple[float, float] | None = None) -> str:
    """``0.213 [0.190, 0.240]``; an empty string for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    d = decimals(key)
    text = f"{value:.{d}f}"
    if ci is not None:
        text += f" [{ci[0]:.{d}f}, {ci[1]:.{d}f}]"
    return text
