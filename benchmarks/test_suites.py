"""The benchmark suites. See conftest.py for the modes; each test runs (or reuses) one config.

Every suite is a ``gligen``-marked test, so each one runs the candidate of ``--gligen-model``, the
``--gligen-set`` overrides and the ``--gligen-baseline`` gate (tests/test_plugin.py checks that no
suite builds its own config). Each declares the modality it evaluates (``modality(...)``): a
candidate of another modality skips it, saying so.
"""

from __future__ import annotations

import json

import pytest

from suite_modes import MODE, data_path, modality, suite_config, thresholds

BOX_KEYS = ("box/AP", "box/AP50", "box/AP75", "box/mIoU", "box/success")


def _in_unit_interval(metrics, keys):
    for k in keys:
        v = metrics[k]
        assert v == -1.0 or 0.0 <= v <= 1.0, f"{k}={v}"


@pytest.mark.gligen(config=suite_config("smoke-scoring.yaml", "coco2014-text-box.yaml"), name="coco-text-box",
                    set=modality("text-box"), min=thresholds({"box/AP": 0.15, "box/AP50": 0.30}))  # fmt: skip
def test_coco_text_box(gligen_run):
    m = gligen_run.metrics
    _in_unit_interval(m, BOX_KEYS)
    assert m["n_samples"] == m["n_layouts"] * gligen_run.config.sampler.seeds_per_layout
    assert m["box/AP/lo"] <= m["box/AP"] <= m["box/AP/hi"]
    rows = (gligen_run.run_dir / "instances.jsonl").read_text().splitlines()
    assert len(rows) == m["n_instances"] > 0


@pytest.mark.gligen(config=suite_config("smoke-keypoint.yaml", "coco2017-keypoint.yaml"), name="keypoints",
                    min=thresholds({"kp/AP": 0.2}))  # fmt: skip
def test_keypoints(gligen_run):
    m = gligen_run.metrics
    _in_unit_interval(m, ("kp/AP", "kp/AP50", "kp/AR"))
    breakdowns = json.loads((gligen_run.run_dir / "breakdowns.json").read_text())
    assert len(breakdowns["kp/AP_per_keypoint"]) == 17


@pytest.mark.gligen(config=suite_config("smoke-lvis.yaml", "lvis-text-box.yaml"), name="lvis",
                    set=modality("text-box") + ([f"layouts.source={data_path('lvis_sample.json')}"] if MODE == "tiny" else []),
                    min=thresholds({"box/AP": 0.05}))  # fmt: skip
def test_lvis(gligen_run):
    m = gligen_run.metrics
    _in_unit_interval(m, ("box/AP", "box/APr", "box/APc", "box/APf"))
    assert gligen_run.config.detector.kind == "owlv2"


@pytest.mark.gligen(config=suite_config("smoke-tau-sweep.yaml", "coco2014-tau-sweep.yaml"), name="tau-sweep",
                    set=modality("text-box"))  # fmt: skip
def test_tau_sweep(gligen_run):
    """Grounding-vs-quality trade-off: one run per τ over the same layouts and seeds."""
    taus = [p.tau for p in gligen_run.points]
    assert taus == gligen_run.config.sweep.tau
    index = json.loads((gligen_run.run_dir / "sweep.json").read_text())
    assert [p["tau"] for p in index["points"]] == taus
    pairs = [sorted(json.loads(r)["layout_id"] for r in (p.run_dir / "samples.jsonl").read_text().splitlines())
             for p in gligen_run.points]  # fmt: skip
    assert all(p == pairs[0] for p in pairs)
    if MODE == "full":  # grounding on for the whole run places boxes better than grounding off
        ap = {p.tau: p["box/AP"] for p in gligen_run.points}
        assert ap[max(taus)] > ap[min(taus)]


@pytest.mark.gligen(config=suite_config("smoke-text-image-box.yaml", "coco2014-text-image-box.yaml"),
                    name="image-grounding", min=thresholds({"box/AP50": 0.2}))  # fmt: skip
def test_image_grounding(gligen_run):
    m = gligen_run.metrics
    _in_unit_interval(m, BOX_KEYS)
    manifest = json.loads((gligen_run.run_dir / "manifest.json").read_text())
    assert manifest["resolved"]["modality"] == "text-image-box"
    assert manifest["resolved"]["sampler"]["alpha"] == [1.0, 0.0, 0.0]  # the official image default


@pytest.mark.gligen(config=suite_config("smoke-inpaint-text-box.yaml", "coco2014-inpaint-text-box.yaml"),
                    name="inpainting", min=thresholds({"inpaint/outside_psnr": 20.0}))  # fmt: skip
def test_inpainting(gligen_run):
    m = gligen_run.metrics
    _in_unit_interval(m, BOX_KEYS)
    assert m["inpaint/outside_psnr"] > 0
    rows = [json.loads(r) for r in (gligen_run.run_dir / "samples.jsonl").read_text().splitlines()]
    assert all(r["extra"]["modality"] == "inpaint-text-box" and r["extra"]["inpaint"]["boxes"] for r in rows)
    assert all((gligen_run.run_dir / r["extra"]["inpaint"]["input"]).is_file() for r in rows)


@pytest.mark.gligen(config=suite_config("smoke-coco-mig.yaml", "coco-mig.yaml"), name="coco-mig",
                    set=modality("text-box"), min=thresholds({"mig/ISR": 0.1, "mig/mIoU": 0.1}))  # fmt: skip
def test_coco_mig(gligen_run):
    from gligen_eval.scoring.compositional import COMP_KEYS, MIG_KEYS

    m = gligen_run.metrics
    keys = tuple(k for k in COMP_KEYS + MIG_KEYS if k != "comp/texture_acc_clip")  # COCO-MIG names colours only
    assert set(keys) <= set(m)
    _in_unit_interval(m, keys)
    rows = (gligen_run.run_dir / "comp.jsonl").read_text().splitlines()
    assert len(rows) == m["n_samples"]
