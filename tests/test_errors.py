"""TIDE-style error types and AP over IoU thresholds on hand-made boxes."""

from __future__ import annotations

import json
import math

import pytest

from gligen_eval.errors import ConfigError
from gligen_eval.reporting import metricinfo
from gligen_eval.scoring import errors


def _gt(*boxes):
    return {"images": [{"id": 1, "width": 100, "height": 100}],
            "categories": [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}],
            "annotations": [{"id": i, "image_id": 1, "category_id": 1, "bbox": list(b)} for i, b in enumerate(boxes, 1)]}  # fmt: skip


def _det(box, score=0.9, cat=1):
    return {"image_id": 1, "category_id": cat, "bbox": list(box), "score": score}


DOG = (10, 10, 40, 40)
HALF_RIGHT = (30, 10, 40, 40)  # shifted by half its width: IoU (20*40) / (2*1600 - 800) = 1/3


def _only(metrics, key, value):
    for t in errors.TIDE_TYPES:
        want = value if t == key else 0.0
        assert metrics[f"box/tide/{t}"] == pytest.approx(want, abs=1e-12), t


def test_half_box_shift_is_a_localisation_error():
    m, b = errors.error_metrics(_gt(DOG), [_det(HALF_RIGHT)])
    _only(m, "loc", 1.0)  # AP50 0 -> 1 once the box is put right
    assert b["box/tide_counts"]["loc"] == 1 and sum(b["box/tide_counts"].values()) == 1
    assert b["box/tide_per_category"]["dog"]["loc"] == pytest.approx(1.0)
    # AP is 1 up to IoU 1/3 (thresholds .05 ... .30) and 0 above: area (0.25 + 0.05 / 2) / 0.9
    assert m["box/AP_iou_auc"] == pytest.approx(0.275 / 0.9, abs=1e-12)
    assert m["box/AP_iou_auc"] < 1 / 3  # the plain AP (IoU .50:.95) is 0
    # (one detection has precision 1 / (1 + eps) in COCOeval's arithmetic)
    assert b["box/AP_over_iou"]["AP"][:6] == pytest.approx([1.0] * 6, abs=1e-15)
    assert b["box/AP_over_iou"]["AP"][6:] == [0.0] * 13


def test_wrong_label_is_a_classification_error():
    m, b = errors.error_metrics(_gt(DOG), [_det(DOG, cat=2)])
    _only(m, "cls", 1.0)
    assert b["box/tide_counts"]["cls"] == 1
    assert m["box/AP_iou_auc"] == 0.0


def test_wrong_label_and_place_is_both():
    _, b = errors.error_metrics(_gt(DOG), [_det(HALF_RIGHT, cat=2)])
    assert b["box/tide_counts"]["both"] == 1 and b["box/tide_counts"]["cls"] == b["box/tide_counts"]["loc"] == 0


def test_duplicate_background_and_missed():
    other = (60, 60, 30, 30)
    # a duplicate ranked between two true positives costs precision at full recall
    m, b = errors.error_metrics(_gt(DOG, other), [_det(DOG, 0.9), _det((11, 10, 40, 40), 0.8), _det(other, 0.7)])
    assert b["box/tide_counts"]["dupl"] == 1 and m["box/tide/dupl"] > 0.0
    _only(m, "dupl", m["box/tide/dupl"])
    # a box on empty background, ranked first
    m, b = errors.error_metrics(_gt(DOG), [_det(DOG, 0.5), _det((70, 0, 20, 20), 0.9)])
    assert b["box/tide_counts"]["bkg"] == 1
    _only(m, "bkg", 0.5)  # precision 1/2 at recall 1 -> 1
    # one of two dogs never detected: AP50 51/101 (recall 0.5 on the 101-point grid) -> 1 without it
    m, b = errors.error_metrics(_gt(DOG, other), [_det(DOG)])
    assert b["box/tide_counts"]["miss"] == 1
    _only(m, "miss", 50 / 101)


def test_perfect_detections_have_no_error_and_full_area():
    m, b = errors.error_metrics(_gt(DOG), [_det(DOG)])
    _only(m, "loc", 0.0)
    assert m["box/AP_iou_auc"] == pytest.approx(1.0, abs=1e-15)
    json.dumps(b)  # the breakdowns go to a JSON file


def test_iou_auc_and_bad_thresholds():
    assert errors.iou_auc([0.0, 0.5, 1.0], [1.0, 1.0, 0.0]) == pytest.approx(0.75)
    assert math.isnan(errors.iou_auc([0.0, 1.0], [float("nan"), 1.0]))
    with pytest.raises(ConfigError, match="IoU thresholds"):
        errors.ap_over_iou(_gt(DOG), [], thresholds=[0.5])
    with pytest.raises(ConfigError, match="bg_thr"):
        errors.tide_errors(_gt(DOG), [], pos_thr=0.1, bg_thr=0.5)


def test_error_keys_are_lower_is_better():
    for t in errors.TIDE_TYPES:
        assert not metricinfo.higher_is_better(f"box/tide/{t}")
        assert not metricinfo.higher_is_better(f"box/tide/{t}/lo")
    assert metricinfo.higher_is_better("box/AP_iou_auc")


