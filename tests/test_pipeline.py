"""The scoring stage inside real runs: every metric key, hand-computed references, caching.

One small run is generated once (tiny random generator, 5 sample layouts, 64 px); the other
tests score copies of it with other scoring configs, and a test fails if any image would be
generated again. Detectors with known output come from :class:`FileDetector`, which returns the
detections a JSON table lists for each image (found by a hash of its pixels), so perfect,
jittered and empty detections go through the same pipeline as a real model.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
from PIL import Image

from gligen_eval import runner, store
from gligen_eval.config import config_from_dict
from gligen_eval.errors import InputError
from gligen_eval.layouts import SAMPLE_INSTANCES, load_layouts
from gligen_eval.records import COCO_KEYPOINT_NAMES, Detection, GroundedObject, Layout, stable_hash

BASE: dict[str, Any] = {
    "name": "pipeline",
    "layouts": {"source": "sample", "limit": 5},
    "model": {"name": "tiny"},
    "sampler": {"steps": 2, "height": 64, "width": 64, "batch_size": 5},
    "detector": {"weights": "yolov8n.yaml", "conf": 0.0, "imgsz": 64, "batch_size": 5},
    "scoring": {"instance_min_score": 0.0, "bootstrap": 200, "bootstrap_ap": 40},
    "pose": {"weights": "yolov8n-pose.yaml", "conf": 0.0, "imgsz": 64, "batch_size": 5},
    "extra_detectors": [{"kind": "owlv2", "weights": "tiny", "conf": 0.0, "name": "owl"}],
}
BOX_KEYS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
KP_KEYS = ["AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"]
SHRINK = math.sqrt(0.72)  # a box shrunk by this factor per side about its centre has IoU 0.72 with it


# --------------------------------------------------------------------------------------------
# detectors with known output


def pixel_key(image: Image.Image) -> str:
    return hashlib.sha256(np.asarray(image.convert("RGB")).tobytes()).hexdigest()[:20]


class FileDetector:
    """Returns the detections listed for each image in a JSON table ``{pixel_key: [Detection dicts]}``."""

    def __init__(self, weights: str, device: str = "cpu") -> None:
        self.table = json.loads(Path(weights).read_text())
        self.name = f"file:{Path(weights).stem}"

    def fingerprint(self) -> str:
        return stable_hash(self.table)

    def detect(self, images: list) -> list[list[Detection]]:
        return [[Detection.from_dict(d) for d in self.table.get(pixel_key(im), [])] for im in images]


class PhraseFileDetector(FileDetector):
    """The same, asked for each image's phrases (like an open-vocabulary detector); it records them."""

    takes_phrases = True
    seen: list[list[str]] = []

    def detect(self, images: list, phrases_per_image: list[list[str]]) -> list[list[Detection]]:
        assert len(images) == len(phrases_per_image)
        PhraseFileDetector.seen.extend(list(p) for p in phrases_per_image)
        out = super().detect(images)
        for dets, phrases in zip(out, phrases_per_image):
            assert all(d.label in phrases for d in dets)
        return out


FILE = f"{__name__}:FileDetector"
PHRASE_FILE = f"{__name__}:PhraseFileDetector"


def perfect(lay: Layout, *, phrases: bool = False) -> list[Detection]:
    return [Detection(o.box, o.phrase if phrases else (o.category or o.phrase), 0.9 - 0.01 * j)
            for j, o in enumerate(lay.objects)]  # fmt: skip


def shrunk(lay: Layout) -> list[Detection]:
    out = []
    for j, o in enumerate(lay.objects):
        x0, y0, x1, y1 = o.box
        cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * SHRINK / 2, (y1 - y0) * SHRINK / 2
        out.append(Detection((cx - hw, cy - hh, cx + hw, cy + hh), o.category or o.phrase, 0.9 - 0.01 * j))
    return out


def poses(lay: Layout) -> list[Detection]:
    out = []
    for j, o in enumerate(lay.objects):
        if o.keypoints is not None and any(v > 0 for _, _, v in o.keypoints):
            kps = tuple((x, y, 2 if v > 0 else 0) for x, y, v in o.keypoints)
            out.append(Detection(o.box, "person", 0.9 - 0.01 * j, keypoints=kps))
    return out


