"""COCO / LVIS AP of resampled image sets, for bootstrap intervals over layouts.

A bootstrap draw is a multiset of the run's images (the images of the drawn layouts, a layout
drawn twice counting twice). Its AP is the AP that COCOeval would give on a dataset holding those
images, duplicates as separate images. :class:`ImageSetAP` gets it without matching detections
again: matching is per image and category, so every image is evaluated once and each draw only
re-accumulates the per-image matches of the drawn images in draw order
(:class:`~gligen_eval.scoring.matches.ImageMatches`, about 10 ms per draw at 5000 images).

Only the AP over IoU .50:.95, area ``all`` and the largest ``max_dets`` is computed (the key
``AP``). When the per-image records cannot be had, the draw's dataset is built and evaluated in
full instead (same numbers, slower), and :meth:`ImageSetAP.recompute` always does that (the tests
compare the two).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from gligen_eval.scoring import coco


class ImageSetAP:
    """AP of any multiset of the images of ``gt`` (COCO dicts, as :func:`coco.run_coco_eval` takes).

    Args:
        gt, results: COCO ground truth and results; every image of ``gt`` is a column.
        iou_type: ``"bbox"`` or ``"keypoints"``.
        lvis_style: LVIS-style evaluation (categories need ``frequency``).
        max_dets: as in :func:`coco.run_coco_eval`; AP uses the largest.
        kpt_sigmas: per-keypoint OKS sigmas (default COCO's).
    """

    def __init__(
        self,
        gt: Mapping[str, Any],
        results: Sequence[Mapping[str, Any]],
        *,
        iou_type: coco.IouType = "bbox",
        lvis_style: bool = False,
        max_dets: int | Sequence[int] | None = None,
        kpt_sigmas: Sequence[float] | None = None,
    ) -> None:
        self.iou_type = iou_type
        self.lvis_style = bool(lvis_style)
        self.max_dets = coco._resolve_max_dets(iou_type, self.lvis_style, max_dets)
        self.kpt_sigmas = None if kpt_sigmas is None else list(kpt_sigmas)
        self.gt = coco.prepare_gt(gt, iou_type=iou_type)
        self.results = coco.prepare_results(list(results), self.gt, iou_type=iou_type)
        self.image_ids = [im["id"] for im in self.gt["images"]]
        self._by_image: tuple[dict[int, list], dict[int, list]] | None = None
        try:
            self._fast: _Accumulator | None = _Accumulator(self)
        except (ImportError, AttributeError, TypeError, ValueError, KeyError):
            self._fast = None

    @property
    def fast(self) -> bool:
        """Whether draws re-accumulate per-image results (else each draw is evaluated in full)."""
        return self._fast is not None

    def __len__(self) -> int:
        return len(self.image_ids)

    def ap(self, columns: Sequence[int] | np.ndarray) -> float:
        """AP of the images at positions ``columns`` of ``gt["images"]`` (repeats allowed); NaN when undefined."""
        cols = np.asarray(columns, dtype=np.int64).reshape(-1)
        if cols.size == 0:
            return math.nan
        if self._fast is not None:
            return self._fast.ap(cols)
        return self.recompute(cols)

    def recompute(self, columns: Sequence[int] | np.ndarray) -> float:
        """The same number by building the drawn dataset (duplicates renumbered) and evaluating it."""
        cols = np.asarray(columns, dtype=np.int64).reshape(-1)
        if cols.size == 0:
            return math.nan
        if self._by_image is None:
            anns: dict[int, list] = {}
            res: dict[int, list] = {}
            for a in self.gt["annotations"]:
                anns.setdefault(a["image_id"], []).append(a)
            for r in self.results:
                res.setdefault(r["image_id"], []).append(r)
            self._by_image = anns, res
        anns, res = self._by_image
        images, new_anns, new_res = [], [], []
        for j, c in enumerate(cols.tolist(), start=1):
            img = self.gt["images"][c]
            images.append({**img, "id": j})
            for a in anns.get(img["id"], ()):
                new_anns.append({**a, "id": len(new_anns) + 1, "image_id": j})
            for r in res.get(img["id"], ()):
                new_res.append({k: v for k, v in r.items() if k not in ("id", "area", "iscrowd")} | {"image_id": j})
        gt = {**self.gt, "images": images, "annotations": new_anns}
        out = coco.run_coco_eval(gt, new_res, iou_type=self.iou_type, lvis_style=self.lvis_style,
                                 max_dets=self.max_dets, kpt_sigmas=self.kpt_sigmas)  # fmt: skip
        ap = out.metrics["AP"]
        return math.nan if ap == -1.0 else float(ap)


class _Accumulator:
    """The per-image matches of one evaluation, re-accumulated per draw (area ``all`` only)."""

    def __init__(self, owner: ImageSetAP) -> None:
        from gligen_eval.scoring.matches import ImageMatches

        self._matches = ImageMatches(owner.gt, owner.results, iou_type=owner.iou_type, lvis_style=owner.lvis_style,
                                     max_dets=owner.max_dets, kpt_sigmas=owner.kpt_sigmas, all_areas=False)  # fmt: skip

    def ap(self, cols: np.ndarray) -> float:
        return self._matches.ap(cols)


def bootstrap_ap_interval(
    ap_set: ImageSetAP,
    columns_by_layout: Mapping[str, Sequence[int]],
    *,
    n_boot: int,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile interval of AP over layouts drawn with replacement (each layout brings its images)."""
    from gligen_eval.scoring.stats import bootstrap_ci

    items = {k: np.asarray(v, dtype=np.int64) for k, v in columns_by_layout.items()}
    return bootstrap_ci(items, _DrawAP(ap_set), n_boot=n_boot, alpha=alpha, seed=seed)


class _DrawAP:
    """AP of the images of the drawn layouts; ``for_items`` maps a draw's layout indices to columns at once."""

    def __init__(self, ap_set: ImageSetAP) -> None:
        self.ap_set = ap_set

    def __call__(self, drawn: list[np.ndarray]) -> float:
        return self.ap_set.ap(np.concatenate(drawn)) if drawn else math.nan

    def for_items(self, items: list[np.ndarray]):
        flat = np.concatenate(items) if items else np.zeros(0, dtype=np.int64)
        lens = np.asarray([len(v) for v in items], dtype=np.int64)
        starts = np.cumsum(lens) - lens

        def on_draw(row: np.ndarray) -> float:
            ln = lens[row]
            pos = np.arange(int(ln.sum()), dtype=np.int64) - np.repeat(np.cumsum(ln) - ln - starts[row], ln)
            return self.ap_set.ap(flat[pos]) if row.size else math.nan

        return on_draw
