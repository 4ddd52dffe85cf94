import json

import pytest

from gligen_eval import boxes
from gligen_eval.records import Detection, GroundedObject, InstanceRecord, Layout, stable_hash


def test_box_round_trips():
    w, h = 640, 427
    xywh = (12.5, 30.0, 200.25, 100.75)
    norm = boxes.xywh_abs_to_xyxy_norm(xywh, w, h)
    assert norm == pytest.approx((12.5 / w, 30 / h, 212.75 / w, 130.75 / h))
    assert boxes.xyxy_norm_to_xywh_abs(norm, w, h) == pytest.approx(xywh)
    assert boxes.xyxy_norm_to_xyxy_abs(boxes.xyxy_abs_to_xyxy_norm((1, 2, 3, 4), w, h), w, h) == pytest.approx((1, 2, 3, 4))
    assert boxes.xywh_norm_to_xyxy_norm((0.1, 0.2, 0.3, 0.4)) == pytest.approx((0.1, 0.2, 0.4, 0.6))


def test_iou():
    assert boxes.iou_xyxy((0, 0, 1, 1), (0, 0, 1, 1)) == 1.0
    assert boxes.iou_xyxy((0, 0, 1, 1), (1, 1, 2, 2)) == 0.0
    assert boxes.iou_xyxy((0, 0, 2, 1), (1, 0, 3, 1)) == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    "box, needle",
    [((0.1, 0.1, 1.2, 0.5), "outside"), ((0.5, 0.1, 0.4, 0.5), "empty"), ((0.1, 0.2, 0.3), "4 numbers")],
)
def test_object_rejects_bad_boxes(box, needle):
    with pytest.raises(ValueError, match=needle) as e:
        GroundedObject("dog", box)
    assert "GroundedObject.box" in str(e.value)


def test_keypoints_validated():
    kps = [(0.5, 0.5, 2)] * 17
    o = GroundedObject("person", (0.1, 0.1, 0.9, 0.9), keypoints=kps)
    assert len(o.keypoints) == 17
    with pytest.raises(ValueError, match="17"):
        GroundedObject("person", (0.1, 0.1, 0.9, 0.9), keypoints=kps[:5])
    with pytest.raises(ValueError, match="visibility"):
        GroundedObject("person", (0.1, 0.1, 0.9, 0.9), keypoints=[(0.5, 0.5, 3)] * 17)


def test_layout_round_trip_and_hash():
    lay = Layout("coco-1", "a dog and a cat", (GroundedObject("dog", (0.1, 0.1, 0.5, 0.5), "dog", 18, source_id=7),
                                                 GroundedObject("cat", (0.5, 0.5, 0.9, 0.9))), 640, 480, "img.jpg", "coco")
    d = json.loads(json.dumps(lay.to_dict()))
    back = Layout.from_dict(d)
    assert back == lay
    assert back.content_hash() == lay.content_hash()
    moved = Layout.from_dict({**d, "objects": [{**d["objects"][0], "box": [0.1, 0.1, 0.5, 0.6]}, d["objects"][1]]})
    assert moved.content_hash() != lay.content_hash()
    # where the layout came from does not change what is generated
    assert Layout.from_dict({**d, "source": "other"}).content_hash() == lay.content_hash()
    with pytest.raises(ValueError, match="unknown field"):
        Layout.from_dict({**d, "colour": 1})


def test_detection_and_instance_round_trip():
    det = Detection((0.1, 0.2, 0.3, 0.4), "dog", 0.9, 16)
    assert Detection.from_dict(json.loads(json.dumps(det.to_dict()))) == det
    rec = InstanceRecord("k", "l", 1, 0, "dog", "dog", (0.1, 0.1, 0.2, 0.2), 0.3, False, "dog: best IoU 0.30 < 0.5")
    assert InstanceRecord.from_dict(json.loads(json.dumps(rec.to_dict()))) == rec


def test_stable_hash_is_order_independent_for_dicts():
    assert stable_hash({"a": 1, "b": 2}) == stable_hash({"b": 2, "a": 1})
    assert stable_hash([1, 2]) != stable_hash([2, 1])
