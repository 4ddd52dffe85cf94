"""Models are built once per run, and the generator only when there is an image to make."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gligen_eval.cli import main
from gligen_eval.config import config_from_dict

SMALL = ["--set", "layouts.limit=3", "--set", "sampler.steps=2", "--set", "sampler.batch_size=2",
         "--set", "sampler.height=32", "--set", "sampler.width=32", "--set", "clip.enabled=true",
         "--set", "clip.model=tiny", "--no-progress"]  # fmt: skip


def _count_builds(monkeypatch):
    """Counts of generator, detector and CLIP builds; the returned function reads and resets them."""
    from gligen_eval.generation import loading
    from gligen_eval.scoring import clip_pass, detectors

    counts = {"generator": 0, "detector": 0, "clip": 0}

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(loading, "load_components", counted("generator", loading.load_components))
    monkeypatch.setattr(detectors, "build_detector", counted("detector", detectors.build_detector))
    monkeypatch.setattr(clip_pass, "build_clip_scorer", counted("clip", clip_pass.build_clip_scorer))

    def take() -> dict[str, int]:
        out = dict(counts)
        counts.update(dict.fromkeys(counts, 0))
        return out

    return take


@pytest.fixture
def builds(monkeypatch):
    return _count_builds(monkeypatch)


def _images(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir()}


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


FIRST_RUN_BUILDS: dict[str, int] = {}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lazy") / "run"
    with pytest.MonkeyPatch.context() as mp:
        take = _count_builds(mp)
        assert main(["run", "--out", str(out), *SMALL]) == 0
        FIRST_RUN_BUILDS.update(take())
    return out


def test_first_run_builds_every_model_once(finished):
    assert FIRST_RUN_BUILDS == {"generator": 1, "detector": 1, "clip": 1}  # the preflight built none of them


def test_rerun_of_a_finished_run_builds_no_generator(finished, builds):
    before, metrics = _images(finished), json.loads((finished / "metrics.json").read_text())
    manifest = _manifest(finished)
    assert main(["run", "--out", str(finished), *SMALL]) == 0
    assert builds() == {"generator": 0, "detector": 1, "clip": 1}
    assert _images(finished) == before
    assert json.loads((finished / "metrics.json").read_text()) == metrics
    again = _manifest(finished)
    assert again["models"]["generator"] == manifest["models"]["generator"]
    assert again["resolved"] == manifest["resolved"]


def test_rescoring_builds_no_generator(finished, builds):
    before = _images(finished)
    assert main(["run", "--out", str(finished), *SMALL, "--set", "scoring.success_iou=0.2"]) == 0
    assert builds()["generator"] == 0
    assert _images(finished) == before
    assert _manifest(finished)["config"]["scoring"]["success_iou"] == 0.2
    assert main(["run", "--out", str(finished), *SMALL]) == 0  # back to the fixture's settings
    assert builds()["generator"] == 0


def test_a_damaged_image_builds_the_generator_and_is_made_again(finished, builds):
    img = sorted((finished / "images").iterdir())[0]
    good = img.read_bytes()
    img.write_bytes(good[: len(good) // 3])
    assert main(["run", "--out", str(finished), *SMALL]) == 0
    assert builds()["generator"] == 1
    assert img.read_bytes() == good


def test_another_model_regenerates(tmp_path, finished, builds):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(finished, out)
    before = set(_images(out))
    old_fp = _manifest(out)["models"]["generator"]["fingerprint"]
    assert main(["run", "--out", str(out), *SMALL, "--set", "model.tiny_seed=1"]) == 0
    assert builds()["generator"] == 1
    now = set(_images(out))
    assert len(now - before) == 3  # three new images beside the old ones
    assert _manifest(out)["models"]["generator"]["fingerprint"] != old_fp


def test_a_stale_record_is_caught_when_the_model_is_built(tmp_path, finished, builds):
    """A record whose fingerprint the build contradicts: the run starts again from the build, and
    the images keyed by the true fingerprint are reused."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(finished, out)
    manifest = _manifest(out)
    true_fp = manifest["models"]["generator"]["fingerprint"]
    manifest["models"]["generator"]["fingerprint"] = "0" * 16
    (out / "manifest.json").write_text(json.dumps(manifest))
    before = _images(out)
    assert main(["run", "--out", str(out), *SMALL]) == 0
    assert builds()["generator"] == 1
    assert _images(out) == before
    assert _manifest(out)["models"]["generator"]["fingerprint"] == true_fp


def test_the_stamp_follows_the_model_files(tmp_path):
    import os

    from gligen_eval.lazygen import generator_stamp

    adapter = tmp_path / "adapter.safetensors"
    adapter.write_bytes(b"x" * 10)
    cfg = config_from_dict({"name": "s", "model": {"name": "tiny", "adapter": str(adapter)}})
    first = generator_stamp(cfg)
    assert first is not None and generator_stamp(cfg) == first
    st = adapter.stat()
    os.utime(adapter, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert generator_stamp(cfg) != first
    assert generator_stamp(config_from_dict({"name": "s", "model": {"name": "tiny", "tiny_seed": 1}})) != \
        generator_stamp(config_from_dict({"name": "s", "model": {"name": "tiny"}}))  # fmt: skip
    assert generator_stamp(config_from_dict({"name": "s", "model": {"name": "owner/not-cached-anywhere"}})) is None


def test_preflight_checks_weights_without_building(tmp_path, monkeypatch):
    from gligen_eval.errors import MissingWeightsError
    from gligen_eval.scoring import clip_pass, detectors, fid_pass, pipeline

    def no_build(*args, **kwargs):
        raise AssertionError("the preflight built a model")

    monkeypatch.setattr(detectors, "build_detector", no_build)
    monkeypatch.setattr(clip_pass, "build_clip_scorer", no_build)
    monkeypatch.setattr(fid_pass, "build_fid_scorer", no_build)
    base = {"name": "p", "detector": {"kind": "yolo", "weights": "yolov8n.yaml"}}
    pipeline.preflight(config_from_dict({**base, "pose": {"weights": "yolov8n-pose.yaml"},
                                         "clip": {"enabled": True, "model": "tiny"}}), device="cpu")  # fmt: skip
    cases = [
        ({"detector": {"weights": str(tmp_path / "absent.pt")}}, "absent.pt.*downloads are disabled"),
        ({"pose": {"weights": str(tmp_path / "absent-pose.pt")}}, "absent-pose.pt.*downloads are disabled"),
        ({"clip": {"enabled": True, "model": "owner/clip-not-cached"}}, "owner/clip-not-cached.*downloads are disabled"),
        ({"extra_detectors": [{"kind": "owlv2", "weights": str(tmp_path / "no-owl")}]}, "no-owl.*downloads are disabled"),
        ({"fid": {"enabled": True, "reference": str(tmp_path), "inception_weights": str(tmp_path / "inc.pth")}},
         "inc.pth"),
    ]  # fmt: skip
    (tmp_path / "ref.png").write_bytes(b"")  # fid.reference lists it; the weights check comes first
    for extra, match in cases:
        with pytest.raises(MissingWeightsError, match=match):
            pipeline.preflight(config_from_dict({**base, **extra}), device="cpu")
