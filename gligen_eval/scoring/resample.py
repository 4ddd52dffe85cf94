"""COCO / LVIS AP of resampled image sets, for bootstrap intervals over layouts.

A bootstrap draw is a multiset of the run's images (the images of the drawn layouts, a layout
drawn twice counting twice). Its AP is the AP that COCOeval would give on a dataset holding those
images, duplicates as separate images. :class:`ImageSetAP` gets it without matching detections
again: matching is per image and category, so every image is evaluated once
(faster-coco-eval, ``separate_eval=True``) and each draw only re-accumulates the per-image
results of the drawn images in draw order (faster-coco-eval's C++ accumulate).

Only the AP over IoU .50:.95, area ``all`` and the largest ``max_dets`` is computed (the key
``AP``). The per-image results are faster-coco-eval internals; when they are not available the
draw's dataset is built and evaluated in full instead (same numbers, slower), and
:meth:`ImageSetAP.recompute` always does that (the tests compare the two).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Mapping, Sequence

import numpy as np

from gligen_eval.scoring import coco


def _quiet(*_a: Any, **_k: Any) -> None:
    return None


def _mean_valid(precision: np.ndarray) -> float:
    v = precision[precision > -1]
    return float(v.mean()) if v.size else math.nan


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
        except (ImportError, AttributeError, TypeError, ValueError):
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
        out = coco.run_coco_eval(gt, new_res, iou_type=self.iou_type, backend="faster", lvis_style=self.lvis_style,
                                 max_dets=self.max_dets, kpt_sigmas=self.kpt_sigmas)  # fmt: skip
        ap = out.metrics["AP"]
        return math.nan if ap == -1.0 else float(ap)


class _Accumulator:
    """faster-coco-eval per-image results of one evaluation, re-accumulated per draw."""

    def __init__(self, owner: ImageSetAP) -> None:
        from faster_coco_eval import COCO, COCOeval_faster
        from faster_coco_eval import faster_eval_api_cpp as _C

        self._accumulate = _C.COCOevalAccumulate
        gt = owner.gt
        coco_gt = COCO(copy.deepcopy(gt), print_function=_quiet)
        results = [dict(r) for r in owner.results]
        if owner.iou_type == "bbox":
            for i, r in enumerate(results, start=1):
                bb = r["bbox"]
                r.update(id=i, area=bb[2] * bb[3], iscrowd=0)
            coco_dt = COCO({"images": list(gt["images"]), "categories": list(gt["categories"]), "annotations": results},
                           print_function=_quiet)  # fmt: skip
        else:
            coco_dt = coco_gt.loadRes(results) if results else COCO(
                {"images": list(gt["images"]), "categories": list(gt["categories"]), "annotations": []},
                print_function=_quiet)  # fmt: skip
        E = COCOeval_faster(coco_gt, coco_dt, owner.iou_type, lvis_style=owner.lvis_style, print_function=_quiet,
                            kpt_oks_sigmas=owner.kpt_sigmas, separate_eval=True)  # fmt: skip
        p = E.params
        a = list(p.areaRngLbl).index("all")
        p.areaRng, p.areaRngLbl = [p.areaRng[a]], ["all"]
        p.maxDets = list(owner.max_dets)
        E.evaluate()
        evals = E._evalImgs_cpp
        params = copy.deepcopy(E._paramsEval)
        n_cat, n_img = len(params.catIds), len(params.imgIds)
        if len(evals) != n_cat * n_img:
            raise ValueError(f"unexpected per-image result count {len(evals)} != {n_cat} x {n_img}")
        arr = np.empty(len(evals), dtype=object)
        arr[:] = evals
        self._evals = arr.reshape(n_cat, n_img)
        col = {int(i): k for k, i in enumerate(params.imgIds)}
        self._columns = np.asarray([col[int(i)] for i in owner.image_ids], dtype=np.int64)
        self._params = params

    def ap(self, cols: np.ndarray) -> float:
        sel = self._evals[:, self._columns[cols]].reshape(-1).tolist()
        self._params.imgIds = list(range(1, cols.size + 1))
        out = self._accumulate(self._params, sel)
        precision = np.asarray(out["precision"])  # T x R x K x A(1) x M
        return _mean_valid(precision[:, :, :, 0, -1])


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

    def stat(drawn: list[np.ndarray]) -> float:
        return ap_set.ap(np.concatenate(drawn)) if drawn else math.nan

    return bootstrap_ci(items, stat, n_boot=n_boot, alpha=alpha, seed=seed)
