"""COCO AP of any multiset of a run's images from one evaluation: per-image matches, re-accumulated.

Matching in COCOeval is per image and category, so a bootstrap draw (a multiset of the run's
images, a layout drawn twice counting twice) needs no new matching: :class:`ImageMatches` keeps
the per-image records of one evaluation (``evalImgs``: each detection's score, its match and
ignore flags per IoU threshold and area, the ground truth that counts per area) as flat arrays,
and :meth:`ImageMatches.accumulate` redoes only COCOeval's ``accumulate`` for the drawn images, in
draw order, with its exact arithmetic (cumulative sums, ``tp / (tp + fp + eps)``, the precision
envelope, the 101 recall thresholds). The precision and recall arrays are those that evaluating a
dataset of the drawn images would give (duplicates as separate images, tie order included), so the
summary means are bit-identical to that evaluation's (the tests compare them).

Per draw this costs a gather, one stable sort of the drawn detections and a loop over categories
-- milliseconds at 5000 images, where evaluating the drawn dataset takes a second or more.
The records come from hotcoco (pycocotools when hotcoco is missing), whatever the scoring backend.
"""

from __future__ import annotations

import gc
import math
from types import SimpleNamespace
from typing import Any, Mapping, Sequence

import numpy as np

from gligen_eval.scoring import coco

_EPS = np.spacing(1)


