"""Condition-consistency scores: the math on hand-made maps, and the scoring stage of a spatial run.

Every metric is checked at three points: the identical map (the perfect score), a spatially
shifted map (strictly worse) and a constant map (the floor its docstring states).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from gligen_eval import store
from gligen_eval.records import Detection, GroundedObject, Layout, SampleRecord
from gligen_eval.scoring import condition as cm

PERFECT = {
    "cond/canny_f1": 1.0, "cond/canny_precision": 1.0, "cond/canny_recall": 1.0, "cond/hed_ssim": 1.0,
    "cond/depth_rmse": 0.0, "cond/depth_absrel": 0.0, "cond/normal_angle_mean": 0.0,
    "cond/normal_angle_median": 0.0, "cond/normal_within_11.25": 1.0, "cond/sem_miou": 1.0,
}  # fmt: skip


# --------------------------------------------------------------------------------------------
# hand-made maps


def edges(size: int = 48) -> np.ndarray:
    """A 0/255 edge map: two rectangle outlines and a diagonal."""
    m = np.zeros((size, size), np.uint8)
    m[8, 6:30] = m[26, 6:30] = 255
    m[8:27, 6] = m[8:27, 29] = 255
    m[np.arange(30, 46), np.arange(30, 46)] = 255
    return m


def soft_edges(size: int = 48) -> np.ndarray:
    """A soft (HED-like) edge map: blurred rings, values 0-255."""
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    return (255 * np.exp(-((r % 12 - 6) ** 2) / 4.0)).astype(np.uint8)


def depth(size: int = 48) -> np.ndarray:
    """A depth map (near = bright, all > 0): a ramp with a bright box in front, HxWx3."""
    ramp = np.tile(np.linspace(20, 200, size), (size, 1))
    ramp[10:25, 12:30] = 240
    return np.repeat(ramp[..., None], 3, axis=2)


def encode_normals(n: np.ndarray) -> np.ndarray:
    """Unit normals -> float maps in the ``(n * 0.5 + 0.5) * 255`` convention (not rounded)."""
    n = n / np.linalg.norm(n, axis=-1, keepdims=True)
    return (n * 0.5 + 0.5) * 255.0


def tilted(deg: float, shape: tuple[int, int]) -> np.ndarray:
    """Normals tilted by ``deg`` from the camera axis ``(0, 0, 1)`` towards +x."""
    a = math.radians(deg)
    return np.broadcast_to(np.array([math.sin(a), 0.0, math.cos(a)]), (*shape, 3)).copy()


def normals(size: int = 48) -> np.ndarray:
    """A normal map: a hemisphere (every pixel a different direction) on a wall facing the camera."""
    yy, xx = (np.mgrid[:size, :size] + 0.5) / size * 2 - 1
    z = np.sqrt(np.clip(1 - xx**2 - yy**2, 0, None))
    n = np.stack([xx, yy, z], axis=-1)
    n[z == 0] = (0.0, 0.0, 1.0)
    return encode_normals(n)


def labels(size: int = 48) -> np.ndarray:
    """An ADE20K label map: wall (1) above, floor (4) below, a bed (8) and a lamp (37); a strip of 0."""
    m = np.ones((size, size), np.int64)
    m[size // 2:] = 4
    m[20:40, 10:30] = 8
    m[5:12, 35:42] = 37
    m[:, :2] = 0
    return m


MAPS = {"canny": edges, "hed": soft_edges, "depth": depth, "normal": normals, "sem": labels}


def shifted(x: np.ndarray, by: int = 3) -> np.ndarray:
    return np.roll(x, (by, by), axis=(0, 1))


# --------------------------------------------------------------------------------------------
# identical, shifted


@pytest.mark.parametrize("modality", list(MAPS))
def test_identical_map_scores_perfect(modality):
    m = MAPS[modality]()
    got = cm.compare_maps(modality, m, m)
    assert set(got) == {f"cond/{n}" for n in cm.metric_names(modality)}
    for k, v in got.items():
        assert v == pytest.approx(PERFECT[k], abs=1e-9), k


@pytest.mark.parametrize("modality", list(MAPS))
def test_shifted_map_scores_strictly_worse(modality):
    m = MAPS[modality]()
    got = cm.compare_maps(modality, shifted(m), m)
    for k, v in got.items():
        if cm.lower_is_better(k):
            assert v > PERFECT[k] + 1e-3, k
        else:
            assert v < PERFECT[k] - 1e-3, k


def test_more_shift_is_worse_for_edges_and_depth():
    e, d = edges(), depth()
    f1 = [cm.edge_prf(np.roll(e, s, axis=1), e)["canny_f1"] for s in (0, 1, 3)]
    rmse = [cm.depth_rmse(np.roll(d, s, axis=1), d) for s in (0, 1, 3)]
    assert f1[0] > f1[1] > f1[2] and rmse[0] < rmse[1] < rmse[2]


def test_uint8_and_float_maps_agree_and_sizes_must_match():
    d = depth().astype(np.uint8)
    assert cm.depth_rmse(d, shifted(d)) == pytest.approx(cm.depth_rmse(d.astype(float), shifted(d).astype(float)))
    with pytest.raises(ValueError, match="differ in height and width"):
        cm.edge_prf(edges(48), edges(48)[:40])


# --------------------------------------------------------------------------------------------
# the documented floors


def test_canny_floor_blank_and_full_maps():
    t = edges()
    assert cm.edge_prf(np.zeros_like(t), t) == {"canny_f1": 0.0, "canny_precision": 0.0, "canny_recall": 0.0}
    d = np.count_nonzero(t) / t.size
    full = cm.edge_prf(np.full_like(t, 255), t)
    assert full["canny_recall"] == 1.0
    assert full["canny_precision"] == pytest.approx(d, rel=1e-12)
    assert full["canny_f1"] == pytest.approx(2 * d / (1 + d), rel=1e-12)
    # nothing to find and nothing found is perfect; inventing edges on a blank target is not
    blank = np.zeros_like(t)
    assert cm.edge_prf(blank, blank)["canny_f1"] == 1.0
    assert cm.edge_prf(t, blank) == {"canny_f1": 0.0, "canny_precision": 0.0, "canny_recall": 0.0}


def test_hed_floor_constant_map():
    yy, xx = np.mgrid[:48, :48]
    checker = ((yy + xx) % 2 * 255).astype(np.uint8)
    for c in (0, 128, 255):
        v = cm.hed_ssim(np.full_like(checker, c), checker)["hed_ssim"]
        assert -1e-6 <= v < 0.01, c
    const = np.full((48, 48), 90, np.uint8)
    assert cm.hed_ssim(const, const)["hed_ssim"] == pytest.approx(1.0, abs=1e-9)
    # anti-correlated structure goes below 0
    assert cm.hed_ssim(255 - checker, checker)["hed_ssim"] < -0.5


def test_depth_floor_constant_map_and_affine_invariance():
    t = depth()[..., 0]
    tv = t[t > 0]
    for c in (t.mean(), 0.0, 255.0):
        p = np.full_like(t, c)
        assert cm.depth_rmse(p, t) == pytest.approx(math.sqrt(t.std() ** 2 + (t.mean() - c) ** 2), rel=1e-12)
        assert cm.depth_absrel(p, t) == pytest.approx(float(np.mean(np.abs(tv.mean() - tv) / tv)), rel=1e-12)
    assert cm.depth_rmse(np.full_like(t, t.mean()), t) == pytest.approx(t.std(), rel=1e-12)
    # relative depth is known up to scale and shift: AbsRel ignores them, RMSE does not
    affine = 0.4 * t + 30.0
    assert cm.depth_absrel(affine, t) == pytest.approx(0.0, abs=1e-12)
    assert cm.depth_rmse(affine, t) > 10.0
    # pixels with target 0 are not valid for AbsRel; no valid pixel is undefined
    t0 = t.copy()
    t0[:, :5] = 0
    p = t0.copy()
    p[:, :5] = 99.0  # wrong only where the target is invalid
    assert cm.depth_absrel(p, t0) == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(cm.depth_absrel(t, np.zeros_like(t)))


def test_normal_floor_constant_map():
    shape = (8, 10)
    target = np.concatenate([tilted(30, shape), tilted(60, shape)], axis=0)
    got = cm.normal_errors(encode_normals(tilted(0, (16, 10))), encode_normals(target))
    assert got["normal_angle_mean"] == pytest.approx(45.0, abs=1e-9)
    assert got["normal_angle_median"] == pytest.approx(45.0, abs=1e-9)
    assert got["normal_within_11.25"] == 0.0
    # within 11.25 counts the share of pixels below the threshold
    half = np.concatenate([tilted(5, shape), tilted(60, shape)], axis=0)
    assert cm.normal_errors(encode_normals(tilted(0, (16, 10))), encode_normals(half))["normal_within_11.25"] == 0.5


def test_normal_invalid_target_pixels_are_skipped_and_uint8_maps_are_close():
    t = normals()
    p = t.copy()
    t[:4] = 128.0  # "no normal": decodes to a vector of length ~0.007
    p[:4] = (255.0, 0.0, 128.0)  # wrong only where the target has no normal
    assert cm.normal_errors(p, t)["normal_angle_mean"] == pytest.approx(0.0, abs=1e-9)
    assert cm.normal_angles(p, t).size == t[4:].shape[0] * t.shape[1]
    # quantized maps: identical uint8 maps are still exact, a one-level change is under a degree
    q = np.rint(normals()).astype(np.uint8)
    assert cm.normal_errors(q, q)["normal_angle_mean"] == 0.0
    assert cm.normal_errors(np.clip(q.astype(int) + 1, 0, 255), q)["normal_angle_mean"] < 1.0


def test_sem_floor_constant_map_and_present_classes():
    t = labels()
    valid = t != 0
    absent = np.full_like(t, 99)
    assert cm.sem_miou(absent, t)["sem_miou"] == 0.0
    assert cm.sem_miou(np.zeros_like(t), t)["sem_miou"] == 0.0  # all "other": every target class missed
    n_classes = len(np.setdiff1d(np.unique(t), [0]))
    share = np.count_nonzero(t[valid] == 4) / np.count_nonzero(valid)
    assert cm.sem_miou(np.full_like(t, 4), t)["sem_miou"] == pytest.approx(share / n_classes, rel=1e-12)
    # pixels labelled 0 in the target do not count, whatever the prediction says there
    p = t.copy()
    p[:, :2] = 37
    assert cm.sem_miou(p, t)["sem_miou"] == 1.0
    # an invented class is a present class with IoU 0
    p = t.copy()
    p[40:44, 40:44] = 120
    assert cm.sem_miou(p, t)["sem_miou"] < (n_classes + 0.0) / (n_classes + 1) + 1e-12
    assert math.isnan(cm.sem_miou(t, np.zeros_like(t))["sem_miou"])


def test_condition_to_255_inverts_the_model_preprocessing():
    m = normals()
    x = np.moveaxis((m / 255.0 - 0.5) / 0.5, -1, 0).astype(np.float32)
    np.testing.assert_allclose(cm.condition_to_255(x, "normal"), m, atol=1e-4)
    lab = labels()
    np.testing.assert_array_equal(cm.condition_to_255(lab, "sem"), lab)
    with pytest.raises(ValueError, match="canny condition"):
        cm.condition_to_255(np.zeros((8, 8)), "canny")
    with pytest.raises(ValueError, match="no condition map"):
        cm.compare_maps("text-box", edges(), edges())


def test_metric_keys_directions_and_order():
    from gligen_eval.reporting import metricinfo as mi

    keys = [f"cond/{n}" for n in cm.METRIC_NAMES]
    assert keys == list(PERFECT)
    lower = {"cond/depth_rmse", "cond/depth_absrel", "cond/normal_angle_mean", "cond/normal_angle_median"}
    for k in keys:
        for variant in (k, k.replace("cond/", "cond/real/"), k + "/lo"):
            assert mi.higher_is_better(variant) is (k not in lower), variant
    shuffled = ["zz/other", "cond/real/canny_f1", *reversed(keys), "fid", "box/AP"]
    assert mi.order_metrics(shuffled) == ["box/AP", "fid", *keys, "cond/real/canny_f1", "zz/other"]
    assert mi.fmt("cond/normal_angle_mean", 12.3456) == "12.35" and mi.fmt("cond/canny_f1", 0.51234) == "0.512"


# --------------------------------------------------------------------------------------------
# the scoring stage of a spatial run (extractor and condition loader stand-ins)


class NoDetector:
    """Finds nothing: the box keys are not what this file tests."""

    def __init__(self, weights: str = "", device: str = "cpu") -> None:
        self.name = "none"

    def fingerprint(self) -> str:
        return "none"

    def detect(self, images: list) -> list[list[Detection]]:
        return [[] for _ in images]


SIZE = 32


def condition_of(layout: Layout, size: int) -> np.ndarray:
    """A drawn 0/255 edge map per layout: its boxes' outlines."""
    m = np.zeros((size, size), np.uint8)
    for o in layout.objects:
        x0, y0, x1, y1 = (int(round(v * (size - 1))) for v in o.box)
        m[y0, x0:x1 + 1] = m[y1, x0:x1 + 1] = 255
        m[y0:y1 + 1, x0] = m[y0:y1 + 1, x1] = 255
    return m


