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