class ImageMatches:
    """Per-image COCO match records of ``gt`` and ``results``, re-accumulated for any image multiset.

    Args:
        gt, results: COCO ground truth and results (as :func:`coco.run_coco_eval` takes); every image
            of ``gt`` is a column, in the order of ``gt["images"]``.
        iou_type: ``"bbox"`` or ``"keypoints"``.
        lvis_style: LVIS-style matching (categories need ``frequency``).
        max_dets: as in :func:`coco.run_coco_eval`.
        kpt_sigmas: per-keypoint OKS sigmas (default COCO's).
        all_areas: keep every area range (needed for :meth:`summary`); ``False`` keeps area ``all``
            only, enough for :meth:`ap` and four times cheaper to set up.
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
        all_areas: bool = True,
    ) -> None:
        self.iou_type = iou_type
        self.lvis_style = bool(lvis_style)
        self.max_dets = coco._resolve_max_dets(iou_type, self.lvis_style, max_dets)
        self.gt = coco.prepare_gt(gt, iou_type=iou_type)
        res = coco.prepare_results(list(results), self.gt, iou_type=iou_type)
        E = _evaluated(self.gt, res, iou_type=iou_type, lvis_style=self.lvis_style, max_dets=self.max_dets,
                       kpt_sigmas=kpt_sigmas, all_areas=all_areas)  # fmt: skip
        p = E.params
        self.iou_thrs = np.asarray(p.iouThrs, dtype=np.float64)
        self.rec_thrs = np.asarray(p.recThrs, dtype=np.float64)
        self.area_lbls = list(p.areaRngLbl)
        self.cat_ids = [int(c) for c in p.catIds]
        self.image_ids = [int(im["id"]) for im in self.gt["images"]]
        gc_was_on = gc.isenabled()
        gc.disable()  # hotcoco builds ~10^5 small dicts here; the collector would make that quadratic
        self._least_tp_cache: dict[int, np.ndarray] = {}
        try:
            self._flatten(E.evalImgs, [list(map(float, r)) for r in p.areaRng])
        finally:
            if gc_was_on:
                gc.enable()

    def __len__(self) -> int:
        return len(self.image_ids)

    # ----------------------------------------------------------------------------------------
    # set-up: the records as flat arrays

    def _flatten(self, eval_imgs: Sequence[Mapping[str, Any] | None], area_rngs: list[list[float]]) -> None:
        n_img, n_cat, n_area, n_thr = len(self.image_ids), len(self.cat_ids), len(area_rngs), self.iou_thrs.size
        col = {i: c for c, i in enumerate(self.image_ids)}
        cat = {c: k for k, c in enumerate(self.cat_ids)}
        area_of = {tuple(r): a for a, r in enumerate(area_rngs)}
        gt_count = np.zeros((n_area, n_img, n_cat), dtype=np.int64)
        blocks: dict[tuple[int, int], list[Any]] = {}
        for e in eval_imgs:
            if not e:
                continue
            a = area_of[tuple(float(v) for v in e["aRng"])]
            i, k = col[int(e["image_id"])], cat[int(e["category_id"])]
            gt_count[a, i, k] = int(np.count_nonzero(np.logical_not(np.asarray(e["gtIgnore"], dtype=bool))))
            n = len(e["dtIds"])
            if n == 0:
                continue
            blk = blocks.get((i, k))
            if blk is None:
                blk = blocks[(i, k)] = [list(e["dtIds"]), np.asarray(e["dtScores"], dtype=np.float64), [None] * n_area]
            elif list(e["dtIds"]) != blk[0]:
                raise ValueError(f"image {e['image_id']}, category {e['category_id']}: detection order differs between areas")
            dtm = np.asarray(e["dtMatches"], dtype=np.float64).reshape(n_thr, n) != 0
            dtig = np.asarray(e["dtIgnore"], dtype=bool).reshape(n_thr, n)
            blk[2][a] = (dtm, dtig)
        keys = sorted(blocks)  # by image column, then category
        sizes = np.asarray([blocks[key][1].size for key in keys], dtype=np.int64)
        n_det = int(sizes.sum())
        self._det_cat = np.repeat(np.asarray([k for _, k in keys], dtype=np.int64), sizes)
        self._det_rank = (np.arange(n_det) - np.repeat(np.cumsum(sizes) - sizes, sizes)).astype(np.int64)
        scores = np.concatenate([blocks[key][1] for key in keys]) if keys else np.zeros(0)
        # one integer per detection, ordered as (category, -score), equal for equal (category, score)
        order = np.lexsort((-scores, self._det_cat))
        new = np.ones(n_det, dtype=np.int64)
        if n_det:
            c, sc = self._det_cat[order], scores[order]
            new[1:] = (c[1:] != c[:-1]) | (sc[1:] != sc[:-1])
        self._sort_key = np.empty(n_det, dtype=np.int64)
        self._sort_key[order] = np.cumsum(new)
        self._tp = np.zeros((n_area, n_thr, n_det), dtype=bool)
        self._fp = np.zeros((n_area, n_thr, n_det), dtype=bool)
        self._live = np.zeros((n_area, n_det), dtype=bool)
        start = 0
        for key, size in zip(keys, sizes.tolist()):
            for a, flags in enumerate(blocks[key][2]):
                if flags is None:
                    raise ValueError(f"image column {key[0]}: no record for area {self.area_lbls[a]!r}")
                dtm, dtig = flags
                self._tp[a, :, start:start + size] = dtm & ~dtig
                self._fp[a, :, start:start + size] = ~dtm & ~dtig
                self._live[a, start:start + size] = ~dtig.all(axis=0)
            start += size
        per_image = np.bincount(np.asarray([i for i, _ in keys], dtype=np.int64), weights=sizes, minlength=n_img)
        self._img_len = per_image.astype(np.int64)
        self._img_start = np.cumsum(self._img_len) - self._img_len
        self._gt_count = gt_count

    # ----------------------------------------------------------------------------------------
    # per draw

    def accumulate(self, columns: Sequence[int] | np.ndarray, *, areas: Sequence[str] | None = None,
                   recall: bool = True) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """``(precision, recall)`` of the images at ``columns`` (repeats allowed), shaped as COCOeval's.

        ``precision`` is ``T x R x K x A x M`` and ``recall`` ``T x K x A x M``, ``-1`` where a category
        has no ground truth; precision is filled at the largest ``max_dets`` only (the one every
        summary AP reads). ``areas`` limits the area ranges computed (the others stay ``-1``);
        ``recall=False`` leaves recall at ``-1``.
        """
        cols = np.asarray(columns, dtype=np.int64).reshape(-1)
        n_thr, n_rec, n_cat, n_md = self.iou_thrs.size, self.rec_thrs.size, len(self.cat_ids), len(self.max_dets)
        precision = -np.ones((n_thr, n_rec, n_cat, len(self.area_lbls), n_md))
        recalls = -np.ones((n_thr, n_cat, len(self.area_lbls), n_md))
        lens = self._img_len[cols]
        n = int(lens.sum())
        idx = np.arange(n, dtype=np.int64) - np.repeat(np.cumsum(lens) - lens - self._img_start[cols], lens)
        # COCOeval's order: by category, then score (descending); equal scores keep draw order
        idx = idx[np.argsort(self._sort_key[idx], kind="stable")]
        mult = np.bincount(cols, minlength=len(self.image_ids)).astype(np.int64)
        wanted = range(len(self.area_lbls)) if areas is None else [self.area_lbls.index(a) for a in areas]
        for a in wanted:
            npig = mult @ self._gt_count[a]
            has_gt = npig > 0
            # a detection ignored at every IoU threshold adds nothing to any count: leaving it out
            # changes no precision or recall value (its entries would repeat the previous ones)
            live = self._live[a][idx]
            ia = idx if live.all() else idx[live]
            bounds = np.searchsorted(self._det_cat[ia], np.arange(n_cat + 1))
            nd = np.diff(bounds)
            tp, fp = self._tp[a][:, ia], self._fp[a][:, ia]
            tpc0 = np.zeros((n_thr, ia.size + 1), dtype=np.int64)
            fpc0 = np.zeros((n_thr, ia.size + 1), dtype=np.int64)
            np.cumsum(tp, axis=1, out=tpc0[:, 1:])
            np.cumsum(fp, axis=1, out=fpc0[:, 1:])
            if recall:
                self._recall(recalls, a, ia, tp, tpc0, bounds, nd, npig, has_gt)
            m = n_md - 1
            for k in np.flatnonzero(has_gt).tolist():
                s, e = int(bounds[k]), int(bounds[k + 1])
                if e > s:
                    precision[:, :, k, a, m] = self._precision(tpc0[:, s:e + 1], fpc0[:, s:e + 1], int(npig[k]))
                else:
                    precision[:, :, k, a, m] = 0.0
        return precision, recalls

    def _precision(self, tpc: np.ndarray, fpc: np.ndarray, npig: int) -> np.ndarray:
        """COCOeval's interpolated precision (``T x R``) of one category from its cumulative counts.

        ``tpc``/``fpc`` are the running counts with the count before the category in column 0. The
        recall thresholds are met where ``tp / npig >= thr``; as ``tp`` is an integer and the float
        division is monotone, that is ``tp >= j_r`` for the least such integer ``j_r``, so one
        exact integer search covers every IoU threshold.
        """
        n_thr, nd = tpc.shape[0], tpc.shape[1] - 1
        tp_int = tpc[:, 1:] - tpc[:, :1]
        tp_sum = tp_int.astype(np.float64)
        fp_sum = (fpc[:, 1:] - fpc[:, :1]).astype(np.float64)
        pr = tp_sum / (fp_sum + tp_sum + _EPS)
        pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
        need = self._least_tp(npig)
        off = np.arange(n_thr, dtype=np.int64)[:, None] * (npig + 2)
        pos = np.searchsorted((tp_int + off).reshape(-1), (need[None, :] + off).reshape(-1), side="left")
        pos = pos.reshape(n_thr, -1)
        ok = pos < (np.arange(1, n_thr + 1, dtype=np.int64)[:, None] * nd)
        q = np.zeros((n_thr, self.rec_thrs.size))
        q[ok] = pr.reshape(-1)[pos[ok]]
        return q

    def _least_tp(self, npig: int) -> np.ndarray:
        """Per recall threshold, the least integer ``j`` with ``j / npig >= thr`` (in float64)."""
        hit = self._least_tp_cache.get(npig)
        if hit is None:
            thr = self.rec_thrs
            j = np.maximum(np.floor(thr * npig).astype(np.int64) - 2, 0)
            while True:
                low = j.astype(np.float64) / npig < thr
                if not low.any():
                    break
                j = j + low
            while True:  # (step back where the guess overshot)
                back = (j > 0) & ((j - 1).astype(np.float64) / npig >= thr)
                if not back.any():
                    break
                j = j - back
            hit = self._least_tp_cache[npig] = j
        return hit

    def _recall(self, out: np.ndarray, a: int, idx: np.ndarray, tp: np.ndarray, tpc0: np.ndarray, bounds: np.ndarray,
                nd: np.ndarray, npig: np.ndarray, has_gt: np.ndarray) -> None:  # fmt: skip
        """COCOeval's recall (``rc[-1]``, 0 without detections) at every ``max_dets`` for area ``a``."""
        n_thr, n_cat = tp.shape[0], len(self.cat_ids)
        denom = np.where(has_gt, npig, 1)
        rank = self._det_rank[idx]
        cats = self._det_cat[idx]
        for m, md in enumerate(self.max_dets):
            if m == len(self.max_dets) - 1 or bool((rank < md).all()):
                count = tpc0[:, bounds[1:]] - tpc0[:, bounds[:-1]]
                kept = nd
            else:
                keep = rank < md
                c0 = np.zeros((n_thr, tp.shape[1] + 1), dtype=np.int64)
                np.cumsum(tp & keep, axis=1, out=c0[:, 1:])
                count = c0[:, bounds[1:]] - c0[:, bounds[:-1]]
                kept = np.bincount(cats[keep], minlength=n_cat)
            rec = count.astype(np.float64) / denom
            rec[:, kept == 0] = 0.0
            rec[:, ~has_gt] = -1.0
            out[:, :, a, m] = rec

    def ap(self, columns: Sequence[int] | np.ndarray) -> float:
        """AP (IoU .50:.95, area ``all``, largest ``max_dets``) of the images at ``columns``; NaN when undefined."""
        cols = np.asarray(columns, dtype=np.int64).reshape(-1)
        if cols.size == 0:
            return math.nan
        precision, _ = self.accumulate(cols, areas=["all"], recall=False)
        s = precision[:, :, :, self.area_lbls.index("all"), -1]
        v = s[s > -1]
        return float(np.mean(v)) if v.size else math.nan

    def summary(self, columns: Sequence[int] | np.ndarray) -> dict[str, float]:
        """All summary metrics (:func:`coco.metric_keys`) of the images at ``columns``, ``-1`` where undefined."""
        cols = np.asarray(columns, dtype=np.int64).reshape(-1)
        precision, recall = self.accumulate(cols)
        E = SimpleNamespace(params=SimpleNamespace(areaRngLbl=self.area_lbls, maxDets=list(self.max_dets),
                                                   iouThrs=self.iou_thrs, catIds=self.cat_ids),
                            eval={"precision": precision, "recall": recall})  # fmt: skip
        return coco._summarize(E, self.iou_type, self.lvis_style, self.max_dets, self.gt["categories"])


