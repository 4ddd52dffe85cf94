"""The file-backed detector (``kind: file``): known detections through the real scoring stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gligen_eval import store
from gligen_eval.config import config_from_dict
from gligen_eval.errors import InputError, MissingWeightsError
from gligen_eval.records import Detection, GroundedObject, Layout, SampleRecord
from gligen_eval.scoring.filedet import FileDetector, pixel_key, read_detections, write_detections


def _image(seed: int, size: tuple[int, int] = (32, 24)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def test_pixel_key_follows_the_pixels_not_the_file(tmp_path):
    im = _image(0)
    im.save(tmp_path / "a.png")
    with Image.open(tmp_path / "a.png") as back:
        assert pixel_key(back) == pixel_key(im)
        assert pixel_key(back.convert("RGBA")) == pixel_key(im)  # mode does not matter, RGB pixels do
    assert pixel_key(_image(1)) != pixel_key(im)
    flat = np.zeros((4, 6, 3), np.uint8)
    assert pixel_key(Image.fromarray(flat)) != pixel_key(Image.fromarray(flat.reshape(6, 4, 3)))  # same bytes, other size


@pytest.mark.parametrize("name", ["dets.json", "dets.jsonl"])
def test_files_round_trip_and_name_their_detector(tmp_path, name):
    dets = {pixel_key(_image(0)): [Detection((0.1, 0.2, 0.5, 0.6), "dog", 0.9)], pixel_key(_image(1)): []}
    plain = FileDetector(str(write_detections(tmp_path / f"plain-{name}", dets)))
    assert plain.detect([_image(1), _image(0)]) == [[], dets[pixel_key(_image(0))]]
    assert plain.name == f"file:plain-{Path(name).stem}" and len(plain.fingerprint()) == 16
    made_by = {"name": "yolo-x", "fingerprint": "abc123"}
    named = FileDetector(str(write_detections(tmp_path / name, dets, detector=made_by)))
    assert (named.name, named.fingerprint()) == ("yolo-x", "abc123")  # the model that made the detections
    table, header = read_detections(tmp_path / name)
    assert table == dets and header == made_by
    changed = FileDetector(str(write_detections(tmp_path / f"other-{name}", {**dets, "x": []})))
    assert changed.fingerprint() != plain.fingerprint()  # without a header: a hash of the detections


def test_bad_files_and_unlisted_images_name_the_file(tmp_path):
    from gligen_eval.scoring.detectors import build_detector
    from gligen_eval.scoring.detection import check_detector_weights
    from gligen_eval.config import DetectorConfig

    with pytest.raises(MissingWeightsError, match="detections file not found"):
        check_detector_weights(DetectorConfig(kind="file", weights=str(tmp_path / "absent.json")))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image": "k1", "detections": []}\n{"detections": []}\n')
    with pytest.raises(InputError, match=r"bad.jsonl \[line 2\]"):
        check_detector_weights(DetectorConfig(kind="file", weights=str(bad)))
    box = tmp_path / "box.json"
    box.write_text(json.dumps({"k1": [{"box": [0.1, 0.2], "label": "dog", "score": 1.0}]}))
    with pytest.raises(InputError, match=r"box.json \[image k1\]: bad detection"):
        FileDetector(str(box))
    det = build_detector({"kind": "file", "weights": str(write_detections(tmp_path / "one.json", {"k": []}))})
    assert isinstance(det, FileDetector)
    with pytest.raises(InputError, match=r"one.json: no detections listed for an image of 32x24 pixels"):
        det.detect([_image(0)])


def test_score_run_scores_the_known_detections(tmp_path):
    """One object; its detection covers 62% of it (IoU 0.62): a hit at IoU 0.5, 0.55 and 0.6 of the ten
    COCO thresholds, so AP = 0.3, AP50 = 1, AP75 = 0; the other layout's object is found exactly."""
    from gligen_eval.scoring.pipeline import score_run

    lays = [Layout("A", "a dog", (GroundedObject("a dog", (0.2, 0.2, 0.6, 0.6), category="dog"),)),
            Layout("B", "a cat", (GroundedObject("a cat", (0.5, 0.1, 0.9, 0.7), category="cat"),))]  # fmt: skip
    source = tmp_path / "layouts.jsonl"
    store.write_jsonl(source, (lay.to_dict() for lay in lays))
    rd = store.RunDir(tmp_path / "run")
    samples, table = [], {}
    for i, lay in enumerate(lays):
        key = f"k{lay.layout_id}"
        im = _image(i, (64, 64))
        store.ensure_dir(rd.image_path(key).parent)
        im.save(rd.image_path(key))
        samples.append(SampleRecord(key, lay.layout_id, 0, rd.image_relpath(key), 64, 64, lay.content_hash(), "s"))
    table[pixel_key(_image(0, (64, 64)))] = [Detection((0.2, 0.2, 0.6, 0.2 + 0.4 * 0.62), "dog", 0.8)]
    table[pixel_key(_image(1, (64, 64)))] = [Detection((0.5, 0.1, 0.9, 0.7), "cat", 0.7)]
    cfg = config_from_dict({"name": "known", "out": str(rd.root), "layouts": {"source": str(source)},
                            "detector": {"kind": "file", "weights": str(write_detections(tmp_path / "d.json", table))},
                            "scoring": {"bootstrap": 0}})  # fmt: skip
    metrics, scorers = score_run(rd, cfg, lays, samples, device="cpu", progress=False)
    assert metrics["box/AP50"] == pytest.approx(1.0) and metrics["box/AP75"] == pytest.approx(0.5)
    assert metrics["box/AP"] == pytest.approx((0.3 + 1.0) / 2)  # the mean over the two categories
    assert metrics["box/mIoU"] == pytest.approx((0.62 + 1.0) / 2) and metrics["box/success"] == 1.0
    per_cat = json.loads(rd.path(store.BREAKDOWNS).read_text())["box/AP_per_category"]
    assert per_cat["dog"]["AP"] == pytest.approx(0.3) and per_cat["cat"]["AP"] == pytest.approx(1.0)
    assert scorers["detector"]["kind"] == "file" and scorers["detector"]["name"] == "file:d"
    rows = list(store.iter_jsonl(rd.path(store.DETECTIONS)))
    assert [r["sample_key"] for r in rows] == ["kA", "kB"] and rows[0]["detector"] == scorers["detector"]["fingerprint"]
