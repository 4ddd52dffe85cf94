"""Detectors: ultralytics YOLO / YOLO-pose from .yaml definitions (random weights, offline), registry, errors."""

from __future__ import annotations

import numpy as np
import pytest

from gligen_eval.config import DetectorConfig
from gligen_eval.errors import ConfigError, MissingWeightsError
from gligen_eval.records import Detection
from gligen_eval.scoring import coco
from gligen_eval.scoring.detectors import (
    Detector,
    YoloDetector,
    YoloPoseDetector,
    build_detector,
    register_detector,
    resolve_detector,
)


def _images(n=2, size=64):
    from PIL import Image

    return [Image.fromarray((np.random.default_rng(i).random((size, size, 3)) * 255).astype("uint8")) for i in range(n)]


@pytest.fixture(scope="module")
def yolo():
    return YoloDetector("yolov8n.yaml", conf=0.0, iou=0.7, imgsz=64, max_det=20, batch_size=1, device="cpu")


def _check_box(d: Detection):
    x0, y0, x1, y1 = d.box
    assert 0.0 <= x0 <= x1 <= 1.0 and 0.0 <= y0 <= y1 <= 1.0


def test_yolo_from_yaml_returns_normalized_detections(yolo, capfd):
    images = _images(3)
    out = yolo.detect(images)
    assert isinstance(yolo, Detector)
    assert len(out) == 3
    assert all(0 < len(dets) <= 20 for dets in out)  # conf=0.0: random weights still yield boxes
    for dets in out:
        for d in dets:
            assert isinstance(d, Detection)
            _check_box(d)
            assert d.label in coco.COCO80_NAMES
            assert 0.0 <= d.score <= 1.0
    assert capfd.readouterr().out == ""  # nothing on stdout (--json stays clean)
    assert yolo.detect([]) == []


def test_yolo_is_deterministic_and_batch_independent(yolo):
    images = _images(3)
    again = YoloDetector("yolov8n.yaml", conf=0.0, iou=0.7, imgsz=64, max_det=20, batch_size=3, device="cpu")
    assert again.fingerprint() == yolo.fingerprint()  # batch size is not part of the result
    a, b = yolo.detect(images), again.detect(images)
    for da, db in zip(a, b):
        assert [x.label for x in da] == [x.label for x in db]
        np.testing.assert_allclose([x.box for x in da], [x.box for x in db], atol=1e-5)
        np.testing.assert_allclose([x.score for x in da], [x.score for x in db], rtol=1e-4, atol=1e-7)
    other = YoloDetector("yolov8n.yaml", conf=0.0, iou=0.7, imgsz=64, max_det=20, device="cpu", seed=1)
    assert other.fingerprint() != yolo.fingerprint()
    assert yolo.name == "yolo:yolov8n.yaml"


def test_pose_from_yaml_returns_keypoints():
    pose = YoloPoseDetector("yolov8n-pose.yaml", conf=0.0, imgsz=64, max_det=4, device="cpu", kpt_conf=0.5)
    out = pose.detect(_images(2))
    assert len(out) == 2 and all(len(d) > 0 for d in out)
    flags = set()
    for dets in out:
        for d in dets:
            _check_box(d)
            assert d.label == "person"
            assert len(d.keypoints) == 17
            for x, y, v in d.keypoints:
                assert 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0 and v in (0, 2)
                flags.add(v)
    all_visible = YoloPoseDetector("yolov8n-pose.yaml", conf=0.0, imgsz=64, max_det=4, device="cpu", kpt_conf=0.0)
    assert {v for d in all_visible.detect(_images(1))[0] for _, _, v in d.keypoints} == {2}
    assert all_visible.fingerprint() != pose.fingerprint()
    # pose detections feed the keypoint COCO path
    from gligen_eval.records import GroundedObject, Layout

    lay = Layout("p", "a person", (GroundedObject(phrase="person", box=(0.1, 0.1, 0.9, 0.9), category="person",
                                                  keypoints=tuple((0.5, 0.5, 2) for _ in range(17))),))  # fmt: skip
    gt, res = coco.build_eval_inputs([("s", lay, 64, 64, out[0])], iou_type="keypoints")
    assert len(res) == len(out[0])
    m = coco.evaluate_coco(gt, res, iou_type="keypoints")
    assert 0.0 <= m["AP"] <= 1.0