def _evaluated(gt: dict[str, Any], results: list[dict[str, Any]], *, iou_type: str, lvis_style: bool,
               max_dets: tuple[int, ...], kpt_sigmas: Sequence[float] | None, all_areas: bool) -> Any:  # fmt: skip
    """A COCOeval (hotcoco, else pycocotools) after ``evaluate()``, with pycocotools-style ``evalImgs``."""
    try:
        E = coco._hotcoco_eval(gt, [dict(r) for r in results], iou_type=iou_type, lvis_style=lvis_style,
                               kpt_sigmas=kpt_sigmas)  # fmt: skip
    except ImportError:
        if lvis_style:
            raise
        E = None
    if E is None:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        cg = COCO()
        cg.dataset = gt
        cg.createIndex()
        res = [dict(r) for r in results]
        if res and iou_type != "bbox":
            cd = cg.loadRes(res)
        else:
            cd = COCO()
            cd.dataset = coco._bbox_results_dataset(gt, res)
            cd.createIndex()
        E = COCOeval(cg, cd, iou_type)
        if kpt_sigmas is not None:
            E.params.kpt_oks_sigmas = np.asarray(kpt_sigmas, dtype=float)
    p = E.params
    if not all_areas:
        a = list(p.areaRngLbl).index("all")
        p.areaRng, p.areaRngLbl = [list(p.areaRng[a])], ["all"]
    p.maxDets = list(max_dets)
    with coco._maybe_quiet(True):
        E.evaluate()
    return E