def write_table(path: Path, images: list[tuple[Path, Layout]], fn: Callable[[Layout], list[Detection]]) -> str:
    table = {}
    for img_path, lay in images:
        with Image.open(img_path) as im:
            table[pixel_key(im)] = [d.to_dict() for d in fn(lay)]
    path.write_text(json.dumps(table))
    return str(path)


# --------------------------------------------------------------------------------------------
# runs


def _merged(**sections: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data.update(copy.deepcopy(sections))
    return data


def _no_generation(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("an image was generated again while re-scoring")


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pipeline") / "base"
    runner.run(config_from_dict(_merged(out=str(out))), progress=False)
    return out


@pytest.fixture(scope="module")
def generated(base: Path) -> list[tuple[Path, Layout]]:
    """(image path, layout) of every generated image of the base run."""
    rd = store.RunDir(base)
    by_id = {lay.layout_id: lay for lay in rd.layouts()}
    return [(base / s.image, by_id[s.layout_id]) for s in rd.samples()]


@pytest.fixture(scope="module")
def real_dir(tmp_path_factory) -> Path:
    """Stand-ins for the layouts' real images (random pixels, 80x60), under their COCO file names."""
    folder = tmp_path_factory.mktemp("real")
    images = json.loads(SAMPLE_INSTANCES.read_text())["images"]
    rng = np.random.default_rng(0)
    for im in images:
        Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(folder / im["file_name"], format="PNG")
    return folder


def rescore(base: Path, out: Path, monkeypatch: pytest.MonkeyPatch, **sections: Any) -> dict[str, Any]:
    """Score a copy of the base run with other settings; generating any image fails the test."""
    from gligen_eval.generation.sampler import GroundedSampler

    out.mkdir(parents=True)
    shutil.copytree(base / "images", out / "images")
    shutil.copy2(base / "samples.jsonl", out / "samples.jsonl")
    before = {p.name: p.read_bytes() for p in (out / "images").iterdir()}
    monkeypatch.setattr(GroundedSampler, "generate", _no_generation)
    runner.run(config_from_dict(_merged(out=str(out), **sections)), progress=False)
    assert {p.name: p.read_bytes() for p in (out / "images").iterdir()} == before
    assert (out / "samples.jsonl").read_text() == (base / "samples.jsonl").read_text()
    return json.loads((out / "metrics.json").read_text())


def _in_unit(v: float) -> bool:
    return v == -1.0 or 0.0 <= v <= 1.0


# --------------------------------------------------------------------------------------------
# tests


def test_base_run_has_box_kp_extra_and_interval_keys(base):
    m = json.loads((base / "metrics.json").read_text())
    assert [k for k in m if k.startswith("box/A")][:12] == [f"box/{k}" for k in BOX_KEYS]
    for k in BOX_KEYS:
        assert _in_unit(m[f"box/{k}"]), k
    for k in KP_KEYS:
        assert _in_unit(m[f"kp/{k}"]), k
    for k in ("AP", "AP50", "AP75", "mIoU", "success"):
        assert 0.0 <= m[f"box@owl/{k}"] <= 1.0
    assert 0.0 <= m["agreement/owl"] <= 1.0
    for k in ("box/AP", "box/mIoU", "box/success", "kp/AP"):
        assert m[f"{k}/lo"] <= m[f"{k}/hi"], k
    manifest = json.loads((base / "manifest.json").read_text())
    for role in ("detector", "pose", "detector@owl"):
        assert manifest["models"][role]["fingerprint"], role
    assert manifest["models"]["detector@owl"]["name"] == "owlv2:tiny"
    breakdowns = json.loads((base / "breakdowns.json").read_text())
    per_kp = breakdowns["kp/AP_per_keypoint"]
    assert per_kp and set(per_kp) <= set(COCO_KEYPOINT_NAMES)
    assert all(0.0 <= v["similarity"] <= 1.0 and 0.0 <= v["pck"] <= 1.0 and v["n"] > 0 for v in per_kp.values())
    # the owl detector was asked for phrases: its detections carry them (person, dog, ...) as labels
    owl_fp = manifest["models"]["detector@owl"]["fingerprint"]
    rows = [r for r in store.RunDir(base).rows(store.DETECTIONS) if r["detector"] == owl_fp]
    layouts = {lay.layout_id: lay for lay in store.RunDir(base).layouts()}
    samples = {s.sample_key: s for s in store.RunDir(base).samples()}
    assert len(rows) == len(samples)
    for r in rows:
        assert {d["label"] for d in r["detections"]} <= set(layouts[samples[r["sample_key"]].layout_id].phrases)


def test_hand_references_perfect_jittered_empty_and_agreement(base, generated, tmp_path, monkeypatch):
    tables = tmp_path / "tables"
    tables.mkdir()
    ids = sorted({lay.layout_id for _, lay in generated})
    hit_layouts = set(ids[:4])  # the mixed detector finds the objects of four layouts, none of the fifth
    def mixed(lay: Layout) -> list[Detection]:
        return perfect(lay) if lay.layout_id in ids[:2] else shrunk(lay) if lay.layout_id in hit_layouts else []

    t = {name: write_table(tables / f"{name}.json", generated, fn)
         for name, fn in (("perfect", perfect), ("shrunk", shrunk), ("empty", lambda lay: []), ("mixed", mixed))}  # fmt: skip
    m = rescore(
        base, tmp_path / "run", monkeypatch, pose=None,
        detector={"kind": FILE, "weights": t["perfect"]},
        extra_detectors=[{"kind": FILE, "weights": t["perfect"], "name": "twin"},
                         {"kind": FILE, "weights": t["shrunk"], "name": "jit"},
                         {"kind": FILE, "weights": t["empty"], "name": "none"},
                         {"kind": FILE, "weights": t["mixed"], "name": "mixed"}],
    )  # fmt: skip
    assert m["box/AP"] == 1.0 and m["box/AP50"] == 1.0 and m["box/AR100"] == 1.0
    assert m["box/mIoU"] == pytest.approx(1.0) and m["box/success"] == 1.0
    assert m["box/AP/lo"] == m["box/AP/hi"] == 1.0
    # identical detectors agree on every instance
    assert m["box@twin/AP"] == 1.0 and m["agreement/twin"] == 1.0
    # IoU 0.72 everywhere: matched at thresholds .50 .55 .60 .65 .70 of ten -> AP 0.5
    assert m["box@jit/AP"] == pytest.approx(0.5, abs=1e-12)
    assert m["box@jit/AP50"] == 1.0 and m["box@jit/AP75"] == 0.0
    assert m["box@jit/mIoU"] == pytest.approx(0.72, abs=1e-9) and m["box@jit/success"] == 1.0
    assert m["agreement/jit"] == 1.0  # IoU 0.72 >= success_iou 0.5: hits, as the perfect detector's
    # nothing detected: AP 0, no crash, every instance a miss
    assert m["box@none/AP"] == 0.0 and m["box@none/mIoU"] == 0.0 and m["box@none/success"] == 0.0
    assert m["agreement/none"] == 0.0
    n_hit = sum(len(lay.objects) for _, lay in generated if lay.layout_id in hit_layouts)
    n_all = sum(len(lay.objects) for _, lay in generated)
    assert m["agreement/mixed"] == pytest.approx(n_hit / n_all)
    assert m["box@mixed/success"] == pytest.approx(n_hit / n_all)
    assert m["n_instances"] == n_all
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["models"]["detector@twin"]["fingerprint"] == manifest["models"]["detector"]["fingerprint"]
    assert {"detector@jit", "detector@none", "detector@mixed"} <= set(manifest["models"])


def test_intervals_pose_real_ceiling_clip_and_fid(base, generated, real_dir, tmp_path, monkeypatch):
    tables = tmp_path / "tables"
    tables.mkdir()
    layouts = load_layouts("sample", limit=5, images_dir=str(real_dir))
    real = [(Path(lay.image_path), lay) for lay in layouts]
    ids = sorted(lay.layout_id for lay in layouts)

    def mixed(lay: Layout) -> list[Detection]:  # perfect, perfect, shrunk, shrunk, nothing
        return perfect(lay) if lay.layout_id in ids[:2] else shrunk(lay) if lay.layout_id != ids[4] else []

    gen_table = json.loads(Path(write_table(tables / "gen.json", generated, mixed)).read_text())
    real_table = json.loads(Path(write_table(tables / "real.json", real, perfect)).read_text())
    boxes = tables / "boxes.json"  # mixed on the generated images, perfect on the real ones
    boxes.write_text(json.dumps({**gen_table, **real_table}))
    pose_table = tables / "pose.json"
    write_table(pose_table, generated + real, poses)
    m = rescore(
        base, tmp_path / "run", monkeypatch,
        layouts={"source": "sample", "limit": 5, "images_dir": str(real_dir)},
        detector={"kind": FILE, "weights": str(boxes)},
        pose={"kind": FILE, "weights": str(pose_table)},
        extra_detectors=[],
        scoring={"bootstrap": 300, "bootstrap_ap": 60, "real_images": True},
        clip={"enabled": True, "model": "tiny", "batch_size": 4},
        fid={"enabled": True, "feature": "tiny", "resize": "center-crop-then-resize-bicubic-64",
             "cache_dir": str(tmp_path / "fid-cache"), "batch_size": 4},
    )  # fmt: skip
    # intervals: layouts differ, so the draws differ, and the interval holds the point estimate
    for key in ("box/AP", "box/mIoU", "box/success", "clip/global", "clip/regional"):
        assert m[f"{key}/lo"] <= m[key] <= m[f"{key}/hi"], key
    assert m["box/AP/lo"] < m["box/AP/hi"] and m["box/mIoU/lo"] < m["box/mIoU/hi"]
    # keypoints: the pose table holds the layout keypoints exactly
    for k in KP_KEYS[:3]:
        assert m[f"kp/{k}"] == 1.0
    assert m["kp/AP/lo"] == m["kp/AP/hi"] == 1.0
    per_kp = json.loads((tmp_path / "run" / "breakdowns.json").read_text())["kp/AP_per_keypoint"]
    assert per_kp["nose"]["n"] > 0 and all(v["similarity"] == pytest.approx(1.0) for v in per_kp.values())
    # real-image ceiling: perfect on the real images
    assert m["box/real/AP"] == 1.0 and m["box/AP_ratio"] == pytest.approx(m["box/AP"])
    assert m["kp/real/AP"] == 1.0 and m["kp/AP_ratio"] == 1.0
    assert 0.0 < m["box/AP"] < 1.0
    # CLIP scores and their per-sample rows
    assert 0.0 <= m["clip/global"] <= 100.0 and 0.0 <= m["clip/regional"] <= 100.0
    assert "clip/image" not in m  # no reference images in these layouts
    rows = store.RunDir(tmp_path / "run").rows("clip.jsonl")
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert len(rows) == len(generated) and {r["scorer"] for r in rows} == {manifest["models"]["clip"]["fingerprint"]}
    assert all(len(r["clip/regional"]) == len(r["phrases"]) for r in rows)
    # FID / KID with the tiny feature net, against the layouts' real images (cached)
    assert m["fid"] >= 0.0 and math.isfinite(m["kid"]) and m["kid/std"] >= 0.0
    fid_counts = json.loads((tmp_path / "run" / "breakdowns.json").read_text())["fid"]
    assert fid_counts["fid/n_real"] == 5 and fid_counts["fid/n_fake"] == len(generated) and "fid/n_real" not in m
    assert len(list((tmp_path / "fid-cache").glob("fid-ref-*.npz"))) == 1
    assert "not Inception" in manifest["models"]["fid"]["name"]
    for role in ("detector", "pose", "clip", "fid"):
        assert manifest["models"][role]["fingerprint"], role
    # real images are cached too, by file content
    rows = store.RunDir(tmp_path / "run").rows(store.DETECTIONS)
    real_keys = {r["sample_key"] for r in rows if r["sample_key"].startswith("real-")}
    assert len(real_keys) == 5


def test_free_phrase_layouts_with_a_phrase_detector_and_image_grounding(base, generated, real_dir, tmp_path):
    """Open-vocabulary scoring of layouts without categories (each phrase is a category), called
    directly on the stage with edited layouts; reference images give ``clip/image``."""
    from gligen_eval.scoring.pipeline import score_run

    out = tmp_path / "run"
    shutil.copytree(base, out)
    rd = store.RunDir(out)
    refs = sorted(real_dir.iterdir())
    free = []
    for lay in rd.layouts():
        objs = tuple(GroundedObject(phrase=o.phrase, box=o.box, reference_image=str(refs[0]) if j == 0 else None)
                     for j, o in enumerate(lay.objects))  # fmt: skip
        free.append(Layout(lay.layout_id, lay.caption, objs, lay.width, lay.height))
    by_id = {lay.layout_id: lay for lay in free}
    table = write_table(tmp_path / "phrases.json", [(p, by_id[lay.layout_id]) for p, lay in generated],
                        lambda lay: perfect(lay, phrases=True))  # fmt: skip
    cfg = config_from_dict(_merged(out=str(out), pose=None, extra_detectors=[], detector={"kind": PHRASE_FILE, "weights": table},
                                   clip={"enabled": True, "model": "tiny"}, scoring={"bootstrap": 0}))  # fmt: skip
    PhraseFileDetector.seen.clear()
    metrics, scorers = score_run(rd, cfg, free, rd.samples(), device="cpu", progress=False)
    assert sorted(map(sorted, PhraseFileDetector.seen)) == sorted(sorted(by_id[s.layout_id].phrases) for s in rd.samples())
    assert metrics["box/AP"] == 1.0 and metrics["box/success"] == 1.0
    assert not any(k.endswith(("/lo", "/hi")) for k in metrics)  # bootstrap: 0
    per_cat = json.loads((out / "breakdowns.json").read_text())["box/AP_per_category"]
    # (a category with one box has precision 1 / (1 + eps) in COCOeval's arithmetic)
    assert "donut" in per_cat and all(v["AP"] == pytest.approx(1.0, abs=1e-15) for v in per_cat.values())
    assert 0.0 <= metrics["clip/image"] <= 100.0
    assert set(scorers) == {"detector", "clip"}


def _lvis_file(path: Path) -> Path:
    cats = [
        {"id": 1, "name": "aerosol_can", "frequency": "r", "synonyms": ["aerosol_can", "spray_can"]},
        {"id": 2, "name": "bat_(animal)", "frequency": "c", "synonyms": ["bat_(animal)"]},
        {"id": 3, "name": "apple", "frequency": "f", "synonyms": ["apple"]},
        {"id": 4, "name": "zebra", "frequency": "f", "synonyms": ["zebra"]},
    ]
    images = [{"id": i, "width": 64, "height": 48, "file_name": f"l{i}.jpg", "neg_category_ids": [4],
               "not_exhaustive_category_ids": []} for i in (1, 2, 3)]  # fmt: skip
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 30], "area": 600},
        {"id": 2, "image_id": 1, "category_id": 3, "bbox": [30, 10, 24, 24], "area": 576},
        {"id": 3, "image_id": 2, "category_id": 2, "bbox": [10, 8, 40, 30], "area": 1200},
        {"id": 4, "image_id": 3, "category_id": 3, "bbox": [2, 2, 30, 30], "area": 900},
        {"id": 5, "image_id": 3, "category_id": 2, "bbox": [34, 10, 28, 30], "area": 840},
    ]
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


