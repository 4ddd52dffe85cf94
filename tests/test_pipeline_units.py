"""Pieces of the scoring stage on hand-made data: resampled AP, keypoint breakdown, agreement,
real-image records, FID cache location and the scoring config keys."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from gligen_eval.config import RunConfig, config_from_dict
from gligen_eval.errors import ConfigError, InputError
from gligen_eval.records import GroundedObject, InstanceRecord, Layout
from gligen_eval.scoring import boxes, coco, fid_pass, keypoints, pipeline, realimages, resample
from gligen_eval.scoring.resample import ImageSetAP


def _synthetic(n: int, k: int, n_cat: int, *, keypoints: bool = False, lvis: bool = False, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = [{"id": i + 1, "width": 64, "height": 64} for i in range(n)]
    anns, res = [], []
    for i in range(n):
        for _ in range(k):
            x, y = rng.uniform(0, 40, 2)
            w, h = rng.uniform(5, 24, 2)
            c = 1 if keypoints else int(rng.integers(1, n_cat + 1))
            a = {"id": len(anns) + 1, "image_id": i + 1, "bbox": [x, y, w, h], "category_id": c}
            r = {"image_id": i + 1, "bbox": [x + rng.normal(0, 2), y + rng.normal(0, 2), w, h], "category_id": c,
                 "score": float(rng.uniform())}  # fmt: skip
            if keypoints:
                gx, gy = x + rng.uniform(0, w, 17), y + rng.uniform(0, h, 17)
                a["keypoints"] = [v for p in zip(gx, gy, [2] * 17) for v in p]
                r["keypoints"] = [v for p in zip(gx + rng.normal(0, 1.5, 17), gy + rng.normal(0, 1.5, 17), [1] * 17) for v in p]
            anns.append(a)
            res.append(r)
    cats = [coco.person_category()] if keypoints else [{"id": c, "name": f"c{c}"} for c in range(1, n_cat + 1)]
    if lvis:
        for c in cats:
            c["frequency"] = "rcf"[c["id"] % 3]
        for im in images:
            im["neg_category_ids"], im["not_exhaustive_category_ids"] = [1], [2]
    return {"images": images, "annotations": anns, "categories": cats}, res


@pytest.mark.parametrize("kind", ["bbox", "keypoints", "lvis"])
def test_resampled_ap_equals_evaluating_the_drawn_dataset(kind):
    gt, res = _synthetic(10, 4, 5, keypoints=kind == "keypoints", lvis=kind == "lvis", seed=3)
    iou_type = "keypoints" if kind == "keypoints" else "bbox"
    ap_set = ImageSetAP(gt, res, iou_type=iou_type, lvis_style=kind == "lvis")
    assert ap_set.fast
    full = coco.run_coco_eval(gt, res, iou_type=iou_type, lvis_style=kind == "lvis").metrics["AP"]
    assert ap_set.ap(range(10)) == full
    rng = np.random.default_rng(1)
    for _ in range(4):
        idx = rng.integers(0, 10, 10)
        assert ap_set.ap(idx) == pytest.approx(ap_set.recompute(idx), abs=1e-12)


def test_resampled_ap_without_fast_path_and_interval(monkeypatch):
    gt, res = _synthetic(8, 3, 4, seed=5)
    fast = ImageSetAP(gt, res)
    monkeypatch.setattr(resample, "_Accumulator", lambda owner: (_ for _ in ()).throw(AttributeError("gone")))
    slow = ImageSetAP(gt, res)
    assert not slow.fast
    cols = {f"L{i}": [i] for i in range(8)}
    a = resample.bootstrap_ap_interval(fast, cols, n_boot=30, seed=2)
    b = resample.bootstrap_ap_interval(slow, cols, n_boot=30, seed=2)
    assert a == pytest.approx(b, abs=1e-12) and a[0] < a[1]
    assert math.isnan(fast.ap([]))


def test_keypoint_breakdown_hand_values():
    sig = coco.COCO_KEYPOINT_SIGMAS
    gt_kps = [10.0, 10.0, 2] * 17
    gt_kps[2 * 3 + 2] = 0  # keypoint 2 unlabelled
    gt = {"annotations": [{"image_id": 1, "bbox": [0, 0, 20, 20], "area": 400.0, "keypoints": gt_kps}]}
    pred = [10.0, 10.0, 1] * 17
    pred[0] = 13.0  # nose 3 px off
    out = keypoints.keypoint_breakdown(gt, [{"image_id": 1, "keypoints": pred}])
    expected = math.exp(-9.0 / (2 * sig[0]) ** 2 / (400.0 + np.spacing(1)) / 2)
    assert out["nose"]["similarity"] == pytest.approx(expected) and out["nose"]["n"] == 1
    assert out["nose"]["pck"] == float(expected >= 0.5)
    assert "right_eye" not in out and out["left_eye"]["similarity"] == 1.0
    # no detection at all: every labelled point scores 0
    missed = keypoints.keypoint_breakdown(gt, [])
    assert missed["nose"] == {"similarity": 0.0, "pck": 0.0, "n": 1}


def _rec(key: str, j: int, hit: bool) -> InstanceRecord:
    return InstanceRecord(key, "L", 0, j, "dog", "dog", (0, 0, 1, 1), 0.9 if hit else 0.1, hit, "")


def test_agreement_rate():
    a = [_rec("s", 0, True), _rec("s", 1, False), _rec("s", 2, True), _rec("t", 0, True)]
    b = [_rec("s", 0, True), _rec("s", 1, True), _rec("s", 2, True), _rec("t", 0, True)]
    assert boxes.agreement_rate(a, b) == 0.75
    assert boxes.agreement_rate(a, a) == 1.0
    assert math.isnan(boxes.agreement_rate(a, []))


def test_real_image_records_and_errors(tmp_path):
    img = tmp_path / "a.png"
    Image.new("RGB", (30, 20), (1, 2, 3)).save(img)
    lay = Layout("L1", "a dog", (GroundedObject("dog", (0.1, 0.1, 0.5, 0.5), category="dog"),), image_path=str(img))
    (r,) = realimages.real_images([lay])
    assert (r.width, r.height) == (30, 20)
    plain, = realimages.real_samples([r], with_phrases=False)
    phrased, = realimages.real_samples([r], with_phrases=True)
    assert plain.sample_key.startswith("real-") and plain.sample_key != phrased.sample_key
    assert plain.image == str(img.resolve())
    with pytest.raises(InputError, match=r"\[layout L2\].*images_dir"):
        realimages.real_images([Layout("L2", "x", lay.objects)])
    with pytest.raises(InputError, match=r"missing.png \[layout L3\]"):
        realimages.real_images([Layout("L3", "x", lay.objects, image_path=str(tmp_path / "missing.png"))])


def test_fid_cache_dir_and_reference_folder(tmp_path, monkeypatch):
    cfg = RunConfig().fid
    monkeypatch.delenv(fid_pass.FID_CACHE_ENV, raising=False)
    assert str(fid_pass.fid_cache_dir(cfg)).endswith(".cache/gligen-eval/fid")
    monkeypatch.setenv(fid_pass.FID_CACHE_ENV, str(tmp_path / "env"))
    assert fid_pass.fid_cache_dir(cfg) == tmp_path / "env"
    cfg.cache_dir = str(tmp_path / "cfg")
    assert fid_pass.fid_cache_dir(cfg) == tmp_path / "cfg"
    (tmp_path / "ref" / "sub").mkdir(parents=True)
    for name in ("b.png", "sub/a.jpg", "notes.txt"):
        (tmp_path / "ref" / name).write_bytes(b"x")
    cfg.reference = str(tmp_path / "ref")
    paths, where = fid_pass.fid_reference_images(cfg, [])
    assert [p.name for p in paths] == ["b.png", "a.jpg"] and "folder" in where
    cfg.reference = None
    with pytest.raises(InputError, match=r"\[layout L\].*fid.reference"):
        fid_pass.fid_reference_images(cfg, [Layout("L", "x", ())])


def test_tiny_fid_features_are_seeded():
    import torch

    a, b, c = fid_pass.tiny_fid_extractor(0), fid_pass.tiny_fid_extractor(0), fid_pass.tiny_fid_extractor(1)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    batch = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    assert a(batch).shape == (2, 32) and torch.equal(a(batch), b(batch))


def test_scoring_config_keys_defaults_and_errors():
    cfg = RunConfig()
    assert (cfg.scoring.bootstrap, cfg.scoring.bootstrap_ap, cfg.scoring.ci_level) == (1000, 1000, 0.95)
    assert cfg.pose is None and cfg.extra_detectors == [] and not cfg.fid.enabled and not cfg.clip.enabled
    assert cfg.fid.feature == "inception" and cfg.clip.weight == 100.0
    assert not pipeline.uses_random_scoring_weights(cfg)
    c = config_from_dict({}, ["pose.weights=yolov8n-pose.yaml", "clip.enabled=true", "clip.model=tiny"])
    assert c.pose.kind == "yolo-pose" and pipeline.uses_random_scoring_weights(c)
    for data, needle in [
        ({"scoring": {"bootstrap": -1}}, "scoring.bootstrap"),
        ({"scoring": {"ci_level": 1.0}}, "scoring.ci_level"),
        ({"pose": {"wieghts": "x"}}, "pose.wieghts"),
        ({"extra_detectors": [{"name": "a"}, {"name": "a"}]}, "duplicate name"),
        ({"extra_detectors": [{"name": "a/b"}]}, "extra_detectors[0].name"),
        ({"fid": {"enabled": True, "resize": "squash-299"}}, "fid.resize"),
        ({"fid": {"feature": "vgg"}}, "fid.feature"),
        ({"clip": {"weight": 0}}, "clip.weight"),
    ]:
        with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]")):
            config_from_dict(data)