def _gt2(objs):
    """Two images; ``objs`` is a list of (image_id, category_id, box)."""
    return {"images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
            "categories": [{"id": 1, "name": "dog"}, {"id": 2, "name": "cat"}, {"id": 3, "name": "car"}],
            "annotations": [{"id": i, "image_id": im, "category_id": c, "bbox": list(b)}
                            for i, (im, c, b) in enumerate(objs, 1)]}  # fmt: skip


def test_confusion_matrix_by_hand():
    cat_box = (60, 60, 30, 30)
    gt = _gt2([(1, 1, DOG), (1, 2, cat_box), (2, 1, DOG)])
    dets = [
        _det(DOG, 0.9, cat=2),  # a cat seen on the dog of image 1 -> dog row, cat column
        _det((12, 10, 40, 40), 0.4, cat=1),  # a dog there too, IoU 38/42 < 40/40 of the cat -> not the best
        _det(HALF_RIGHT, 0.8, cat=1),  # poorly placed (IoU 1/3): neither a match nor background
        _det((0, 70, 20, 20), 0.7, cat=3),  # a car on empty background
        _det((0, 70, 20, 20), 0.05, cat=1),  # below the score floor
        {**_det(DOG, 0.6, cat=1), "image_id": 2},  # image 2: its dog found
    ]
    cm = errors.confusion_matrix(gt, dets, min_score=0.1)
    assert cm["labels"] == ["dog", "cat", "car"]
    assert cm["rows"] == ["dog", "cat", "car", "background"] and cm["cols"] == ["dog", "cat", "car", "missed"]
    assert cm["matrix"] == [
        [1, 1, 0, 0],  # one dog seen as a dog (image 2), one as a cat
        [0, 0, 0, 1],  # the cat missed
        [0, 0, 0, 0],  # no car in any layout
        [0, 0, 1, 0],  # one car on background
    ]
    # without the floor the low-scored dog on background counts too
    assert errors.confusion_matrix(gt, dets)["matrix"][3] == [1, 0, 1, 0]
    # a stricter IoU: the dog of image 2 (IoU 1) still matches; the 0.9 cat box too (IoU 1)
    assert errors.confusion_matrix(gt, dets, iou_thr=0.95, min_score=0.1)["matrix"][0] == [1, 1, 0, 0]
    # the breakdowns carry it, JSON-friendly
    _, b = errors.error_metrics(gt, dets, confusion_min_score=0.1)
    assert b["box/confusion"]["matrix"] == cm["matrix"]
    assert json.loads(json.dumps(b["box/confusion"])) == cm
    with pytest.raises(ConfigError, match="bg_thr"):
        errors.confusion_matrix(gt, dets, iou_thr=0.05)


def test_confusion_matrix_agrees_with_hotcoco_on_one_to_one_cases():
    """Where every object has at most one overlapping detection, the per-object view equals hotcoco's
    one-to-one matching (its background row also holds poorly placed boxes, so none here)."""
    from gligen_eval.scoring import coco

    gt = _gt2([(1, 1, DOG), (1, 2, (60, 60, 30, 30)), (2, 3, DOG), (2, 1, (60, 0, 30, 30))])
    dets = [_det(DOG, 0.9, cat=2), {**_det(DOG, 0.8, cat=3), "image_id": 2}, _det((0, 70, 20, 20), 0.7, cat=3)]
    ours = errors.confusion_matrix(gt, dets)
    g = coco.prepare_gt(gt)
    E = coco._hotcoco_eval(g, coco.prepare_results(dets, g), iou_type="bbox", lvis_style=False, kpt_sigmas=None)
    hc = E.confusion_matrix(iou_thr=0.5)
    order = [hc["cat_names"].index(n) for n in ours["labels"]] + [hc["num_cats"]]
    theirs = [[int(hc["matrix"][i][j]) for j in order] for i in order]
    assert ours["matrix"] == theirs


def test_per_category_breakdown_keeps_cross_class_errors():
    """A cat box on a dog is the dog's class error (the oracle relabels it a dog), not a miss of the
    dog and a background box of the cat; categories average to the run."""
    cat_box = (60, 60, 30, 30)
    gt = _gt2([(1, 1, DOG), (1, 2, cat_box)])
    tide = errors.tide_errors(gt, [_det(DOG, 0.9, cat=2), _det(cat_box, 0.8, cat=2)])
    assert tide.counts == {"cls": 1, "loc": 0, "both": 0, "dupl": 0, "bkg": 0, "miss": 0}
    dog, cat = tide.per_category["dog"], tide.per_category["cat"]
    assert dog["AP50"] == 0.0 and dog["cls"] == pytest.approx(1.0) and dog["n_miss"] == 0
    # the cat's own AP: the wrong box ranks first (precision 1/2 at full recall); relabelled, it leaves
    assert cat["AP50"] == pytest.approx(0.5) and cat["cls"] == pytest.approx(0.5) and cat["n_cls"] == 1
    assert tide.delta_ap["cls"] == pytest.approx(0.75) and tide.ap50 == pytest.approx(0.25)
    assert set(tide.per_category) == {"dog", "cat"}  # car has no object


