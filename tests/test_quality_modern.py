"""FD-DINOv2, CMMD, PRDC and PickScore: the math against direct computations on random features,
the caches, missing weights, and the keys through a real run on tiny models."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gligen_eval.errors import MissingWeightsError
from gligen_eval.scoring import distances

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "benchmarks" / "smoke-quality.yaml"
KEYS = ("fd_dinov2", "cmmd", "prdc/precision", "prdc/recall", "prdc/density", "prdc/coverage", "pref/pickscore")


# --------------------------------------------------------------------------------------------
# Fréchet distance


def test_fd_of_identical_features_is_zero_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8))
    assert abs(distances.feature_frechet_distance(x, x)) < 1e-9
    shifts = [distances.feature_frechet_distance(x, x + s) for s in (0.5, 1.0, 2.0)]
    # a pure shift by s in every one of 8 dimensions moves only the mean term: 8 s^2
    assert shifts == pytest.approx([8 * 0.25, 8 * 1.0, 8 * 4.0], rel=1e-9, abs=1e-9)
    assert shifts[0] < shifts[1] < shifts[2]


def test_fd_matches_scipy_sqrtm():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 6))
    y = rng.normal(size=(250, 6)) @ rng.normal(size=(6, 6)) + 0.3
    m1, s1, m2, s2 = x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False)
    covmean = scipy_linalg.sqrtm(s1 @ s2).real
    expected = float(((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
    assert distances.feature_frechet_distance(x, y) == pytest.approx(expected, rel=1e-8)


# --------------------------------------------------------------------------------------------
# MMD


def _mmd_double_loop(x: np.ndarray, y: np.ndarray, sigma: float, unbiased: bool) -> float:
    def k(a, b):
        return math.exp(-float(((a - b) ** 2).sum()) / (2 * sigma * sigma))

    def within(s):
        n = len(s)
        total = sum(k(s[i], s[j]) for i in range(n) for j in range(n) if not (unbiased and i == j))
        return total / (n * (n - 1) if unbiased else n * n)

    cross = sum(k(a, b) for a in x for b in y) / (len(x) * len(y))
    return within(x) + within(y) - 2 * cross


@pytest.mark.parametrize("unbiased", [True, False])
@pytest.mark.parametrize("chunk", [1, 7, 1024])
def test_mmd_matches_a_double_loop(unbiased, chunk):
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(23, 5)), rng.normal(size=(17, 5)) * 1.5 + 0.4
    expected = _mmd_double_loop(x, y, 2.0, unbiased)
    assert distances.gaussian_mmd2(x, y, 2.0, unbiased=unbiased, chunk=chunk) == pytest.approx(expected, rel=1e-10, abs=1e-13)


def test_cmmd_is_mmd_with_sigma_10_times_1000_and_sees_a_shift():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = rng.normal(size=(30, 16)) + 2.0
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    assert distances.cmmd(x, y) == pytest.approx(1000 * _mmd_double_loop(x, y, 10.0, True), rel=1e-9)
    near = rng.normal(size=(40, 16))
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    assert abs(distances.cmmd(x, near)) < distances.cmmd(x, y)
    assert distances.cmmd(x, x, unbiased=False) == pytest.approx(0.0, abs=1e-9)


# --------------------------------------------------------------------------------------------
# PRDC


def _prdc_brute_force(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    def dist(a, b):
        return float(np.sqrt(((a - b) ** 2).sum()))

    def radii(s):
        return [sorted(dist(s[i], s[j]) for j in range(len(s)) if j != i)[k - 1] for i in range(len(s))]

    rr, fr = radii(real), radii(fake)
    inside = [[dist(r, f) < rr[i] for i, r in enumerate(real)] for f in fake]
    return {
        "precision": sum(any(row) for row in inside) / len(fake),
        "recall": sum(any(dist(r, f) < fr[j] for j, f in enumerate(fake)) for r in real) / len(real),
        "density": sum(sum(row) for row in inside) / (k * len(fake)),
        "coverage": sum(min(dist(r, f) for f in fake) < rr[i] for i, r in enumerate(real)) / len(real),
    }


@pytest.mark.parametrize("k,chunk", [(5, 1024), (3, 4), (1, 1)])
def test_prdc_matches_a_brute_force_knn(k, chunk):
    rng = np.random.default_rng(4)
    real = rng.normal(size=(31, 4))
    fake = rng.normal(size=(26, 4)) * 0.7 + 1.2
    got = distances.prdc(real, fake, k, chunk=chunk)
    want = _prdc_brute_force(real, fake, k)
    assert got == pytest.approx(want, abs=1e-12)
    assert 0 < got["precision"] < 1 and 0 < got["coverage"] < 1  # the case is not degenerate


def test_prdc_of_a_set_against_itself_and_far_away():
    rng = np.random.default_rng(5)
    real = rng.normal(size=(50, 3))
    same = distances.prdc(real, real, 5)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    far = distances.prdc(real, real + 100.0, 5)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    with pytest.raises(ValueError, match="k=5 with 5"):
        distances.prdc(real[:5], real, 5)


# --------------------------------------------------------------------------------------------
# models, caches, weights


def _images(folder: Path, n: int, seed: int, size=(48, 40)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = folder / f"im{i:02d}.png"
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


@pytest.mark.slow
def test_tiny_feature_nets_are_seeded_and_the_reference_is_cached(tmp_path, monkeypatch):
    from gligen_eval.scoring import quality_modern as qm

    paths = _images(tmp_path / "real", 4, 0)
    for build, dim in ((qm.dinov2_features, 32), (qm.clip_image_features, 16)):
        a, b = build("tiny", batch_size=3, device="cpu"), build("tiny", batch_size=3, device="cpu")
        assert a.fingerprint == b.fingerprint != build("tiny", device="cpu", seed=1).fingerprint
        feats = a.features(paths)
        assert feats.shape == (4, dim) and np.isfinite(feats).all()
        np.testing.assert_allclose(feats, b.features(paths), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(feats[2:3], a.features(paths[2:3]), rtol=1e-4, atol=1e-5)  # batch-independent
    clip = qm.clip_image_features("tiny", device="cpu")
    np.testing.assert_allclose(np.linalg.norm(clip.features(paths), axis=1), 1.0, rtol=1e-5)

    net = qm.dinov2_features("tiny", device="cpu")
    first, key = qm.reference_features(net, paths, tmp_path / "cache")
    files = list((tmp_path / "cache").glob("feat-ref-*.npz"))
    assert [f.name for f in files] == [f"feat-ref-{key}.npz"]
    monkeypatch.setattr(qm.ImageFeatures, "features", lambda self, images: pytest.fail("recomputed a cached reference"))
    again, key2 = qm.reference_features(net, paths, tmp_path / "cache")
    assert key2 == key and np.array_equal(first, again)


def test_cache_files_follow_the_umask(tmp_path):
    import os

    from gligen_eval.scoring import quality_modern as qm

    paths = _images(tmp_path / "real", 3, 0)
    old = os.umask(0o027)
    try:
        _, key = qm.reference_features(qm.dinov2_features("tiny", device="cpu"), paths, tmp_path / "cache")
    finally:
        os.umask(old)
    assert (tmp_path / "cache" / f"feat-ref-{key}.npz").stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("build", ["dinov2_features", "clip_image_features", "build_pickscore"])
def test_missing_weights_fail_fast_with_one_line(build, tmp_path, monkeypatch):
    from gligen_eval.scoring import quality_modern as qm

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    name = "someone/not-here-model"
    args = (name, None) if build == "build_pickscore" else (name,)
    from transformers import CLIPModel, Dinov2Model  # noqa: F401  (the import is not the look-up being timed)

    t0 = time.perf_counter()
    with pytest.raises(MissingWeightsError) as e:
        getattr(qm, build)(*args, device="cpu")
    assert time.perf_counter() - t0 < 10
    msg = str(e.value)
    assert "\n" not in msg and name in msg and "hf download" in msg


def test_weights_from_local_folders_load_through_the_real_path(tmp_path):
    """The loading code of real weights (``from_pretrained`` from a folder, no network) on saved tiny models."""
    from gligen_eval.scoring import quality_modern as qm
    from gligen_eval.scoring.clip import tiny_clip

    qm.tiny_dinov2(0).save_pretrained(tmp_path / "dino")
    model, processor = tiny_clip(0)
    model.save_pretrained(tmp_path / "clip")
    processor.image_processor.save_pretrained(tmp_path / "clip")
    processor.save_pretrained(tmp_path / "processor")
    paths = _images(tmp_path / "real", 3, 1)
    for build, folder in ((qm.dinov2_features, "dino"), (qm.clip_image_features, "clip")):
        loaded = build(str(tmp_path / folder), resize="resize-bicubic-32", device="cpu")
        assert folder in loaded.name and loaded.resize.name == "resize-bicubic-32 (PIL)"
        np.testing.assert_allclose(loaded.features(paths), build("tiny", device="cpu").features(paths), rtol=1e-5, atol=1e-6)
    assert qm.dinov2_features(str(tmp_path / "dino"), device="cpu").resize.name == "resize-bicubic-224 (PIL)"
    picked = qm.build_pickscore(str(tmp_path / "clip"), str(tmp_path / "processor"), device="cpu")
    tiny = qm.build_pickscore("tiny", None, device="cpu")
    assert qm.pickscores(picked, paths, ["a", "b", "c"]) == pytest.approx(qm.pickscores(tiny, paths, ["a", "b", "c"]), rel=1e-5)


def test_pickscore_is_logit_scale_times_cosine():
    import torch

    from gligen_eval.scoring import quality_modern as qm

    scorer = qm.build_pickscore("tiny", None, device="cpu")
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(3)]
    prompts = ["a red cat", "two dogs", "a bus"]
    got = qm.pickscores(scorer, images, prompts)
    a, b = scorer.embed_images(images), scorer.embed_texts(prompts)
    want = (scorer.model.logit_scale.exp() * torch.nn.functional.cosine_similarity(a, b)).tolist()
    assert got == pytest.approx(want, rel=1e-5)
    assert got != pytest.approx(qm.pickscores(scorer, images, prompts[::-1]), rel=1e-6)


def test_quality_config_is_off_by_default_and_bad_values_name_their_key():
    from gligen_eval.config import RunConfig, config_from_dict
    from gligen_eval.errors import ConfigError
    from gligen_eval.scoring import quality_modern as qm

    assert not qm.enabled(RunConfig().quality)
    cfg = config_from_dict({"quality": {"prdc": {"enabled": True, "features": "clip"}, "cmmd": {"model": "tiny"}}})
    assert qm.enabled(cfg.quality) and qm.uses_random_weights(cfg.quality)
    for bad, key in ((["quality.prdc.k=0"], "quality.prdc.k"), (["quality.cmmd.sigma=0"], "quality.cmmd.sigma"),
                     (["quality.fd_dinov2.batch_size=0"], "quality.fd_dinov2.batch_size"),
                     (["quality.cmmd.enabled=true", "quality.cmmd.resize=squash-299"], "quality.cmmd.resize"),
                     (["quality.prdc.features=vgg"], "quality.prdc.features"), (["quality.fd=1"], "quality.fd")):  # fmt: skip
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            config_from_dict({}, bad)


def test_too_few_images_for_prdc_fail_before_generation(tmp_path):
    from gligen_eval import runner
    from gligen_eval.config import load_config
    from gligen_eval.errors import InputError

    real = tmp_path / "real"
    _images(real, 7, 9)
    cfg = load_config(SMOKE, [f"out={tmp_path / 'run'}", f"fid.reference={real}", "layouts.limit=5"])
    with pytest.raises(InputError, match=r"quality\.prdc\.k=5.*got 7 and 5"):
        runner.run(cfg, progress=False)
    assert not list((tmp_path / "run").rglob("*.png"))


# --------------------------------------------------------------------------------------------
# through a real run


@pytest.mark.slow
def test_smoke_quality_run_writes_every_key_and_reports_them(tmp_path):
    from gligen_eval import runner, store
    from gligen_eval.config import load_config
    from gligen_eval.reporting import metricinfo as mi

    real = tmp_path / "real"
    _images(real, 7, 9, size=(80, 60))
    sets = [f"out={tmp_path / 'run'}", f"fid.reference={real}", f"quality.cache_dir={tmp_path / 'cache'}",
            "layouts.limit=6"]  # k = 5 needs 6 images a side
    cfg = load_config(SMOKE, sets)
    rd = store.RunDir(runner.run(cfg, progress=False))
    m = rd.metrics()
    assert [k for k in KEYS if k not in m] == []
    assert all(isinstance(m[k], float) and math.isfinite(m[k]) for k in KEYS)
    assert m["fd_dinov2"] > 0 and 0 <= m["prdc/precision"] <= 1 and 0 <= m["prdc/coverage"] <= 1
    manifest = json.loads(rd.path("manifest.json").read_text())
    described = manifest["models"]["quality"]
    assert set(described) == {"fd_dinov2", "cmmd", "prdc", "pickscore"} and all(d["fingerprint"] for d in described.values())
    assert described["prdc"]["fingerprint"] == described["fd_dinov2"]["fingerprint"] and manifest["random_weights"]
    assert len(list((tmp_path / "cache").glob("feat-ref-*.npz"))) == 2  # DINOv2 (shared by FD and PRDC) and CLIP
    assert not mi.higher_is_better("fd_dinov2") and not mi.higher_is_better("cmmd")
    assert all(mi.higher_is_better(k) for k in KEYS[2:])
    assert set(KEYS) <= set(mi.metric_keys(m))

    # re-scoring reads no image again for the feature metrics: the run's feature cache holds them
    import shutil

    from gligen_eval.scoring import quality_modern as qm

    shutil.copytree(rd.root, tmp_path / "baseline")

    rows = rd.rows(qm.PICKSCORE_ROWS)
    assert len(rows) == m["n_samples"] and m["pref/pickscore"] == pytest.approx(np.mean([r["pickscore"] for r in rows]))
    seen = []
    orig, orig_pick = qm.ImageFeatures.features, qm.pickscores
    qm.ImageFeatures.features = lambda self, images: seen.append(len(images)) or orig(self, images)
    qm.pickscores = lambda *a: seen.append("pickscore") or orig_pick(*a)
    try:
        m2 = store.RunDir(runner.run(load_config(SMOKE, [*sets, "quality.cmmd.sigma=5"]), progress=False)).metrics()
    finally:
        qm.ImageFeatures.features, qm.pickscores = orig, orig_pick
    assert seen == [] and len(rd.rows(qm.PICKSCORE_ROWS)) == len(rows)
    assert all(m2[k] == m[k] for k in KEYS if k != "cmmd") and m2["cmmd"] != m["cmmd"]

    # report and compare show every key, with its direction
    from gligen_eval.reporting.compare import compare_runs
    from gligen_eval.reporting.rundata import RunData
    from gligen_eval.reporting.tables import write_leaderboard

    board = json.loads(write_leaderboard([RunData(rd.root)], tmp_path / "report")["leaderboard.json"].read_text())
    assert all(k in json.dumps(board) for k in KEYS)
    md = (tmp_path / "report" / "leaderboard.md").read_text()
    assert all(k in md for k in KEYS)
    res = compare_runs(tmp_path / "baseline", rd.root)
    assert res.exit_code in (0, 1), res.message
    rows = {r.key: r for r in res.rows}
    assert [k for k in KEYS if k not in rows] == []
    assert rows["cmmd"].diff == pytest.approx(m2["cmmd"] - m["cmmd"]) and rows["fd_dinov2"].diff == 0
    assert all(k in res.markdown for k in KEYS)
