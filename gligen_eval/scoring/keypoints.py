"""Keypoint scoring: OKS AP of pose detections against the layouts' persons, and how well each
keypoint type is placed."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from gligen_eval.records import Detection, Layout, SampleRecord


def has_keypoints(layout: Layout) -> bool:
    return any(o.keypoints is not None for o in layout.objects)


def evaluate_keypoints(
    layouts: Sequence[Layout],
    samples: Sequence[SampleRecord],
    detections: Mapping[str, Sequence[Detection]],
    *,
    backend: str = "hotcoco",
) -> tuple[Any, dict, list]:
    """OKS AP (COCOeval keypoints) of pose detections against the layouts' persons with keypoints.

    Returns ``(CocoResult, gt, results)``. Persons whose keypoints are all unlabelled are ignored, as in COCO.
    """
    from gligen_eval.scoring import coco

    by_id = {lay.layout_id: lay for lay in layouts}
    gt, results = coco.build_eval_inputs(
        [(s.sample_key, by_id[s.layout_id], s.width, s.height, detections[s.sample_key]) for s in samples],
        iou_type="keypoints",
    )  # fmt: skip
    return coco.run_coco_eval(gt, results, iou_type="keypoints", backend=backend), gt, results


def keypoint_breakdown(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]],
                       sigmas: Sequence[float] | None = None) -> dict[str, dict[str, float]]:  # fmt: skip
    """Per keypoint type: how well the best-matching detection places it.

    For every ground-truth person with labelled keypoints, the detection of the same image with the
    highest OKS is taken (none: every point scores 0). Each labelled point gets its keypoint similarity
    ``exp(-d^2 / (2 area (2 sigma)^2))`` (the per-point term of OKS, COCOeval's constants). Per keypoint
    name: ``similarity`` (mean), ``pck`` (fraction with similarity >= 0.5) and ``n`` (labelled points).
    """
    import numpy as np

    from gligen_eval.records import COCO_KEYPOINT_NAMES
    from gligen_eval.scoring.coco import COCO_KEYPOINT_SIGMAS

    sig = np.asarray(sigmas if sigmas is not None else COCO_KEYPOINT_SIGMAS, dtype=float)
    var = (2 * sig) ** 2
    preds: dict[Any, list[np.ndarray]] = {}
    for r in results:
        preds.setdefault(r["image_id"], []).append(np.asarray(r["keypoints"], dtype=float).reshape(-1, 3))
    sums = np.zeros(sig.size)
    good = np.zeros(sig.size)
    counts = np.zeros(sig.size)
    for a in gt["annotations"]:
        g = np.asarray(a["keypoints"], dtype=float).reshape(-1, 3)
        labelled = g[:, 2] > 0
        if not labelled.any():
            continue
        area = float(a.get("area", a["bbox"][2] * a["bbox"][3]))
        best = np.zeros(sig.size)
        best_oks = -1.0
        for d in preds.get(a["image_id"], ()):
            dist2 = (d[:, 0] - g[:, 0]) ** 2 + (d[:, 1] - g[:, 1]) ** 2
            ks = np.exp(-dist2 / var / (area + np.spacing(1)) / 2)
            o = float(ks[labelled].mean())
            if o > best_oks:
                best_oks, best = o, ks
        sums[labelled] += best[labelled]
        good[labelled] += best[labelled] >= 0.5
        counts[labelled] += 1
    names = COCO_KEYPOINT_NAMES if sig.size == len(COCO_KEYPOINT_NAMES) else [str(i) for i in range(sig.size)]
    return {
        nm: {"similarity": float(sums[k] / counts[k]), "pck": float(good[k] / counts[k]), "n": int(counts[k])}
        for k, nm in enumerate(names) if counts[k] > 0
    }  # fmt: skip


# --------------------------------------------------------------------------------------------
