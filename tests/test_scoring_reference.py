"""Scoring against third-party reference data and numbers (skipped when ../shared is absent)."""

from __future__ import annotations

import json

import pytest

from gligen_eval.errors import InputError
from gligen_eval.scoring import coco

BACKENDS = ["hotcoco", "pycocotools", "faster"]

# ../shared/data/reference/README.md: cocoapi fake bbox results on instances_val2014_100 (summarize() order)
BBOX_REFERENCE = [
    0.5045806987249628, 0.6969727247299577, 0.5729816669904824, 0.5856257209410443, 0.5193996948036719,
    0.5013978986347466, 0.38681277964578054, 0.5936795762842003, 0.595352982877607, 0.6398109626113442,
    0.5664205978994309, 0.5642905982905982,
]  # fmt: skip
# faster_coco_eval keypoints_dataset (asserted for faster_coco_eval and pycocotools upstream)
KEYPOINT_REFERENCE = [
    0.5048844884488449, 0.7227722772277227, 0.6336633663366337, 0.46633663366336636, 0.7504950495049505,
    0.5181818181818182, 0.7272727272727273, 0.6363636363636364, 0.4666666666666666, 0.75,
]  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
def test_bbox_reference_numbers(reference_dir, backend):
    m = coco.score_detections_file(
        reference_dir / "faster_coco_eval" / "dataset__cocoapi__instances_val2014_100.json",
        reference_dir / "cocoapi" / "instances_val2014_fakebbox100_results.json",
        iou_type="bbox",
        backend=backend,
    )
    assert list(m) == list(coco.BBOX_KEYS)
    for key, got, want in zip(coco.BBOX_KEYS, m.values(), BBOX_REFERENCE):
        assert abs(got - want) <= 1e-9, (key, got, want)


@pytest.mark.parametrize("backend", BACKENDS)
def test_keypoint_reference_numbers(reference_dir, backend):
    d = reference_dir / "faster_coco_eval"
    m = coco.score_detections_file(d / "keypoints_dataset__gt_dataset.json", d / "keypoints_dataset__dt_dataset.json",
                                   iou_type="keypoints", backend=backend)  # fmt: skip
    assert list(m) == list(coco.KEYPOINT_KEYS)
    for key, got, want in zip(coco.KEYPOINT_KEYS, m.values(), KEYPOINT_REFERENCE):
        assert abs(got - want) <= 1e-9, (key, got, want)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["bbox", "keypoints"])
def test_reference_numbers_through_score_detections(reference_dir, backend, kind, capsys):
    from gligen_eval.cli import main

    if kind == "bbox":
        gt = reference_dir / "faster_coco_eval" / "dataset__cocoapi__instances_val2014_100.json"
        dt, keys, want = reference_dir / "cocoapi" / "instances_val2014_fakebbox100_results.json", coco.BBOX_KEYS, BBOX_REFERENCE
    else:
        d = reference_dir / "faster_coco_eval"
        gt, dt = d / "keypoints_dataset__gt_dataset.json", d / "keypoints_dataset__dt_dataset.json"
        keys, want = coco.KEYPOINT_KEYS, KEYPOINT_REFERENCE
    capsys.readouterr()
    rc = main(["score-detections", "--layouts", str(gt), "--detections", str(dt), "--iou-type", kind,
               "--backend", backend, "--json"])  # fmt: skip
    assert rc == 0
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(got) == list(keys)
    diffs = [abs(got[k] - w) for k, w in zip(keys, want)]
    assert max(diffs) <= 1e-9, dict(zip(keys, diffs))


def test_waymo_oks_pairs(reference_dir):
    from oks_backend import backend_oks

    pairs = json.loads((reference_dir / "waymo_oks" / "oks_testdata.json").read_text())
    assert len(pairs) == 60
    n_unlabelled = sum(not any(v > 0 for v in p["ground_truth"]["keypoints"][2::3]) for p in pairs)
    assert n_unlabelled > 0  # the box-distance branch is exercised too
    for backend in ("pycocotools", "faster"):  # (hotcoco does not expose its OKS matrix)
        got = backend_oks([(p["ground_truth"], p["prediction"]) for p in pairs], backend)
        for i, (g, p) in enumerate(zip(got, pairs)):
            assert abs(g - p["oks"]) <= 1e-9, (backend, i, g, p["oks"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_mmpose_ground_truth_as_predictions(reference_dir, backend):
    # every person with at least one labelled keypoint, predicted exactly (the two persons without
    # keypoints are ignored by COCOeval; an all-zero "prediction" for them would be a false positive)
    gt = json.loads((reference_dir / "mmpose" / "test_coco.json").read_text())
    preds = [{"image_id": a["image_id"], "category_id": a["category_id"], "keypoints": a["keypoints"], "score": 1.0}
             for a in gt["annotations"] if a["num_keypoints"] > 0]  # fmt: skip
    assert len(preds) == 12
    m = coco.evaluate_coco(gt, preds, iou_type="keypoints", backend=backend)
    assert m["AP"] == 1.0 and m["AR"] == 1.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_mmpose_person_detector_boxes(reference_dir, backend):
    m = coco.score_detections_file(reference_dir / "mmpose" / "test_coco.json",
                                   reference_dir / "mmpose" / "test_coco_det_AP_H_56.json", backend=backend)  # fmt: skip
    assert m["AP"] == pytest.approx(0.7891214004, abs=1e-9)
    assert m["AP50"] == pytest.approx(0.9823982398, abs=1e-9)


def test_reference_results_not_matching_ground_truth(reference_dir, tmp_path):
    res = json.loads((reference_dir / "cocoapi" / "instances_val2014_fakebbox100_results.json").read_text())
    res[17] = dict(res[17], image_id=-5)
    bad = tmp_path / "results.json"
    bad.write_text(json.dumps(res))
    with pytest.raises(InputError, match=r"results\.json \[result 17\]: image_id -5"):
        coco.score_detections_file(reference_dir / "faster_coco_eval" / "dataset__cocoapi__instances_val2014_100.json", bad)


def test_lvis_v05_ground_truth_as_predictions(reference_dir):
    path = reference_dir / "faster_coco_eval" / "lvis_dataset__lvis_val_100.json"
    gt = json.loads(path.read_text())
    assert coco.is_lvis_gt(gt)
    res = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
           for a in gt["annotations"]]  # fmt: skip
    m = coco.evaluate_coco(gt, res, lvis_style=True)
    assert list(m) == list(coco.metric_keys("bbox", lvis_style=True))
    # (a category with one box has precision 1 / (1 + eps) in COCOeval's arithmetic, as hotcoco keeps it)
    assert all(v == pytest.approx(1.0, abs=1e-15) for v in m.values())
    # leave out the predictions of rare categories: APr drops to 0 and AP by their share of categories
    freq = {c["id"]: c["frequency"] for c in gt["categories"]}
    present = {a["category_id"] for a in gt["annotations"]}
    n_rare = sum(freq[c] == "r" for c in present)
    assert n_rare > 0
    m = coco.evaluate_coco(gt, [r for r in res if freq[r["category_id"]] != "r"], lvis_style=True)
    assert m["APr"] == 0.0 and m["APc"] == pytest.approx(1.0, abs=1e-15) and m["APf"] == pytest.approx(1.0, abs=1e-15)
    assert m["AP"] == pytest.approx((len(present) - n_rare) / len(present), abs=1e-12)