def test_one_object_two_errors_fixes_once_and_a_fully_missed_class():
    """Two poorly placed boxes on one dog: only the better-scored one becomes a true positive (the
    other is dropped), as in TIDE; a class with every object missed and nothing detected gets AP 1
    from the miss oracle."""
    gt = _gt2([(1, 1, DOG), (2, 3, DOG)])
    tide = errors.tide_errors(gt, [_det(HALF_RIGHT, 0.9), _det((10, 30, 40, 40), 0.8)])
    assert tide.counts["loc"] == 2 and tide.counts["miss"] == 1
    assert tide.per_category["dog"]["loc"] == pytest.approx(1.0)  # one TP, the other box gone
    assert tide.per_category["car"]["miss"] == pytest.approx(1.0) and tide.per_category["car"]["AP50"] == 0.0
    assert tide.delta_ap["miss"] == pytest.approx(0.5) and tide.delta_ap["loc"] == pytest.approx(0.5)


def test_counts_and_base_agree_with_hotcoco_on_a_random_scene():
    import numpy as np

    from gligen_eval.scoring import coco

    rng = np.random.default_rng(3)
    objs, dets = [], []
    for im in (1, 2):
        for _ in range(6):
            x, y, w, h = rng.uniform(0, 60, 2).tolist() + rng.uniform(10, 40, 2).tolist()
            c = int(rng.integers(1, 4))
            objs.append((im, c, (x, y, w, h)))
            for _ in range(int(rng.integers(0, 3))):
                jit = rng.normal(0, 6, 4) * [1, 1, 0.5, 0.5]
                dets.append({"image_id": im, "category_id": int(rng.integers(1, 4)) if rng.random() < 0.3 else c,
                             "bbox": [x + jit[0], y + jit[1], max(1.0, w + jit[2]), max(1.0, h + jit[3])],
                             "score": float(rng.random())})  # fmt: skip
        dets.append({"image_id": im, "category_id": 1, "bbox": [90, 90, 8, 8], "score": 0.95})
    gt = _gt2(objs)
    ours = errors.tide_errors(gt, dets)
    E, _, _ = errors._evaluator(gt, dets)
    E.evaluate()
    theirs = E.tide_errors(pos_thr=0.5, bg_thr=0.1)
    names = {"cls": "Cls", "loc": "Loc", "both": "Both", "dupl": "Dupe", "bkg": "Bkg", "miss": "Miss"}
    assert ours.counts == {k: theirs["counts"][v] for k, v in names.items()}
    assert sum(ours.counts.values()) > 5
    assert ours.ap50 == pytest.approx(theirs["ap_base"], abs=1e-12)
    assert ours.ap50 == pytest.approx(coco.evaluate_coco(gt, dets, iou_type="bbox", backend="pycocotools")["AP50"], abs=1e-12)


@pytest.mark.parametrize("dx", [0, 5, 12, 20, 30, 36, 45])
@pytest.mark.parametrize("other_class", [False, True])
def test_instance_error_type_agrees_with_tide_on_one_box(dx, other_class):
    """One object, one detection: the instance row's error type is TIDE's type of that detection
    (a missed object's detection is background; TIDE counts the object of a ``both`` error as
    missed too), and a hit has no error."""
    from gligen_eval.records import Detection, GroundedObject, Layout, SampleRecord
    from gligen_eval.scoring.instances import match_instances

    box = (DOG[0] + dx, DOG[1], DOG[2], DOG[3])
    m, b = errors.error_metrics(_gt(DOG), [_det(box, cat=2 if other_class else 1)], confusion_min_score=0.0)
    counts = b["box/tide_counts"]
    lay = Layout("L", "c", (GroundedObject(phrase="dog", box=(0.1, 0.1, 0.5, 0.5), category="dog"),))
    s = SampleRecord(sample_key="k", layout_id="L", seed=0, image="i.png", width=100, height=100, layout_hash="h",
                     settings_hash="h")  # fmt: skip
    det = Detection(box=(box[0] / 100, box[1] / 100, (box[0] + box[2]) / 100, (box[1] + box[3]) / 100),
                    label="cat" if other_class else "dog", score=0.9)  # fmt: skip
    kind = match_instances(s, lay, [det])[0].error_type
    expected = {k: 0 for k in errors.TIDE_TYPES}
    if kind == "missed":
        expected.update(bkg=1, miss=1)
    elif kind != "hit":
        expected[kind] = 1
        expected["miss"] = int(kind == "both")  # TIDE's both-oracle drops the box: the object stays missed
    assert counts == expected, (kind, counts)
    # the confusion matrix: a hit or a class error is seen as that class, anything else missed
    seen = b["box/confusion"]["matrix"][b["box/confusion"]["labels"].index("dog")]
    labels = b["box/confusion"]["cols"]
    assert labels[seen.index(1)] == {"hit": "dog", "cls": "cat"}.get(kind, "missed")