def test_local_pt_checkpoint(yolo, tmp_path):
    ckpt = tmp_path / "random-yolov8n.pt"
    yolo.model.save(str(ckpt))  # ultralytics stores the weights in half precision
    det = YoloDetector(str(ckpt), conf=0.0, iou=0.7, imgsz=64, max_det=20, device="cpu")
    assert det.name == "yolo:random-yolov8n.pt" and det.names[0] == "person"
    assert det.fingerprint() != yolo.fingerprint()
    images = _images(2)
    for da, db in zip(yolo.detect(images), det.detect(images)):
        assert len(da) == len(db)
        np.testing.assert_allclose([x.box for x in da], [x.box for x in db], atol=1e-2)
        np.testing.assert_allclose([x.score for x in da], [x.score for x in db], rtol=2e-2, atol=1e-6)


def test_missing_weights_never_download(tmp_path):
    with pytest.raises(MissingWeightsError) as e:
        YoloDetector(str(tmp_path / "yolov8x.pt"), device="cpu")
    msg = str(e.value)
    assert "downloads are disabled" in msg and str(tmp_path / "yolov8x.pt") in msg
    assert not (tmp_path / "yolov8x.pt").exists()
    with pytest.raises(ConfigError, match=r"\.pt"):
        YoloDetector(str(tmp_path / "model.onnx"), device="cpu")
    with pytest.raises(ConfigError, match="conf"):
        YoloDetector("yolov8n.yaml", conf=2.0, device="cpu")


def test_yaml_task_mismatch_is_an_error():
    with pytest.raises(ConfigError, match="pose"):
        YoloDetector("yolov8n-pose.yaml", conf=0.0, imgsz=64, device="cpu")


class _EchoDetector:
    """A detector that reports one full-image box per image (registry test)."""

    name = "echo"

    def __init__(self, weights: str = "", conf: float = 0.0, device: str = "cpu"):
        self.weights, self.conf, self.device = weights, conf, device

    def fingerprint(self) -> str:
        return f"echo-{self.conf}"

    def detect(self, images):
        return [[Detection(box=(0.0, 0.0, 1.0, 1.0), label="dog", score=1.0)] for _ in images]


def test_registry_builds_lazily_and_by_path():
    det = build_detector(DetectorConfig(weights="yolov8n.yaml", conf=0.0, imgsz=64, max_det=5, batch_size=2), device="cpu")
    assert isinstance(det, YoloDetector) and det.max_det == 5 and det.batch_size == 2 and det.iou == 0.6
    assert resolve_detector("yolo-pose") is YoloPoseDetector
    register_detector("echo", f"{__name__}:_EchoDetector")
    echo = build_detector({"kind": "echo", "weights": "w", "conf": 0.3, "imgsz": 64}, device="cpu")
    assert isinstance(echo, _EchoDetector) and echo.conf == 0.3 and echo.device == "cpu"
    assert build_detector({"kind": f"{__name__}:_EchoDetector"}).fingerprint() == "echo-0.0"
    with pytest.raises(ConfigError, match="unknown detector kind 'nope'"):
        build_detector({"kind": "nope"})
    with pytest.raises(ValueError):
        register_detector("bad", "no_colon_here")


def test_detectors_leave_torch_thread_count_as_they_found_it():
    """ultralytics' predictor sets torch to one thread on a CPU; generation after a detector (the next τ
    of a sweep) must run with the thread count it had, or its float sums change order."""
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        det = YoloDetector("yolov8n.yaml", conf=0.0, imgsz=64, device="cpu")
        assert torch.get_num_threads() == 2
        det.detect(_images())
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