@pytest.fixture
def spatial_run(tmp_path, monkeypatch):
    """A canny run directory made by hand: layout A's image is its own condition (F1 1), B's is blank
    (F1 0); A has a real image equal to its condition at twice the size."""
    from gligen_eval import conditions

    calls: dict[str, list] = {"extract": [], "load": []}

    def load_condition(layout, modality, *, size, **options):
        calls["load"].append((layout.layout_id, modality, size, options))
        m = condition_of(layout, size).astype(np.float32)
        return np.repeat(((m / 255.0 - 0.5) / 0.5)[None], 3, axis=0)

    def extract_conditions(images, modality, **options):
        calls["extract"].extend((im.size, modality, options) for im in images)
        return [np.where(np.asarray(im.convert("L")) > 127, 255, 0).astype(np.uint8) for im in images]

    monkeypatch.setattr(conditions, "load_condition", load_condition)
    monkeypatch.setattr(conditions, "extract_conditions", extract_conditions, raising=False)

    run = tmp_path / "run"
    (run / "images").mkdir(parents=True)
    real = tmp_path / "real_a.png"
    obj = GroundedObject(phrase="box", box=(0.1, 0.2, 0.7, 0.8), category="box")
    obj_b = GroundedObject(phrase="box", box=(0.3, 0.3, 0.9, 0.6), category="box")
    lays = [Layout("A", "a box", (obj,), image_path=str(real)), Layout("B", "another box", (obj_b,))]
    big = condition_of(lays[0], SIZE)
    Image.fromarray(np.kron(big, np.ones((2, 2), np.uint8))).convert("RGB").save(real)
    samples = []
    for lay, pixels in ((lays[0], condition_of(lays[0], SIZE)), (lays[1], np.zeros((SIZE, SIZE), np.uint8))):
        key = f"k{lay.layout_id}"
        Image.fromarray(pixels).convert("RGB").save(run / "images" / f"{key}.png")
        samples.append(SampleRecord(key, lay.layout_id, 0, f"images/{key}.png", SIZE, SIZE, lay.content_hash(), "s"))
    store.atomic_write_json(run / store.MANIFEST, {"resolved": {"modality": "canny"}})
    store.write_jsonl(run / store.SAMPLES, (s.to_dict() for s in samples))
    store.write_jsonl(run / store.LAYOUTS, (lay.to_dict() for lay in lays))
    return run, lays, samples, calls


