"""Bootstrap intervals over layouts of AP (per-image matches re-accumulated) and of per-instance means."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from gligen_eval.records import InstanceRecord, Layout, SampleRecord


def _columns_by_layout(samples: Sequence[SampleRecord]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        out.setdefault(s.layout_id, []).append(i)
    return out


def ap_interval(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]], samples: Sequence[SampleRecord], *,
                iou_type: str = "bbox", lvis_style: bool = False, n_boot: int, alpha: float,
                seed: int) -> tuple[float, float]:  # fmt: skip
    """Bootstrap interval of AP over layouts; the images of ``gt`` (as :func:`coco.build_eval_inputs`
    orders them: by sample key) carry their ``layout_id``."""
    from gligen_eval.scoring.resample import ImageSetAP, bootstrap_ap_interval

    ap_set = ImageSetAP(gt, results, iou_type=iou_type, lvis_style=lvis_style)  # type: ignore[arg-type]
    by_layout: dict[str, list[int]] = {}
    for i, im in enumerate(gt["images"]):
        by_layout.setdefault(im["layout_id"], []).append(i)
    if sorted(by_layout) != sorted(_columns_by_layout(samples)):
        raise ValueError("the ground truth's images are not the images of these samples")
    columns = {lid: by_layout[lid] for lid in _columns_by_layout(samples)}  # layouts in sample order
    return bootstrap_ap_interval(ap_set, columns, n_boot=n_boot, alpha=alpha, seed=seed)


def instance_intervals(prefix: str, records: Sequence[InstanceRecord], layouts: Sequence[Layout], *, n_boot: int,
                       alpha: float, seed: int) -> dict[str, float]:  # fmt: skip
    """``<prefix>/mIoU`` and ``<prefix>/success`` intervals (pooled over each layout's instances)."""
    from gligen_eval.scoring import stats

    out: dict[str, float] = {}
    for key, attr in (("mIoU", "best_iou"), ("success", "hit")):
        per_layout: dict[str, list[float]] = {lay.layout_id: [] for lay in layouts}
        for r in records:
            per_layout.setdefault(r.layout_id, []).append(float(getattr(r, attr)))
        lo, hi = stats.bootstrap_ci(per_layout, "pooled_mean", n_boot=n_boot, alpha=alpha, seed=seed)
        out.update(stats.ci_keys(f"{prefix}/{key}", lo, hi))
    return out


# --------------------------------------------------------------------------------------------
# CLIP


def ci(key: str, bounds: tuple[float, float]) -> dict[str, float]:
    """``{key/lo, key/hi}``."""
    from gligen_eval.scoring.stats import ci_keys

    return ci_keys(key, *bounds)
