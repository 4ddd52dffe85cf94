"""FID/KID: the Fréchet math against scipy, the streaming scorer against a direct computation and
torchmetrics, the resize policy, the reference-statistics cache and the missing-weights error."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image

from gligen_eval.errors import ConfigError, InputError, MissingWeightsError
from gligen_eval.scoring.quality import (
    INCEPTION_WEIGHTS_FILE,
    FeatureStats,
    FidKidScorer,
    ResizePolicy,
    custom_extractor,
    default_inception_weights_path,
    frechet_distance,
    image_list_digest,
    inception_extractor,
    iter_image_batches,
)


class TinyFeatures(torch.nn.Module):
    """uint8 (N, 3, S, S) -> (N, 2 * width): mean and std of a seeded strided conv."""

    def __init__(self, width: int = 6, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, width, 4, stride=4)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g) * 0.5)
            self.conv.bias.copy_(torch.randn(self.conv.bias.shape, generator=g) * 0.1)
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(int(x.shape[0]))
        y = torch.tanh(self.conv(x.float() / 127.5 - 1.0))
        return torch.cat([y.mean((2, 3)), y.std((2, 3))], dim=1)


def _write_images(folder, n, *, low, high, seed, size=(32, 32)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        arr = rng.integers(low, high, size=(size[1], size[0], 3), dtype=np.uint8)
        p = folder / f"{i:03d}.png"
        Image.fromarray(arr).save(p)
        paths.append(p)
    return paths


@pytest.fixture()
def image_sets(tmp_path):
    real = _write_images(tmp_path / "real", 20, low=0, high=200, seed=0, size=(40, 32))
    fake = _write_images(tmp_path / "fake", 16, low=60, high=256, seed=1)
    return real, fake


def _direct_features(module, paths, policy):
    arrs = [np.asarray(policy.apply(Image.open(p)), dtype=np.uint8) for p in paths]
    x = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2)
    with torch.no_grad():
        return module(x).double().numpy()


# --------------------------------------------------------------------------------------------
# the math


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frechet_distance_matches_scipy_sqrtm(seed):
    rng = np.random.default_rng(seed)
    d = 24
    a = rng.normal(size=(d, 3 * d))
    b = rng.normal(size=(d, 3 * d)) + 0.3 * a
    s1, s2 = a @ a.T / (3 * d) + 0.05 * np.eye(d), b @ b.T / (3 * d) + 0.05 * np.eye(d)
    m1, m2 = rng.normal(size=d), rng.normal(size=d)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    ref = float((m1 - m2) @ (m1 - m2) + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean).real)
    got = frechet_distance(m1, s1, m2, s2)
    assert abs(got - ref) <= 1e-5 * abs(ref)


def test_frechet_distance_closed_form_and_degenerate_cases():
    # diagonal covariances: ||m1-m2||^2 + sum (sqrt(a) - sqrt(b))^2
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    m1, m2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = 1.0 + 0.0 + 4.0 + float(((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    assert frechet_distance(m1, np.diag(a), m2, np.diag(b)) == pytest.approx(expected, rel=1e-12)
    # rank-deficient covariance (fewer samples than dimensions) of identical sets: 0
    x = np.random.default_rng(0).normal(size=(5, 16))
    mu, sig = x.mean(0), np.cov(x, rowvar=False)
    assert abs(frechet_distance(mu, sig, mu, sig)) < 1e-8 * np.trace(sig)
    with pytest.raises(ValueError, match="shapes"):
        frechet_distance(mu, sig, mu[:3], sig)
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(mu * np.nan, sig, mu, sig)


# --------------------------------------------------------------------------------------------
# resize policy


def test_resize_policy_center_crop_keeps_the_middle_and_resize_keeps_everything():
    arr = np.zeros((32, 96, 3), dtype=np.uint8)
    arr[:, :32] = (255, 0, 0)
    arr[:, 32:64] = (0, 255, 0)
    arr[:, 64:] = (0, 0, 255)
    img = Image.fromarray(arr)
    crop = np.asarray(ResizePolicy("center-crop", 16, "bicubic").apply(img))
    assert crop.shape == (16, 16, 3)
    assert (crop[..., 1] == 255).all() and (crop[..., 0] == 0).all() and (crop[..., 2] == 0).all()
    full = np.asarray(ResizePolicy("resize", 16, "bicubic").apply(img))
    assert full.shape == (16, 16, 3)
    assert full[8, 1, 0] > 200 and full[8, 8, 1] > 200 and full[8, 14, 2] > 200
    # grayscale input becomes RGB
    assert np.asarray(ResizePolicy(size=8).apply(Image.new("L", (10, 10), 7))).shape == (8, 8, 3)


def test_resize_policy_names_round_trip_and_bad_values_are_config_errors():
    p = ResizePolicy()
    assert p.name == "center-crop-then-resize-bicubic-299 (PIL)"
    assert ResizePolicy.parse(p.name) == p
    assert ResizePolicy.parse("resize-lanczos-256") == ResizePolicy("resize", 256, "lanczos")
    with pytest.raises(ConfigError, match="unknown resize policy"):
        ResizePolicy.parse("squash-299")
    with pytest.raises(ConfigError, match="filter"):
        ResizePolicy(filter="cubic")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# the scorer


def test_scorer_matches_direct_computation_and_torchmetrics(image_sets):
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    real, fake = image_sets
    policy = ResizePolicy("center-crop", 32)
    module = TinyFeatures()
    scorer = FidKidScorer(custom_extractor(module), policy, batch_size=7, kid_subsets=20, kid_subset_size=10, kid_seed=3)
    scorer.set_reference(scorer.reference_stats(real))
    assert scorer.update(iter(fake)) == len(fake)
    got = scorer.compute()

    fr, ff = _direct_features(module, real, policy), _direct_features(module, fake, policy)
    expected = frechet_distance(fr.mean(0), np.cov(fr, rowvar=False), ff.mean(0), np.cov(ff, rowvar=False))
    assert got["fid"] == pytest.approx(expected, rel=1e-6)
    assert got["fid"] > 0.01
    assert got["fid/n_real"] == len(real) and got["fid/n_fake"] == len(fake)

    tm = FrechetInceptionDistance(feature=TinyFeatures())
    tm.update(torch.from_numpy(np.stack([np.asarray(policy.apply(Image.open(p))) for p in real])).permute(0, 3, 1, 2), real=True)
    tm.update(torch.from_numpy(np.stack([np.asarray(policy.apply(Image.open(p))) for p in fake])).permute(0, 3, 1, 2), real=False)
    assert got["fid"] == pytest.approx(float(tm.compute()), rel=1e-4)

    with pytest.warns(UserWarning, match="features"):
        tk = KernelInceptionDistance(feature=torch.nn.Identity(), subsets=20, subset_size=10)
    tk.update(torch.from_numpy(fr).float(), real=True)
    tk.update(torch.from_numpy(ff).float(), real=False)
    torch.manual_seed(3)
    kid_mean, kid_std = tk.compute()
    assert got["kid"] == pytest.approx(float(kid_mean), rel=1e-5, abs=1e-9)
    assert got["kid/std"] == pytest.approx(float(kid_std), rel=1e-5, abs=1e-9)
    assert got["kid/subset_size"] == 10


def test_same_images_give_zero_and_kid_is_reproducible(image_sets):
    real, _ = image_sets
    ext = custom_extractor(TinyFeatures())
    scorer = FidKidScorer(ext, ResizePolicy(size=32), kid_subsets=10, kid_subset_size=50)
    scorer.set_reference(scorer.reference_stats(real))
    scorer.update(real)
    a = scorer.compute()
    assert abs(a["fid"]) < 1e-6
    assert a["kid/subset_size"] == len(real)  # lowered to the image count
    assert scorer.compute() == a
    scorer.reset()
    assert scorer.n_generated == 0
    scorer.update(real)
    assert scorer.compute() == a


def test_images_are_read_in_batches_of_at_most_batch_size(image_sets):
    real, fake = image_sets
    module = TinyFeatures()
    consumed = []

    def lazily():
        for p in fake[:12]:
            consumed.append(p)
            yield p

    scorer = FidKidScorer(custom_extractor(module), ResizePolicy(size=32), batch_size=5, kid=False)
    module.batch_sizes.clear()
    scorer.update(lazily())
    assert module.batch_sizes == [5, 5, 2]
    assert len(consumed) == 12
    shapes = [tuple(b.shape) for b in iter_image_batches(fake[:3], ResizePolicy(size=16), batch_size=2)]
    assert shapes == [(2, 3, 16, 16), (1, 3, 16, 16)]
    # PIL images work as well as paths
    pil = [Image.open(p) for p in fake[:4]]
    assert scorer.update(pil) == 4


def test_reference_stats_are_cached_and_keyed(tmp_path, image_sets):
    real, _ = image_sets
    cache = tmp_path / "cache"
    module = TinyFeatures()
    scorer = FidKidScorer(custom_extractor(module), ResizePolicy(size=32), batch_size=8)
    module.batch_sizes.clear()
    first = scorer.reference_stats(real, cache)
    files = list(cache.glob("fid-ref-*.npz"))
    assert len(files) == 1 and module.batch_sizes == [8, 8, 4]
    module.batch_sizes.clear()
    second = scorer.reference_stats(real, cache)
    assert module.batch_sizes == []  # served from disk
    np.testing.assert_array_equal(first.outer_sum, second.outer_sum)
    np.testing.assert_array_equal(first.features, second.features)
    assert second.meta["resize"] == "center-crop-then-resize-bicubic-32 (PIL)"

    # another resize policy, other weights or changed images -> another key
    k0 = scorer.reference_key(real)
    assert FidKidScorer(custom_extractor(module), ResizePolicy("resize", 32)).reference_key(real) != k0
    assert FidKidScorer(custom_extractor(TinyFeatures(seed=1)), ResizePolicy(size=32)).reference_key(real) != k0
    assert scorer.reference_key(real[:-1]) != k0
    Image.fromarray(np.zeros((32, 40, 3), dtype=np.uint8)).save(real[0])
    assert scorer.reference_key(real) != k0
    scorer.reference_stats(real, cache)
    assert len(list(cache.glob("fid-ref-*.npz"))) == 2
    # an unreadable cache file is computed again and replaced
    target = cache / f"fid-ref-{scorer.reference_key(real)}.npz"
    target.write_bytes(b"truncated")
    again = scorer.reference_stats(real, cache)
    assert FeatureStats.load(target).n == again.n == len(real)

    # content keys ignore where the files are
    moved = tmp_path / "moved"
    moved.mkdir()
    copies = []
    for p in real:
        q = moved / p.name
        q.write_bytes(p.read_bytes())
        copies.append(q)
    assert image_list_digest(copies, "content") == image_list_digest(real, "content")
    assert image_list_digest(copies, "stat") != image_list_digest(real, "stat")


def test_reference_mismatch_and_bad_inputs_are_clear(tmp_path, image_sets):
    real, fake = image_sets
    scorer = FidKidScorer(custom_extractor(TinyFeatures()), ResizePolicy(size=32), kid=False)
    stats = scorer.reference_stats(real)
    other = FidKidScorer(custom_extractor(TinyFeatures(seed=5)), ResizePolicy(size=32), kid=False)
    with pytest.raises(InputError, match="extractor"):
        other.set_reference(stats)
    with pytest.raises(InputError, match="KID needs the real features"):
        FidKidScorer(custom_extractor(TinyFeatures()), ResizePolicy(size=32)).set_reference(stats)
    with pytest.raises(InputError, match="no reference statistics"):
        scorer.compute()
    missing = tmp_path / "nope.png"
    with pytest.raises(InputError, match=r"nope\.png \[image 1\]: image file not found"):
        scorer.update([fake[0], missing])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(InputError, match=r"broken\.png \[image 0\]: cannot read image"):
        scorer.reference_stats([broken])
    # saved statistics round-trip through the file format
    stats.save(tmp_path / "s.npz")
    back = FeatureStats.load(tmp_path / "s.npz")
    np.testing.assert_allclose(back.sigma, stats.sigma)
    assert back.features is None and back.n == len(real)
    # a single real image has no covariance: a clear error, not a numpy traceback
    scorer.set_reference(scorer.reference_stats(real[:1]))
    scorer.reset()
    scorer.update(fake[:2])
    with pytest.raises(InputError, match="FID needs at least 2 real images, got 1"):
        scorer.compute()


# --------------------------------------------------------------------------------------------
# the Inception network


def _no_download(*args, **kwargs):
    raise AssertionError("a download was attempted")


def test_missing_inception_weights_name_the_file_and_never_download(tmp_path, monkeypatch):
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.setattr(tfi, "load_state_dict_from_url", _no_download)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _no_download)
    expected = tmp_path / "th" / "hub" / "checkpoints" / INCEPTION_WEIGHTS_FILE
    assert default_inception_weights_path() == expected
    with pytest.raises(MissingWeightsError) as e:
        inception_extractor()
    msg = str(e.value)
    assert str(expected) in msg and "downloads are disabled" in msg
    with pytest.raises(MissingWeightsError, match="elsewhere.pth"):
        inception_extractor(weights_path=tmp_path / "elsewhere.pth")


def test_inception_loads_from_the_local_file(tmp_path, monkeypatch, image_sets):
    """Random Inception weights placed where the real file goes: the file is loaded, no download."""
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    target = default_inception_weights_path()
    target.parent.mkdir(parents=True)
    empty = tmp_path / "empty.pth"
    torch.save({}, empty)
    with monkeypatch.context() as m:
        m.setattr(tfi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, *a, **k: None)
        torch.manual_seed(0)
        random_net = tfi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))
    torch.save(random_net.state_dict(), target)
    monkeypatch.setattr(tfi, "load_state_dict_from_url", _no_download)

    ext = inception_extractor(64)
    assert ext.num_features == 64 and ext.name == "inception-v3-compat/64"
    real, fake = image_sets
    scorer = FidKidScorer(ext, batch_size=2, kid=False)
    scorer.set_reference(scorer.reference_stats(real[:3]))
    scorer.update(fake[:2])
    out = scorer.compute()
    assert np.isfinite(out["fid"]) and out["fid"] >= 0.0
    # the state dict really came from the file: the loaded network equals the saved one
    loaded = ext.module.state_dict()
    saved = torch.load(target)
    assert torch.equal(loaded["Conv2d_1a_3x3.conv.weight"], saved["Conv2d_1a_3x3.conv.weight"])