def _cfg(out: Path, **scoring: Any):
    from gligen_eval.config import config_from_dict

    return config_from_dict({
        "name": "cond", "out": str(out), "layouts": {"source": "sample"}, "model": {"name": "tiny"},
        "detector": {"kind": f"{__name__}:NoDetector", "weights": "none"},
        "scoring": {"bootstrap": 50, "bootstrap_ap": 0, **scoring},
    })  # fmt: skip


def test_spatial_run_writes_cond_keys_rows_maps_and_the_real_ceiling(spatial_run):
    from gligen_eval.scoring.pipeline import score_run

    run, lays, samples, calls = spatial_run
    rd = store.RunDir(run)
    metrics, scorers = score_run(rd, _cfg(run), lays, samples, device="cpu", progress=False)
    assert metrics["cond/canny_f1"] == pytest.approx(0.5) and metrics["cond/canny_recall"] == pytest.approx(0.5)
    assert metrics["cond/canny_precision"] == pytest.approx(0.5)  # the blank image has precision 0 (no edges found)
    lo, hi = metrics["cond/canny_f1/lo"], metrics["cond/canny_f1/hi"]
    assert 0.0 <= lo < 0.5 < hi <= 1.0
    assert metrics["cond/real/canny_f1"] == pytest.approx(1.0)  # only layout A has a real image
    assert not any(k.startswith("cond/") and "hed" in k for k in metrics)
    assert json.loads((run / store.METRICS).read_text())["cond/canny_f1"] == pytest.approx(0.5)
    assert scorers["condition"]["modality"] == "canny" and scorers["condition"]["fingerprint"]
    # the condition was asked for at the generated size; the real image was resized to it
    assert {c[2] for c in calls["load"]} == {SIZE} and {c[0] for c in calls["extract"]} == {(SIZE, SIZE)}
    rows = rd.rows("cond.jsonl")
    assert sorted((r["layout_id"], r["real"]) for r in rows) == [("A", False), ("A", True), ("B", False)]
    by_layout = {r["layout_id"]: r for r in rows if not r["real"]}
    assert by_layout["A"]["cond/canny_f1"] == 1.0 and by_layout["B"]["cond/canny_f1"] == 0.0
    with Image.open(run / by_layout["A"]["extracted"]) as im:
        np.testing.assert_array_equal(np.asarray(im), condition_of(lays[0], SIZE))

    # scoring again reuses every row: nothing is extracted again
    n = len(calls["extract"])
    again, _ = score_run(rd, _cfg(run), lays, samples, device="cpu", progress=False)
    assert len(calls["extract"]) == n and again["cond/canny_f1"] == metrics["cond/canny_f1"]
    assert len(rd.rows("cond.jsonl")) == 3