def test_lvis_layouts_score_lvis_style_with_phrases(tmp_path, monkeypatch):
    src = _lvis_file(tmp_path / "lvis_tiny_val.json")
    common = {"layouts": {"source": str(src)}, "pose": None, "scoring": {"bootstrap": 100, "bootstrap_ap": 30}}
    owl = {"kind": "owlv2", "weights": "tiny", "conf": 0.0, "name": "owl", "label_mode": "all"}
    first = runner.run(config_from_dict(_merged(out=str(tmp_path / "lvis"), extra_detectors=[owl], **common)), progress=False)
    rd = store.RunDir(first)
    by_id = {lay.layout_id: lay for lay in rd.layouts()}
    assert {o.phrase for lay in by_id.values() for o in lay.objects} == {"aerosol can", "bat (animal)", "apple"}
    m = rd.metrics()
    for k in ("APr", "APc", "APf"):
        assert _in_unit(m[f"box/{k}"])
    assert 0.0 <= m["box@owl/AP"] <= 1.0

    # the same images scored by a phrase detector that finds every object: LVIS AP 1 in every group
    table = write_table(tmp_path / "lvis.json", [(first / s.image, by_id[s.layout_id]) for s in rd.samples()],
                        lambda lay: perfect(lay, phrases=True))  # fmt: skip
    m2 = rescore(first, tmp_path / "lvis2", monkeypatch, detector={"kind": PHRASE_FILE, "weights": table},
                 extra_detectors=[], **common)  # fmt: skip
    for k in ("AP", "AP50", "APr", "APc", "APf"):  # (a one-box category has precision 1 / (1 + eps))
        assert m2[f"box/{k}"] == pytest.approx(1.0, abs=1e-15), k
    assert m2["box/AP/lo"] == pytest.approx(1.0, abs=1e-15) and m2["box/AP/hi"] == pytest.approx(1.0, abs=1e-15)
    assert "box/AR300" in m2 and "box/AR100" not in m2  # LVIS keys


