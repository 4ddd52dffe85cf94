"""Open-vocabulary detector on a tiny random OWLv2: output format, box geometry, phrases, loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from gligen_eval.errors import ConfigError, MissingWeightsError
from gligen_eval.records import Detection
from gligen_eval.scoring.detectors import Detector
from gligen_eval.scoring.openvocab import OwlDetector, cxcywh_to_image_xyxy, tiny_owlv2


@pytest.fixture(scope="module")
def tiny():
    return tiny_owlv2(seed=0)


@pytest.fixture(scope="module")
def detector(tiny):
    model, processor = tiny
    return OwlDetector("tiny-owlv2", conf=0.0, model=model, processor=processor, device="cpu", batch_size=2)


def _img(seed, size):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8))


def test_detections_have_the_protocol_format(detector):
    assert isinstance(detector, Detector)
    images = [_img(0, (64, 32)), _img(1, (32, 48)), _img(2, (40, 40))]
    phrases = [["a dog", "a red ball", "a dog"], ["a tree"], []]
    out = detector.detect(images, phrases)
    assert len(out) == 3 and out[2] == []
    for dets, allowed in zip(out[:2], (["a dog", "a red ball"], ["a tree"])):
        assert dets, "conf=0.0 keeps every predicted box"
        assert all(isinstance(d, Detection) for d in dets)
        assert {d.label for d in dets} <= set(allowed)
        for d in dets:
            x0, y0, x1, y1 = d.box
            assert 0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0
            assert 0.0 <= d.score <= 1.0 and d.category_id is None
        scores = [d.score for d in dets]
        assert scores == sorted(scores, reverse=True)
    # 4x4 = 16 predicted boxes per image, one label each in argmax mode (minus boxes in the padding)
    assert len(out[0]) <= 16 and len(out[1]) <= 16
    # same inputs, same outputs; batch composition does not matter (up to float rounding)
    again = detector.detect(images[:2][::-1], phrases[:2][::-1])
    assert [d.label for d in again[1]] == [d.label for d in out[0]]
    np.testing.assert_allclose([d.box for d in again[1]], [d.box for d in out[0]], atol=1e-5)
    np.testing.assert_allclose([d.score for d in again[1]], [d.score for d in out[0]], atol=1e-5)


def test_matches_the_processors_own_post_processing(tiny):
    model, processor = tiny
    det = OwlDetector("tiny-owlv2", conf=0.0, model=model, processor=processor, device="cpu")
    image = _img(5, (64, 40))
    phrases = ["a cat", "a chair"]
    ours = det.detect([image], [phrases])[0]
    inputs = processor(text=[phrases], images=[image], return_tensors="pt", padding="max_length", truncation=True, max_length=16)
    with torch.no_grad():
        outputs = model(**inputs)
    ref = processor.post_process_grounded_object_detection(outputs, threshold=-1.0, target_sizes=[(40, 64)], text_labels=[phrases])[0]
    ref_rows = []
    for box, score, label in zip(ref["boxes"].tolist(), ref["scores"].tolist(), ref["text_labels"]):
        x0, y0, x1, y1 = box[0] / 64, box[1] / 40, box[2] / 64, box[3] / 40
        x0, y0, x1, y1 = (min(1.0, max(0.0, v)) for v in (x0, y0, x1, y1))
        if x1 > x0 and y1 > y0:
            ref_rows.append((round(score, 6), label, tuple(round(v, 5) for v in (x0, y0, x1, y1))))
    ours_rows = [(round(d.score, 6), d.label, tuple(round(v, 5) for v in d.box)) for d in ours]
    assert sorted(ours_rows) == sorted(ref_rows)


def test_padded_square_geometry():
    box = torch.tensor([[0.5, 0.25, 0.5, 0.5]])  # cx, cy, w, h of the padded 64x64 input
    # a 64x32 image occupies the top half of the padded square
    assert cxcywh_to_image_xyxy(box, 64, 32, True).tolist() == [[0.25, 0.0, 0.75, 1.0]]
    # OWL-ViT: no padding, the box is already a fraction of the image
    assert cxcywh_to_image_xyxy(box, 64, 32, False).tolist() == [[0.25, 0.0, 0.75, 0.5]]
    # boxes reaching into the padding are clipped
    clipped = cxcywh_to_image_xyxy(torch.tensor([[0.5, 0.5, 0.2, 0.4]]), 64, 32, True).tolist()[0]
    assert clipped == pytest.approx([0.4, 0.6, 0.6, 1.0], abs=1e-6)


def test_label_modes_threshold_nms_and_max_det(tiny):
    model, processor = tiny
    images = [_img(7, (48, 48))]
    phrases = [["a person", "a horse", "a car"]]
    base = dict(model=model, processor=processor, device="cpu")
    argmax = OwlDetector("t", conf=0.0, **base).detect(images, phrases)[0]
    every = OwlDetector("t", conf=0.0, label_mode="all", **base).detect(images, phrases)[0]
    assert len(every) == 3 * len(argmax) == 48
    assert {d.label for d in every} == {"a person", "a horse", "a car"}
    top = OwlDetector("t", conf=0.0, label_mode="all", max_det=5, **base).detect(images, phrases)[0]
    assert [d.to_dict() for d in top] == [d.to_dict() for d in every[:5]]
    cut = sorted(d.score for d in every)[24]
    high = OwlDetector("t", conf=cut, label_mode="all", **base).detect(images, phrases)[0]
    assert len(high) == sum(d.score >= cut for d in every) and all(d.score >= cut for d in high)
    # NMS is per phrase: of two overlapping boxes only the better survives for the same phrase
    nms = OwlDetector("t", conf=0.0, iou=0.5, label_mode="all", **base)
    boxes = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.31, 0.3, 0.2, 0.2], [0.8, 0.8, 0.2, 0.2]])  # cxcywh, square image
    logits = torch.tensor([[2.0, -1.0], [1.0, 3.0], [0.0, 0.0]])
    kept = nms._postprocess(logits, boxes, ["a", "b"], 48, 48)
    got = sorted((d.label, round(d.box[0], 2), round(d.score, 4)) for d in kept)
    sig = lambda v: round(1.0 / (1.0 + float(np.exp(-v))), 4)  # noqa: E731
    assert got == sorted([("a", 0.2, sig(2.0)), ("b", 0.21, sig(3.0)), ("a", 0.7, sig(0.0)), ("b", 0.7, sig(0.0))])
    no_nms = OwlDetector("t", conf=0.0, label_mode="all", **base)._postprocess(logits, boxes, ["a", "b"], 48, 48)
    assert len(no_nms) == 6


def test_fixed_vocabulary_and_bad_arguments(tiny):
    model, processor = tiny
    fixed = OwlDetector("t", conf=0.0, phrases=["a cat", "a dog"], model=model, processor=processor, device="cpu")
    dets = fixed.detect([_img(9, (32, 32))])[0]
    assert dets and {d.label for d in dets} <= {"a cat", "a dog"}
    no_vocab = OwlDetector("t", model=model, processor=processor, device="cpu")
    with pytest.raises(ConfigError, match="needs phrases"):
        no_vocab.detect([_img(9, (32, 32))])
    with pytest.raises(ValueError, match="2 images but 1 phrase lists"):
        no_vocab.detect([_img(9, (32, 32))] * 2, [["a"]])
    with pytest.raises(ConfigError, match="label_mode"):
        OwlDetector("t", label_mode="best", model=model, processor=processor)  # type: ignore[arg-type]
    assert fixed.fingerprint() != no_vocab.fingerprint()
    assert fixed.fingerprint() == OwlDetector("t", conf=0.0, phrases=["a cat", "a dog"], model=model, processor=processor).fingerprint()


def test_real_ids_load_only_from_local_files(tmp_path, tiny):
    with pytest.raises(MissingWeightsError, match="google/owlv2-base-patch16-ensemble.*downloads are disabled"):
        OwlDetector("google/owlv2-base-patch16-ensemble", cache_dir=str(tmp_path / "hf"), device="cpu")
    model, processor = tiny
    folder = tmp_path / "tiny-owlv2"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    loaded = OwlDetector(str(folder), conf=0.0, device="cpu")
    assert loaded.name == "owlv2:tiny-owlv2"
    image = _img(11, (40, 56))
    a = loaded.detect([image], [["a boat"]])[0]
    b = OwlDetector("x", conf=0.0, model=model, processor=processor, device="cpu").detect([image], [["a boat"]])[0]
    assert [(d.label, round(d.score, 5)) for d in a] == [(d.label, round(d.score, 5)) for d in b]