def test_non_spatial_run_has_no_cond_keys(spatial_run):
    from gligen_eval.scoring.pipeline import score_run

    run, lays, samples, calls = spatial_run
    store.atomic_write_json(run / store.MANIFEST, {"resolved": {"modality": "text-box"}})
    metrics, scorers = score_run(store.RunDir(run), _cfg(run, bootstrap=0), lays, samples, device="cpu", progress=False)
    assert not any(k.startswith("cond/") for k in metrics) and "condition" not in scorers
    assert not calls["extract"] and not (run / "cond.jsonl").exists()


def test_compare_bootstraps_cond_keys_over_layouts_from_the_rows(spatial_run, tmp_path):
    """Paired compare of two spatial runs: ``cond/`` keys get a paired interval from ``cond.jsonl``,
    the gate knows them, the real-image ceiling is a point value."""
    import shutil

    from gligen_eval.reporting.compare import compare_runs, parse_gate
    from gligen_eval.scoring.pipeline import score_run

    run, lays, samples, calls = spatial_run
    cand = tmp_path / "cand"
    shutil.copytree(run, cand)
    Image.fromarray(condition_of(lays[1], SIZE)).convert("RGB").save(cand / samples[1].image)  # B perfect too
    for root in (run, cand):
        rd = store.RunDir(root)
        _, scorers = score_run(rd, _cfg(root), lays, samples, device="cpu", progress=False)
        store.atomic_write_json(root / store.MANIFEST, {"resolved": {"modality": "canny"}, "models": scorers})
    gate = parse_gate({"metrics": {"cond/canny_f1": {"max_drop": 0.01}, "cond/canny_recall": {"min": 0.9}}})
    res = compare_runs(cand, run, gate)  # the baseline is the better run
    f1 = res.row("cond/canny_f1")
    assert (f1.baseline, f1.candidate, f1.diff) == pytest.approx((1.0, 0.5, -0.5))
    assert "cond.jsonl" in f1.method and f1.lo <= f1.diff <= f1.hi <= 0.0
    assert res.row("cond/canny_recall").verdict == "regression" and res.exit_code == 1
    real = res.row("cond/real/canny_f1")
    assert real.method.startswith("point values") and real.diff == pytest.approx(0.0)