def test_real_images_without_images_dir_is_one_clear_error(base, tmp_path, monkeypatch):
    with pytest.raises(InputError, match=r"layout sample-\d+.*images_dir"):
        rescore(base, tmp_path / "run", monkeypatch, pose=None, extra_detectors=[], scoring={"real_images": True})


SMOKE = Path(__file__).resolve().parents[1] / "benchmarks" / "smoke-scoring.yaml"
SMOKE_SMALL = ["layouts.limit=4", "sampler.steps=2", "sampler.batch_size=2", "detector.batch_size=2",
               "pose.batch_size=2", "clip.batch_size=2"]  # fmt: skip


def test_smoke_scoring_config_gives_every_key(real_dir, tmp_path):
    from gligen_eval.config import load_config

    cfg = load_config(SMOKE, [*SMOKE_SMALL, f"out={tmp_path / 'smoke'}", "fid.enabled=true", f"fid.reference={real_dir}",
                              f"fid.cache_dir={tmp_path / 'cache'}"])  # fmt: skip
    m = store.RunDir(runner.run(cfg, progress=False)).metrics()
    expected = ([f"box/{k}" for k in BOX_KEYS] + [f"kp/{k}" for k in KP_KEYS]
                + [f"box@owlv2-tiny/{k}" for k in ("AP", "AP50", "AP75", "mIoU", "success")]
                + ["agreement/owlv2-tiny", "clip/global", "clip/regional", "fid", "kid", "kid/std"]
                + [f"{k}/{b}" for k in ("box/AP", "box/mIoU", "box/success", "kp/AP", "clip/global", "clip/regional")
                   for b in ("lo", "hi")])  # fmt: skip
    assert [k for k in expected if k not in m] == []
    assert all(isinstance(m[k], float) and math.isfinite(m[k]) for k in expected)


