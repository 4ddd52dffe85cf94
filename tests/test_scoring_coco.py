"""COCO AP of detections on generated images: hand-computed cases, both backends, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gligen_eval.errors import ConfigError, InputError
from gligen_eval.records import Detection, GroundedObject, Layout
from gligen_eval.scoring import coco

BACKENDS = ["hotcoco", "pycocotools", "faster"]


def _layout(lid: str, objs: list[tuple[str, tuple[float, float, float, float]]]) -> Layout:
    return Layout(lid, "a caption", tuple(GroundedObject(phrase=p, box=b, category=p) for p, b in objs))


def _gt_one_box(box_xywh=(100.0, 100.0, 100.0, 100.0), size=(400, 400), category="dog") -> dict:
    return {
        "images": [{"id": 1, "width": size[0], "height": size[1]}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": list(box_xywh),
                         "area": box_xywh[2] * box_xywh[3], "iscrowd": 0}],
        "categories": [{"id": 1, "name": category}],
    }  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
def test_perfect_detections_give_ap_one(backend):
    layouts = [
        _layout("a", [("dog", (0.1, 0.1, 0.6, 0.7)), ("cat", (0.5, 0.5, 0.9, 0.95))]),
        _layout("b", [("dog", (0.0, 0.0, 1.0, 1.0)), ("person", (0.2, 0.3, 0.4, 0.9))]),
    ]
    dets = [[Detection(box=o.box, label=o.phrase, score=0.9) for o in lay.objects] for lay in layouts]
    gt, res = coco.build_eval_inputs(("k" + lay.layout_id, lay, 512, 512, d) for lay, d in zip(layouts, dets))
    m = coco.evaluate_coco(gt, res, backend=backend)
    assert list(m) == list(coco.BBOX_KEYS)
    for key in ("AP", "AP50", "AP75", "APl", "AR1", "AR10", "AR100", "ARl"):
        assert m[key] == pytest.approx(1.0, abs=1e-12), key
    # no ground-truth box is small (< 32^2 px) or medium at 512 px: undefined, as in pycocotools
    assert m["APs"] == -1.0 and m["ARs"] == -1.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_shifted_box_counts_at_low_iou_thresholds_only(backend):
    # GT 100x100 at (100, 100); the detection is shifted 20 px right: IoU = 80*100 / (120*100) = 2/3,
    # a true positive at IoU thresholds .50 .55 .60 .65 and a false positive at .70 ... .95.
    gt = _gt_one_box()
    res = [{"image_id": 1, "category_id": 1, "bbox": [120.0, 100.0, 100.0, 100.0], "score": 0.8}]
    m = coco.evaluate_coco(gt, res, backend=backend)
    assert m["AP50"] == pytest.approx(1.0, abs=1e-12)
    assert m["AP75"] == pytest.approx(0.0, abs=1e-12)
    assert m["AP"] == pytest.approx(0.4, abs=1e-12)
    assert m["AR100"] == pytest.approx(0.4, abs=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_good_one_jittered_box(backend):
    # Two dogs: a perfect detection (score .9) and one with IoU 2/3 (score .8). At IoU .75 the ranked
    # list is TP, FP: precision 1 up to recall .5 and nothing beyond -> 51 of 101 recall points.
    gt = {
        "images": [{"id": 1, "width": 400, "height": 400}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0.0, 0.0, 100.0, 100.0], "area": 1e4, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [200.0, 200.0, 100.0, 100.0], "area": 1e4, "iscrowd": 0},
        ],
        "categories": [{"id": 1, "name": "dog"}],
    }
    res = [
        {"image_id": 1, "category_id": 1, "bbox": [0.0, 0.0, 100.0, 100.0], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [220.0, 200.0, 100.0, 100.0], "score": 0.8},
    ]
    m = coco.evaluate_coco(gt, res, backend=backend)
    assert m["AP50"] == pytest.approx(1.0, abs=1e-12)
    assert m["AP75"] == pytest.approx(51 / 101, abs=1e-12)
    assert m["AR1"] == pytest.approx(0.5, abs=1e-12)  # one detection per image at most


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_detections_give_zero_not_a_crash(backend):
    gt = _gt_one_box()
    m = coco.evaluate_coco(gt, [], backend=backend)
    assert set(m) == set(coco.BBOX_KEYS)
    assert m["AP"] == 0.0 and m["AP50"] == 0.0 and m["AR100"] == 0.0
    per_cat = coco.per_category_ap(gt, [], backend=backend)
    assert per_cat == {"dog": {"AP": 0.0, "AP50": 0.0, "n_gt": 1, "n_det": 0}}


@pytest.mark.parametrize("backend", BACKENDS)
def test_image_without_ground_truth(backend):
    # image 2 has no object; a confident dog detected there is a false positive ranked first:
    # precision 1/2 at recall 1 for every IoU threshold.
    gt = _gt_one_box()
    gt["images"].append({"id": 2, "width": 400, "height": 400})
    res = [
        {"image_id": 2, "category_id": 1, "bbox": [10.0, 10.0, 100.0, 100.0], "score": 0.95},
        {"image_id": 1, "category_id": 1, "bbox": [100.0, 100.0, 100.0, 100.0], "score": 0.9},
    ]
    m = coco.evaluate_coco(gt, res, backend=backend)
    assert m["AP"] == pytest.approx(0.5, abs=1e-12)
    assert m["AR100"] == pytest.approx(1.0, abs=1e-12)
    # only an image without objects: nothing to find, every value undefined (-1), no crash
    empty = {"images": [{"id": 1, "width": 64, "height": 64}], "annotations": [], "categories": [{"id": 1, "name": "dog"}]}
    m0 = coco.evaluate_coco(empty, [], backend=backend)
    assert all(v == -1.0 for v in m0.values())


def _synthetic(seed: int, n_images: int = 40, n_cats: int = 4, iou_type: str = "bbox"):
    rng = np.random.default_rng(seed)
    layouts, dets = [], []
    names = ["dog", "cat", "person", "car"][:n_cats]
    for i in range(n_images):
        objs = []
        for _ in range(int(rng.integers(0, 6))):
            x0, y0 = rng.uniform(0, 0.7, 2)
            w, h = rng.uniform(0.03, 0.3, 2)
            objs.append((names[int(rng.integers(n_cats))], (x0, y0, x0 + w, y0 + h)))
        lay = _layout(f"l{i}", objs)
        d = []
        for name, (x0, y0, x1, y1) in objs:
            if rng.random() < 0.8:
                j = rng.normal(0, 0.02, 4)
                box = tuple(np.clip([x0 + j[0], y0 + j[1], x1 + j[2], y1 + j[3]], 0, 1))
                label = name if rng.random() < 0.9 else names[int(rng.integers(n_cats))]
                d.append(Detection(box=box, label=label, score=float(rng.random())))
        for _ in range(int(rng.integers(0, 3))):  # spurious detections
            x0, y0 = rng.uniform(0, 0.8, 2)
            d.append(Detection(box=(x0, y0, x0 + 0.1, y0 + 0.15), label=names[int(rng.integers(n_cats))],
                               score=float(rng.random())))  # fmt: skip
        layouts.append(lay)
        dets.append(d)
    return coco.build_eval_inputs((lay.layout_id, lay, 320, 256, d) for lay, d in zip(layouts, dets))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_backends_agree_on_synthetic_data(seed):
    gt, res = _synthetic(seed)
    a = coco.run_coco_eval(gt, res, backend="pycocotools")
    b = coco.run_coco_eval(gt, res, backend="faster")
    assert list(a.metrics) == list(b.metrics)
    for k in a.metrics:
        assert a.metrics[k] == pytest.approx(b.metrics[k], abs=1e-12), k
    assert 0.05 < a.metrics["AP"] < 0.95  # a case with real misses and false positives
    assert set(a.per_category) == set(b.per_category)
    for name in a.per_category:
        for k in ("AP", "AP50"):
            assert a.per_category[name][k] == pytest.approx(b.per_category[name][k], abs=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_summary_is_bit_identical_to_library_summarize(backend, capsys):
    gt, res = _synthetic(5)
    ours = coco.evaluate_coco(gt, res, backend=backend)
    if backend == "faster":
        from faster_coco_eval import COCO, COCOeval_faster as COCOeval

        cg = COCO(json.loads(json.dumps(gt)))
    else:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        cg = COCO()
        cg.dataset = json.loads(json.dumps(gt))
        cg.createIndex()
    E = COCOeval(cg, cg.loadRes(json.loads(json.dumps(res))), "bbox")
    E.evaluate()
    E.accumulate()
    E.summarize()
    capsys.readouterr()
    assert [ours[k] for k in coco.BBOX_KEYS] == [float(v) for v in E.stats[:12]]


def test_quiet_evaluation_prints_nothing(capfd):
    gt, res = _synthetic(3, n_images=5)
    for backend in BACKENDS:
        coco.evaluate_coco(gt, res, backend=backend)
        coco.evaluate_coco(gt, [], backend=backend)
    out = capfd.readouterr().out
    assert out == ""


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_dets_names_the_recall_keys(backend):
    gt, res = _synthetic(4, n_images=10)
    m = coco.evaluate_coco(gt, res, backend=backend, max_dets=(1, 5, 50))
    assert list(m) == ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR5", "AR50", "ARs", "ARm", "ARl"]
    assert m["AR1"] <= m["AR5"] <= m["AR50"]
    assert coco.metric_keys("bbox", max_dets=(1, 5, 50)) == tuple(m)


# ---------------------------------------------------------------------------------------------
# LVIS style


def _lvis_gt():
    cats = [{"id": 1, "name": "ant", "frequency": "r"}, {"id": 2, "name": "bee", "frequency": "c"},
            {"id": 3, "name": "cow", "frequency": "f"}]  # fmt: skip
    images = [
        {"id": 1, "width": 200, "height": 200, "neg_category_ids": [], "not_exhaustive_category_ids": []},
        {"id": 2, "width": 200, "height": 200, "neg_category_ids": [], "not_exhaustive_category_ids": []},
    ]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "area": 2500},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [100, 100, 50, 50], "area": 2500},
        {"id": 3, "image_id": 2, "category_id": 3, "bbox": [20, 20, 120, 120], "area": 14400},
    ]
    return {"images": images, "annotations": anns, "categories": cats}


def test_lvis_frequency_groups():
    gt = _lvis_gt()
    res = [
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "score": 0.9},  # rare: found
        {"image_id": 2, "category_id": 3, "bbox": [20, 20, 120, 120], "score": 0.9},  # frequent: found
        # a bee on image 2, where bees are neither annotated nor marked absent: LVIS does not count it
        {"image_id": 2, "category_id": 2, "bbox": [0, 0, 30, 30], "score": 0.99},
    ]
    m = coco.evaluate_coco(gt, res, backend="faster", lvis_style=True)
    assert list(m) == list(coco.metric_keys("bbox", lvis_style=True))
    assert m["APr"] == pytest.approx(1.0) and m["APf"] == pytest.approx(1.0) and m["APc"] == 0.0
    assert m["AP"] == pytest.approx(2 / 3)
    assert "AR300" in m
    # the same bee counts as a false positive once image 2 says bees are absent
    gt["images"][1]["neg_category_ids"] = [2]
    res2 = res + [{"image_id": 1, "category_id": 2, "bbox": [100, 100, 50, 50], "score": 0.5}]
    m2 = coco.evaluate_coco(gt, res2, backend="faster", lvis_style=True)
    assert m2["APc"] == pytest.approx(0.5)


def test_lvis_needs_faster_backend_and_frequencies():
    with pytest.raises(ConfigError, match="faster"):
        coco.evaluate_coco(_lvis_gt(), [], backend="pycocotools", lvis_style=True)
    gt = _lvis_gt()
    del gt["categories"][1]["frequency"]
    with pytest.raises(InputError, match=r"categories\[1\]"):
        coco.evaluate_coco(gt, [], backend="faster", lvis_style=True)


def test_score_detections_file_detects_lvis(tmp_path):
    gt_file, res_file = tmp_path / "lvis.json", tmp_path / "res.json"
    gt_file.write_text(json.dumps(_lvis_gt()))
    res_file.write_text(json.dumps([{"image_id": 2, "category_id": 3, "bbox": [20, 20, 120, 120], "score": 0.9}]))
    m = coco.score_detections_file(gt_file, res_file)
    assert m["APf"] == pytest.approx(1.0) and m["APr"] == 0.0
    with pytest.raises(ConfigError, match="faster"):
        coco.score_detections_file(gt_file, res_file, backend="pycocotools")
    m_plain = coco.score_detections_file(gt_file, res_file, lvis_style=False, backend="pycocotools")
    assert "APr" not in m_plain


# ---------------------------------------------------------------------------------------------
# keypoints


def _person(lid: str, box, kps) -> Layout:
    return Layout(lid, "a person", (GroundedObject(phrase="person", box=box, category="person", keypoints=kps),))


def _kps(x0, y0, x1, y1, n_visible=17):
    pts = []
    for k in range(17):
        t = k / 16
        pts.append((x0 + (x1 - x0) * t, y0 + (y1 - y0) * (1 - t) ** 2, 2 if k < n_visible else 0))
    return tuple(pts)


@pytest.mark.parametrize("backend", BACKENDS)
def test_keypoints_perfect_and_shifted(backend):
    box = (0.2, 0.1, 0.7, 0.95)
    lays = [_person("p0", box, _kps(*box)), _person("p1", box, _kps(*box, n_visible=9))]
    perfect = [[Detection(box=box, label="person", score=0.9, keypoints=lay.objects[0].keypoints)] for lay in lays]
    gt, res = coco.build_eval_inputs(((lay.layout_id, lay, 256, 256, d) for lay, d in zip(lays, perfect)),
                                     iou_type="keypoints")  # fmt: skip
    assert gt["categories"][0]["keypoints"][0] == "nose"
    assert gt["annotations"][1]["num_keypoints"] == 9
    assert gt["annotations"][1]["keypoints"][-3:] == [0, 0, 0]
    m = coco.evaluate_coco(gt, res, iou_type="keypoints", backend=backend)
    assert list(m) == list(coco.KEYPOINT_KEYS)
    assert m["AP"] == pytest.approx(1.0) and m["AR"] == pytest.approx(1.0)
    # every predicted keypoint 40 px off: OKS far below .5 -> AP 0
    far = [[Detection(box=box, label="person", score=0.9,
                      keypoints=tuple((x + 40 / 256, y, v) for x, y, v in lay.objects[0].keypoints))] for lay in lays]  # fmt: skip
    _, res_far = coco.build_eval_inputs(((lay.layout_id, lay, 256, 256, d) for lay, d in zip(lays, far)),
                                        iou_type="keypoints")  # fmt: skip
    assert coco.evaluate_coco(gt, res_far, iou_type="keypoints", backend=backend)["AP"] == 0.0
    assert coco.evaluate_coco(gt, [], iou_type="keypoints", backend=backend)["AP"] == 0.0


def test_keypoint_backends_agree_on_synthetic_data():
    rng = np.random.default_rng(0)
    lays, dets = [], []
    for i in range(12):
        x0, y0 = rng.uniform(0, 0.4, 2)
        box = (x0, y0, x0 + 0.5, y0 + 0.55)
        kps = _kps(*box, n_visible=int(rng.integers(1, 18)))
        lays.append(_person(f"p{i}", box, kps))
        noise = rng.normal(0, 0.02, (17, 2))
        pred = tuple((float(np.clip(x + a, 0, 1)), float(np.clip(y + b, 0, 1)), 2) for (x, y, _), (a, b) in zip(kps, noise))
        dets.append([Detection(box=box, label="person", score=float(rng.random()), keypoints=pred)])
    gt, res = coco.build_eval_inputs(((lay.layout_id, lay, 300, 300, d) for lay, d in zip(lays, dets)),
                                     iou_type="keypoints")  # fmt: skip
    a = coco.evaluate_coco(gt, res, iou_type="keypoints", backend="pycocotools")
    b = coco.evaluate_coco(gt, res, iou_type="keypoints", backend="faster")
    for k in a:
        assert a[k] == pytest.approx(b[k], abs=1e-12), k
    assert 0.0 < a["AP"] < 1.0


@pytest.mark.parametrize("backend", ["pycocotools", "faster"])
def test_oks_formula_by_hand(backend):
    from oks_backend import backend_oks

    gt = np.zeros((17, 3))
    gt[:, :2] = np.arange(34).reshape(17, 2) * 3.0
    gt[0, 2] = 2  # only the nose is labelled
    pred = gt.copy()
    pred[0, 0] += 5.0
    area = 900.0
    s = coco.COCO_KEYPOINT_SIGMAS[0]
    expected = math.exp(-(5.0**2) / (2 * area * (2 * s) ** 2))
    unlabelled = gt.copy()
    unlabelled[:, 2] = 0
    box = [0, 0, 100, 100]
    outside = pred.copy()
    outside[:, 0] += 400.0  # 300 px beyond the 3x enlarged box (x up to 200)
    got = backend_oks([({"keypoints": gt.ravel(), "area": area, "bbox": box}, {"keypoints": pred.ravel()}),
                       ({"keypoints": gt.ravel(), "area": area, "bbox": box}, {"keypoints": gt.ravel()}),
                       # no labelled point: points inside the 3x enlarged box cost nothing, points outside do
                       ({"keypoints": unlabelled.ravel(), "area": area, "bbox": box}, {"keypoints": pred.ravel()}),
                       ({"keypoints": unlabelled.ravel(), "area": area, "bbox": box}, {"keypoints": outside.ravel()})],
                      backend)  # fmt: skip
    assert got[0] == pytest.approx(expected, rel=1e-12)
    assert got[1] == 1.0 and got[2] == 1.0 and got[3] < 0.5


# ---------------------------------------------------------------------------------------------
# conversions


def test_build_coco_gt_and_results_conversions():
    lay = Layout("L", "c", (
        GroundedObject(phrase="a red motorbike", box=(0.1, 0.2, 0.5, 0.6), category="motorcycle"),
        GroundedObject(phrase="tv", box=(0.0, 0.0, 0.25, 0.5)),
        GroundedObject(phrase="a unicorn", box=(0.6, 0.6, 0.9, 0.9), category="unicorn"),
    ))  # fmt: skip
    gt = coco.build_coco_gt([lay], (200, 100), image_keys=["sample-1"])
    assert gt["images"] == [{"id": 1, "width": 200, "height": 100, "file_name": "sample-1", "layout_id": "L"}]
    assert [c["name"] for c in gt["categories"]] == ["motorcycle", "tv", "unicorn"]
    a0 = gt["annotations"][0]
    assert a0["bbox"] == pytest.approx([20.0, 20.0, 80.0, 40.0]) and a0["area"] == pytest.approx(3200.0)
    ids = coco.category_ids(gt)
    dets = [[Detection(box=(0.1, 0.2, 0.5, 0.6), label="motorbike", score=0.5),  # Darknet spelling
             Detection(box=(0.0, 0.0, 0.25, 0.5), label="tvmonitor", score=0.4),
             Detection(box=(0.0, 0.0, 0.1, 0.1), label="giraffe", score=0.9)]]  # fmt: skip
    res = coco.detections_to_coco_results(dets, (200, 100), ids)
    assert [r["category_id"] for r in res] == [ids["motorcycle"], ids["tv"]]  # giraffe: not in the ground truth
    assert res[0]["bbox"] == pytest.approx([20.0, 20.0, 80.0, 40.0])
    # a closed-set detector that cannot know unicorns: leave them out of the ground truth
    gt80 = coco.build_coco_gt([lay], (200, 100), vocabulary=coco.COCO80_NAMES)
    assert [c["name"] for c in gt80["categories"]] == ["motorcycle", "tv"]
    assert len(gt80["annotations"]) == 2
    assert coco.evaluate_coco(gt80, res)["AP"] == pytest.approx(1.0)


def test_canonical_category():
    assert coco.canonical_category("  Potted_Plant ") == "potted plant"
    assert coco.canonical_category("aeroplane") == "airplane"
    assert coco.canonical_category("dog", aliases={"dog": "hound"}) == "hound"
    assert len(coco.COCO80_NAMES) == 80 and len(set(coco.COCO80_NAMES)) == 80
    assert set(coco.CATEGORY_ALIASES.values()) <= set(coco.COCO80_NAMES)


# ---------------------------------------------------------------------------------------------
# bad input


def test_results_errors_name_file_and_record(tmp_path):
    gt = _gt_one_box()
    gt_file = tmp_path / "gt.json"
    gt_file.write_text(json.dumps(gt))
    res_file = tmp_path / "res.json"

    def check(results, pattern):
        res_file.write_text(json.dumps(results))
        with pytest.raises(InputError, match=pattern) as e:
            coco.score_detections_file(gt_file, res_file)
        assert str(e.value).startswith(str(res_file)) or str(e.value).startswith(str(gt_file))

    good = {"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}
    check([good, dict(good, image_id=7)], r"\[result 1\]: image_id 7 is not an image")
    check([good, good, dict(good, category_id=99)], r"\[result 2\]: category_id 99")
    check([dict(good, score=None)], r"\[result 0\]: 'score'")
    check([dict(good, bbox=[1, 2, 3])], r"\[result 0\]: 'bbox'")
    check([dict(good, bbox=[1, 2, -3, 4])], r"negative width")
    check({"annotations": [good]}, r"must be a JSON list")
    res_file.write_text("[{]")
    with pytest.raises(InputError, match=r"res\.json: not valid JSON"):
        coco.score_detections_file(gt_file, res_file)
    with pytest.raises(InputError, match="not found"):
        coco.score_detections_file(gt_file, tmp_path / "missing.json")


def test_ground_truth_errors_and_defaults():
    gt = _gt_one_box()
    gt["annotations"][0]["image_id"] = 5
    with pytest.raises(InputError, match=r"annotation id 1\]: image_id 5"):
        coco.evaluate_coco(gt, [])
    gt = _gt_one_box()
    del gt["annotations"][0]["area"], gt["annotations"][0]["iscrowd"]
    gt["annotations"][0]["id"] = 0  # pycocotools mis-handles id 0; renumbered internally
    res = [{"image_id": 1, "category_id": 1, "bbox": [100.0, 100.0, 100.0, 100.0], "score": 0.9},
           {"image_id": 1, "category_id": 1, "bbox": [100.0, 100.0, 100.0, 100.0], "score": 0.8}]  # fmt: skip
    for backend in BACKENDS:
        m = coco.evaluate_coco(gt, res, backend=backend)
        assert m["AP"] == pytest.approx(1.0)  # the duplicate is a false positive ranked below the match
    assert "area" not in gt["annotations"][0] and gt["annotations"][0]["id"] == 0  # input untouched
    assert "id" not in res[0]
    with pytest.raises(ConfigError, match="backend"):
        coco.evaluate_coco(_gt_one_box(), [], backend="lvis")
    with pytest.raises(InputError, match="'keypoints' must be 51 numbers"):
        coco.evaluate_coco(_gt_one_box(category="person"), [], iou_type="keypoints")
