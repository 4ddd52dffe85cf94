"""OKS as the scoring computes it: the COCO backends' own keypoint similarity (``COCOeval.ious``)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from gligen_eval.scoring import coco


def backend_oks(pairs: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]], backend: str = "pycocotools") -> list[float]:
    """OKS of each ``(ground truth, prediction)`` pair (``keypoints`` flat ``3K`` in pixels; the ground truth
    also ``area`` and ``bbox``), each pair in an image of its own, from one evaluation by ``backend``."""
    images = [{"id": i, "width": 10000, "height": 10000} for i in range(1, len(pairs) + 1)]
    anns = [{"id": i, "image_id": i, "category_id": 1, "keypoints": [float(v) for v in g["keypoints"]],
             "bbox": [float(v) for v in g["bbox"]], "area": float(g["area"])} for i, (g, _) in enumerate(pairs, 1)]  # fmt: skip
    res = [{"image_id": i, "category_id": 1, "keypoints": [float(v) for v in d["keypoints"]], "score": 1.0}
           for i, (_, d) in enumerate(pairs, 1)]  # fmt: skip
    gt = coco.prepare_gt({"images": images, "annotations": anns, "categories": [coco.person_category()]}, iou_type="keypoints")
    results = coco.prepare_results(res, gt, iou_type="keypoints")
    with coco._maybe_quiet(True):
        E = coco._backend_eval(gt, results, iou_type="keypoints", backend=backend, lvis_style=False, max_dets=(20,),
                               kpt_sigmas=None, quiet=True)  # fmt: skip
    return [float(E.ious[(i, 1)][0][0]) for i in range(1, len(pairs) + 1)]
