"""Re-accumulated per-image COCO matches equal evaluating the drawn dataset, bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gligen_eval.scoring import coco
from gligen_eval.scoring.matches import ImageMatches


def _data(n: int = 12, seed: int = 0, *, keypoints: bool = False, lvis: bool = False):
    """Boxes of 3 classes (one never in the ground truth), crowd boxes, tied scores, several
    detections per image and class (so that max_dets truncates), empty images."""
    rng = np.random.default_rng(seed)
    images = [{"id": 10 + 3 * i, "width": 96, "height": 96} for i in range(n)]
    anns, res = [], []
    for im in images[:-2]:  # the last two images hold nothing
        for _ in range(int(rng.integers(1, 5))):
            x, y = rng.uniform(0, 60, 2)
            w, h = rng.uniform(3, 36, 2)  # small, medium and large boxes
            c = 1 if keypoints else int(rng.integers(1, 3))
            a = {"id": len(anns) + 1, "image_id": im["id"], "bbox": [x, y, w, h], "category_id": c,
                 "iscrowd": int(not keypoints and rng.random() < 0.1)}  # fmt: skip
            if keypoints:
                gx, gy = x + rng.uniform(0, w, 17), y + rng.uniform(0, h, 17)
                a["keypoints"] = [v for p in zip(gx, gy, [2] * 17) for v in p]
            anns.append(a)
            for _ in range(int(rng.integers(0, 3))):
                r = {"image_id": im["id"], "category_id": c, "score": float(rng.choice([0.3, 0.5, 0.9, rng.random()])),
                     "bbox": [x + rng.normal(0, 3), y + rng.normal(0, 3), w * rng.uniform(0.7, 1.3), h]}  # fmt: skip
                if keypoints:
                    r["keypoints"] = [v for p in zip(gx + rng.normal(0, 2, 17), gy + rng.normal(0, 2, 17), [1] * 17)
                                      for v in p]  # fmt: skip
                res.append(r)
        if not keypoints:  # false positives, some of a class without ground truth
            for _ in range(int(rng.integers(0, 3))):
                x, y = rng.uniform(0, 70, 2)
                res.append({"image_id": im["id"], "category_id": int(rng.integers(1, 4)), "score": 0.5,
                            "bbox": [x, y, 12.0, 20.0]})  # fmt: skip
    cats = [coco.person_category()] if keypoints else [{"id": c, "name": f"c{c}"} for c in (1, 2, 3)]
    if lvis:
        for c in cats:
            c["frequency"] = "rcf"[c["id"] % 3]
        for im in images:
            im["neg_category_ids"], im["not_exhaustive_category_ids"] = [3], [2]
    return {"images": images, "annotations": anns, "categories": cats}, res


def _drawn(gt, res, cols):
    """The dataset of the images at ``cols`` (duplicates as new images, in draw order)."""
    images, anns, out = [], [], []
    for j, c in enumerate(cols, start=1):
        im = gt["images"][c]
        images.append({**im, "id": j})
        anns += [{**a, "id": len(anns) + 1 + k, "image_id": j}
                 for k, a in enumerate(a for a in gt["annotations"] if a["image_id"] == im["id"])]  # fmt: skip
        out += [{**r, "image_id": j} for r in res if r["image_id"] == im["id"]]
    return {**gt, "images": images, "annotations": anns}, out


def _pycocotools_eval(gt, res, iou_type, max_dets):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    g = coco.prepare_gt(gt, iou_type=iou_type)
    cg = COCO()
    cg.dataset = g
    cg.createIndex()
    E = COCOeval(cg, cg.loadRes(coco.prepare_results(res, g, iou_type=iou_type)), iou_type)
    E.params.maxDets = list(max_dets)
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        E.evaluate()
        E.accumulate()
    return E


@pytest.mark.parametrize("iou_type", ["bbox", "keypoints"])
def test_accumulated_arrays_are_pycocotools_arrays(iou_type):
    gt, res = _data(keypoints=iou_type == "keypoints")
    md = (1, 2, 100) if iou_type == "bbox" else (20,)
    M = ImageMatches(gt, res, iou_type=iou_type, max_dets=md)
    E = _pycocotools_eval(gt, res, iou_type, md)
    precision, recall = M.accumulate(range(len(M)))
    ref_p, ref_r = np.asarray(E.eval["precision"]), np.asarray(E.eval["recall"])
    assert precision.shape == ref_p.shape and recall.shape == ref_r.shape
    assert np.array_equal(precision[..., -1], ref_p[..., -1])  # (precision is kept at the largest max_dets)
    assert np.array_equal(recall, ref_r)
    assert (ref_p[..., -1] > 0).any()
    if iou_type == "bbox":
        assert (ref_r[:, :, 0, 0] != ref_r[:, :, 0, -1]).any()  # max_dets truncation matters here


@pytest.mark.parametrize("kind", ["bbox", "keypoints", "lvis"])
def test_draws_equal_evaluating_the_drawn_dataset(kind):
    iou_type = "keypoints" if kind == "keypoints" else "bbox"
    lvis = kind == "lvis"
    gt, res = _data(seed=1, keypoints=kind == "keypoints", lvis=lvis)
    M = ImageMatches(gt, res, iou_type=iou_type, lvis_style=lvis)
    backend = "hotcoco" if lvis else "pycocotools"
    full = coco.evaluate_coco(gt, res, iou_type=iou_type, lvis_style=lvis, backend=backend)
    assert M.summary(range(len(M))) == full
    rng = np.random.default_rng(2)
    for cols in [rng.integers(0, len(M), len(M)) for _ in range(4)] + [[0, 0, 0], [len(M) - 1]]:
        cols = list(map(int, cols))
        want = coco.evaluate_coco(*_drawn(gt, res, cols), iou_type=iou_type, lvis_style=lvis, backend=backend)
        assert M.summary(cols) == want, cols  # every key, exactly (ties between copies included)
        ap = M.ap(cols)
        assert (math.isnan(ap) and want["AP"] == -1.0) or ap == want["AP"]
    assert math.isnan(M.ap([]))


def test_area_only_set_up_gives_the_same_ap():
    gt, res = _data(seed=4)
    full, lean = ImageMatches(gt, res), ImageMatches(gt, res, all_areas=False)
    cols = [3, 1, 1, 7, 0, 0, 5]
    assert full.ap(cols) == lean.ap(cols) == full.summary(cols)["AP"]


def test_compare_statistic_reaccumulates_and_matches_full_evaluation():
    from gligen_eval.records import Detection, GroundedObject, Layout
    from gligen_eval.reporting.compare import _CocoStat

    rng = np.random.default_rng(0)
    items = {}
    for i in range(15):
        objs, dets = [], []
        for _ in range(3):
            x, y = rng.uniform(0, 0.6, 2)
            name = ("dog", "cat")[int(rng.integers(2))]
            objs.append(GroundedObject(phrase=name, box=(x, y, x + 0.3, y + 0.3), category=name))
            if rng.random() < 0.8:
                dx, dy = rng.normal(0, 0.04, 2)
                dets.append(Detection(box=(x + dx, y + dy, x + 0.3 + dx, y + 0.3), label=name, score=float(rng.random())))
        items[f"L{i}"] = [(f"s{i}", Layout(f"L{i}", "t", tuple(objs)), 64, 64, dets)]
    fast, slow = _CocoStat("bbox", "hotcoco"), _CocoStat("bbox", "hotcoco")
    fast.register(items)
    assert fast.fast and not slow.fast
    lists = list(items.values())
    for row in rng.integers(0, 15, size=(5, 15)):
        draw = [lists[j] for j in row]
        assert fast.metrics(draw) == slow.metrics(draw)
    assert fast.metrics(lists) == slow.metrics(lists)  # the point estimate: the full evaluation
    # the bootstrap's per-draw path (draw indices, memoized per draw) gives the same numbers
    on_draw = fast.fn("AP50").for_items(lists)
    row = rng.integers(0, 15, 15)
    assert on_draw(row) == slow.fn("AP50")([lists[j] for j in row])
    from gligen_eval.scoring import stats

    a = dict(items)
    b = {k: list(v) for k, v in items.items()}  # another run: same layouts, its own lists
    fast.register(b)
    got = stats.paired_bootstrap_diff(a, b, fast.fn("AP"), n_boot=20, seed=1)
    want = stats.paired_bootstrap_diff(a, b, slow.fn("AP"), n_boot=20, seed=1)
    assert got == want and got[0] == 0.0


def test_no_detections_and_no_ground_truth():
    gt, res = _data(seed=5)
    none = ImageMatches(gt, [])
    assert none.ap(range(len(none))) == 0.0
    assert none.summary(range(len(none))) == coco.evaluate_coco(gt, [], backend="pycocotools")
    assert math.isnan(none.ap([len(none) - 1]))  # an image with nothing: AP undefined
    empty = {**gt, "annotations": []}
    assert all(v == -1.0 for v in ImageMatches(empty, res).summary([0, 1]).values())
