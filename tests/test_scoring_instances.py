"""Per-instance matching: best same-class IoU, hit/miss, readable reasons, mIoU and success rate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gligen_eval.boxes import iou_xyxy
from gligen_eval.records import Detection, GroundedObject, InstanceRecord, Layout, SampleRecord
from gligen_eval.scoring import instances as inst


def _sample(layout_id="L", seed=3) -> SampleRecord:
    return SampleRecord(sample_key="s1", layout_id=layout_id, seed=seed, image="images/s1.png", width=64, height=64,
                        layout_hash="h", settings_hash="h")  # fmt: skip


LAYOUT = Layout("L", "a dog, a cat and a kite", (
    GroundedObject(phrase="dog", box=(0.0, 0.0, 0.5, 0.5), category="dog"),
    GroundedObject(phrase="a grey cat", box=(0.5, 0.5, 1.0, 1.0), category="cat"),
    GroundedObject(phrase="kite", box=(0.1, 0.6, 0.3, 0.9), category="kite"),
))  # fmt: skip


def test_iou_matrix_matches_scalar_iou():
    rng = np.random.default_rng(0)
    a = np.sort(rng.random((5, 2, 2)), axis=1).transpose(0, 2, 1).reshape(5, 4)[:, [0, 2, 1, 3]]
    b = np.sort(rng.random((4, 2, 2)), axis=1).transpose(0, 2, 1).reshape(4, 4)[:, [0, 2, 1, 3]]
    m = inst.iou_matrix(a, b)
    assert m.shape == (5, 4)
    for i in range(5):
        for j in range(4):
            assert m[i, j] == pytest.approx(iou_xyxy(a[i], b[j]), abs=1e-12)
    assert inst.iou_matrix([[0, 0, 1, 1]], [[2, 2, 3, 3]])[0, 0] == 0.0


def test_hits_misses_and_reasons():
    dets = [
        Detection(box=(0.0, 0.0, 0.5, 0.4), label="dog", score=0.9),  # IoU .8 with the dog
        Detection(box=(0.0, 0.0, 0.25, 0.25), label="dog", score=0.95),  # IoU .25
        Detection(box=(0.75, 0.5, 1.0, 1.0), label="cat", score=0.5),  # IoU .5 with the cat
        Detection(box=(0.1, 0.6, 0.3, 0.9), label="person", score=0.7),
        Detection(box=(0.1, 0.6, 0.3, 0.9), label="dog", score=0.2),
    ]
    rows = inst.match_instances(_sample(), LAYOUT, dets, success_iou=0.6)
    assert [type(r) for r in rows] == [InstanceRecord] * 3
    dog, cat, kite = rows
    assert dog.best_iou == pytest.approx(0.8) and dog.hit and dog.reason == "dog: hit, IoU 0.80"
    assert dog.matched_box == (0.0, 0.0, 0.5, 0.4) and dog.matched_score == pytest.approx(0.9)
    assert cat.best_iou == pytest.approx(0.5) and not cat.hit
    assert cat.reason == "a grey cat: best IoU 0.50 < 0.6"
    assert kite.best_iou == 0.0 and not kite.hit and kite.matched_box is None
    assert kite.reason == "kite: no kite detected (5 detections of other classes: cat, dog, person)"
    assert (dog.sample_key, dog.layout_id, dog.seed, cat.object_index, cat.category) == ("s1", "L", 3, 1, "cat")
    # the same cat at the default threshold 0.5 is a hit (IoU >= threshold)
    assert inst.match_instances(_sample(), LAYOUT, dets)[1].hit


def test_min_score_and_no_detections():
    dets = [Detection(box=(0.0, 0.0, 0.5, 0.5), label="dog", score=0.1)]
    rows = inst.match_instances(_sample(), LAYOUT, dets, min_score=0.3)
    assert rows[0].reason == "dog: no dog detected (no detections)"
    rows = inst.match_instances(_sample(), LAYOUT, [], success_iou=0.5)
    assert [r.hit for r in rows] == [False, False, False]
    with pytest.raises(ValueError, match="success_iou"):
        inst.match_instances(_sample(), LAYOUT, [], success_iou=0.0)


def test_class_match_uses_aliases_and_phrase_when_no_category():
    lay = Layout("M", "c", (
        GroundedObject(phrase="motorcycle", box=(0.2, 0.2, 0.8, 0.8)),
        GroundedObject(phrase="Sofa", box=(0.0, 0.0, 0.2, 0.2)),
    ))  # fmt: skip
    dets = [Detection(box=(0.2, 0.2, 0.8, 0.8), label="motorbike", score=0.6),
            Detection(box=(0.0, 0.0, 0.2, 0.2), label="couch", score=0.6)]  # fmt: skip
    rows = inst.match_instances(_sample("M"), lay, dets)
    assert [r.hit for r in rows] == [True, True]
    assert rows[0].reason == "motorcycle: hit, IoU 1.00"


def test_aggregate():
    dets = [Detection(box=(0.0, 0.0, 0.5, 0.4), label="dog", score=0.9),
            Detection(box=(0.75, 0.5, 1.0, 1.0), label="cat", score=0.5)]  # fmt: skip
    rows = inst.match_instances(_sample(), LAYOUT, dets)
    agg = inst.aggregate(rows)
    assert agg["mIoU"] == pytest.approx((0.8 + 0.5 + 0.0) / 3)
    assert agg["success"] == pytest.approx(2 / 3) and agg["n"] == 3
    by_cat = inst.aggregate_by_category(rows)
    assert set(by_cat) == {"dog", "cat", "kite"} and by_cat["kite"]["success"] == 0.0
    empty = inst.aggregate([])
    assert empty["n"] == 0 and math.isnan(empty["mIoU"]) and math.isnan(empty["success"])
    # records round-trip through JSON dicts unchanged
    assert [InstanceRecord.from_dict(r.to_dict()) for r in rows] == rows


def test_error_types_by_hand():
    """Half a box off is a localisation error, a wrong label a classification error, nothing a miss."""
    lay = Layout("E", "c", (
        GroundedObject(phrase="dog", box=(0.0, 0.0, 0.4, 0.4), category="dog"),
        GroundedObject(phrase="cat", box=(0.5, 0.0, 0.9, 0.4), category="cat"),
        GroundedObject(phrase="kite", box=(0.0, 0.5, 0.4, 0.9), category="kite"),
        GroundedObject(phrase="car", box=(0.5, 0.5, 0.9, 0.9), category="car"),
        GroundedObject(phrase="bus", box=(0.0, 0.92, 0.05, 0.97), category="bus"),
    ))  # fmt: skip
    dets = [
        Detection(box=(0.2, 0.0, 0.6, 0.4), label="dog", score=0.9),  # the dog shifted by half its width: IoU 1/3
        Detection(box=(0.5, 0.0, 0.9, 0.4), label="dog", score=0.8),  # right place, wrong label (IoU 1 with the cat)
        Detection(box=(0.0, 0.5, 0.4, 0.9), label="kite", score=0.7),  # the kite, spot on
        Detection(box=(0.7, 0.5, 1.1, 0.9), label="bus", score=0.6),  # wrong label, half off the car
    ]
    rows = inst.match_instances(_sample("E"), lay, dets)
    assert [r.error_type for r in rows] == ["loc", "cls", "hit", "both", "missed"]
    assert rows[0].best_iou == pytest.approx(1 / 3) and not rows[0].hit
    # a localisation error wins over a classification error (TIDE's order): a well placed cat box on the dog
    rows = inst.match_instances(_sample("E"), lay, dets + [Detection(box=(0.0, 0.0, 0.4, 0.4), label="cat", score=0.5)])
    assert rows[0].error_type == "loc"
    rows = inst.match_instances(_sample("E"), lay, [Detection(box=(0.0, 0.0, 0.4, 0.4), label="cat", score=0.5)])
    assert rows[0].error_type == "cls"
    # below the background IoU nothing accounts for it; a lower bg_iou makes the far box a poorly placed one
    far = [Detection(box=(0.35, 0.0, 0.75, 0.4), label="dog", score=0.9)]  # IoU 1/15 with the dog
    assert inst.match_instances(_sample("E"), lay, far)[0].error_type == "missed"
    assert inst.match_instances(_sample("E"), lay, far, bg_iou=0.05)[0].error_type == "loc"
    assert inst.ERROR_TYPES == ("hit", "loc", "cls", "both", "missed")
    assert {r.error_type for r in inst.match_instances(_sample("E"), lay, dets)} <= set(inst.ERROR_TYPES)
    with pytest.raises(ValueError, match="bg_iou"):
        inst.match_instances(_sample("E"), lay, [], bg_iou=0.6)


def test_error_type_round_trips_and_old_rows_load():
    row = inst.match_instances(_sample(), LAYOUT, [])[0]
    assert row.error_type == "missed"
    assert InstanceRecord.from_dict(row.to_dict()) == row
    old = row.to_dict()
    del old["error_type"]
    assert InstanceRecord.from_dict(old).error_type is None