@pytest.mark.slow
def test_two_processes_score_like_one(real_dir, tmp_path):
    """Every scorer under torchrun (gloo, CPU): 2 processes give the metrics of 1, rank files merged."""
    import os
    import subprocess
    import sys

    sets = [*SMOKE_SMALL, "fid.enabled=true", f"fid.reference={real_dir}", f"fid.cache_dir={tmp_path / 'cache'}"]
    args = [a for s in sets for a in ("--set", s)] + ["--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    metrics = []
    for n in (1, 2):
        out = tmp_path / f"w{n}"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "--master_port",
               str(29700 + n + os.getpid() % 200), "-m", "gligen_eval", "run", str(SMOKE), "--out", str(out), *args]  # fmt: skip
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        metrics.append(json.loads((out / "metrics.json").read_text()))
        assert not list(out.glob("*.rank*.jsonl"))
        assert len(store.RunDir(out).rows("clip.jsonl")) == 4
    assert metrics[0] == metrics[1]
    assert "fid" in metrics[0] and "kp/AP" in metrics[0] and "box@owlv2-tiny/AP" in metrics[0]


def test_error_analysis_keys_in_a_run(base, generated, tmp_path, monkeypatch):
    def half_shift(lay: Layout) -> list[Detection]:  # every box moved by half its width: localisation errors
        out = []
        for j, o in enumerate(lay.objects):
            x0, y0, x1, y1 = o.box
            dx = (x1 - x0) / 2 if x1 + (x1 - x0) / 2 <= 1 else -(x1 - x0) / 2
            out.append(Detection((x0 + dx, y0, x1 + dx, y1), o.category or o.phrase, 0.9 - 0.01 * j))
        return out

    table = write_table(tmp_path / "shift.json", generated, half_shift)
    m = rescore(base, tmp_path / "run", monkeypatch, pose=None, extra_detectors=[],
                detector={"kind": FILE, "weights": table},
                scoring={"instance_min_score": 0.0, "bootstrap": 0, "error_analysis": True})  # fmt: skip
    keys = [f"box/tide/{t}" for t in ("cls", "loc", "both", "dupl", "bkg", "miss")] + ["box/AP_iou_auc"]
    assert all(k in m for k in keys)
    assert m["box/AP50"] < 0.5 and m["box/tide/loc"] > 0.5  # the lost AP50 is localisation
    assert m["box/tide/cls"] == m["box/tide/bkg"] == 0.0
    assert 0.0 < m["box/AP_iou_auc"] < 0.5