def test_preflight_builds_the_extractor_of_a_spatial_model(tmp_path, monkeypatch):
    """Missing extractor weights fail in preflight, before anything is generated."""
    from gligen_eval import conditions
    from gligen_eval.config import config_from_dict
    from gligen_eval.errors import MissingWeightsError
    from gligen_eval.scoring.pipeline import preflight

    seen = []

    def extract_conditions(images, modality, **options):
        seen.append(modality)
        raise MissingWeightsError(f"no {modality} extractor weights: fetch them")

    monkeypatch.setattr(conditions, "extract_conditions", extract_conditions, raising=False)
    det = {"kind": f"{__name__}:NoDetector", "weights": "none"}
    cfg = config_from_dict({"name": "p", "out": str(tmp_path), "model": {"name": "tiny", "modality": "depth"},
                            "detector": det})  # fmt: skip
    with pytest.raises(MissingWeightsError, match="no depth extractor"):
        preflight(cfg, device="cpu")
    preflight(config_from_dict({"name": "p", "out": str(tmp_path), "detector": det}), device="cpu")  # not spatial
    assert seen == ["depth"]


def test_an_unreadable_real_image_is_one_line_naming_it(spatial_run):
    from gligen_eval.errors import InputError
    from gligen_eval.scoring.pipeline import score_run

    run, lays, samples, calls = spatial_run
    Path(lays[0].image_path).write_bytes(b"not a png")
    with pytest.raises(InputError, match="cannot read real image") as e:
        score_run(store.RunDir(run), _cfg(run), lays, samples, device="cpu", progress=False)
    assert lays[0].image_path in str(e.value) and "layout A" in str(e.value)
