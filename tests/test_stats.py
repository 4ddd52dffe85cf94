"""Bootstrap intervals over layouts: coverage, determinism, pooling, pairing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gligen_eval.scoring.stats import (
    bootstrap_ci,
    bootstrap_distribution,
    ci_keys,
    paired_bootstrap_diff,
    point_estimate,
    with_ci,
)


def test_coverage_of_the_mean_on_a_known_distribution():
    # 95% intervals of the mean of N(3, 2^2) samples of size 60 should contain 3 about 95% of the time.
    rng = np.random.default_rng(1)
    trials, hits, widths = 300, 0, []
    for t in range(trials):
        x = rng.normal(3.0, 2.0, size=60)
        lo, hi = bootstrap_ci({f"L{i}": v for i, v in enumerate(x)}, "mean", n_boot=400, seed=t)
        hits += lo <= 3.0 <= hi
        widths.append(hi - lo)
    coverage = hits / trials
    assert 0.89 <= coverage <= 0.985, coverage
    # width ~ 2 * 1.96 * sigma / sqrt(n) = 1.01
    assert 0.85 < float(np.mean(widths)) < 1.12


def test_same_seed_same_interval_and_other_seed_differs():
    values = {f"L{i}": float(v) for i, v in enumerate(np.random.default_rng(0).uniform(size=40))}
    a = bootstrap_ci(values, "mean", n_boot=300, seed=7)
    b = bootstrap_ci(values, "mean", n_boot=300, seed=7)
    c = bootstrap_ci(values, "mean", n_boot=300, seed=8)
    assert a == b
    assert a != c


def test_named_mean_matches_a_callable_with_the_same_draws():
    rng = np.random.default_rng(3)
    values = {f"L{i}": float(v) for i, v in enumerate(rng.normal(size=25))}
    named = bootstrap_distribution(values, "mean", n_boot=200, seed=5)
    called = bootstrap_distribution(values, lambda items: float(np.mean(items)), n_boot=200, seed=5)
    np.testing.assert_allclose(named, called, rtol=0, atol=1e-12)
    assert bootstrap_ci(values, "mean", n_boot=200, seed=5) == pytest.approx(
        bootstrap_ci(values, lambda items: float(np.mean(items)), n_boot=200, seed=5), abs=1e-12
    )


def test_pooled_mean_weights_layouts_by_their_number_of_values():
    values = {"a": [1.0, 1.0, 1.0], "b": [0.0], "c": []}
    assert point_estimate(values, "pooled_mean") == pytest.approx(0.75)
    assert point_estimate({"a": 1.0, "b": 0.0}, "mean") == pytest.approx(0.5)
    dist = bootstrap_distribution(values, "pooled_mean", n_boot=500, seed=0)
    # draws made only of "c" have no numbers -> NaN; every other draw lies in [0, 1]
    finite = dist[~np.isnan(dist)]
    assert finite.min() >= 0.0 and finite.max() <= 1.0
    assert np.isnan(dist).sum() < 50
    # every value reachable: all-"a" draws give 1, all-"b" draws give 0
    callable_dist = bootstrap_distribution(
        values, lambda items: (sum(sum(v) for v in items) / n) if (n := sum(len(v) for v in items)) else math.nan,
        n_boot=500, seed=0,
    )  # fmt: skip
    np.testing.assert_allclose(dist, callable_dist, equal_nan=True)


def test_degenerate_inputs():
    assert all(math.isnan(v) for v in bootstrap_ci({}, "mean"))
    assert bootstrap_ci({"only": 0.25}, "mean", n_boot=50) == (0.25, 0.25)
    with pytest.raises(ValueError, match="layout 'b'"):
        bootstrap_ci({"a": 1.0, "b": [1.0, 2.0]}, "mean")
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci({"a": 1.0, "b": float("nan")}, "mean")
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci({"a": 1.0}, "mean", alpha=1.5)
    with pytest.raises(ValueError, match="stat_fn"):
        bootstrap_ci({"a": 1.0}, "median")


def test_callable_statistic_recomputed_on_the_resampled_set():
    # An AP-like statistic that needs the whole resampled set: fraction of layouts whose
    # detection is a hit, computed from (hit, total) pairs of the drawn layouts.
    per_layout = {f"L{i}": {"hits": i % 2, "objects": 1} for i in range(30)}

    def stat(items):
        return sum(d["hits"] for d in items) / sum(d["objects"] for d in items)

    lo, hi = bootstrap_ci(per_layout, stat, n_boot=500, seed=0)
    assert lo < 0.5 < hi
    assert 0.25 < lo and hi < 0.75


def test_paired_difference_cancels_layout_difficulty():
    rng = np.random.default_rng(0)
    difficulty = rng.normal(0.0, 1.0, size=80)  # large spread shared by both runs
    a = {f"L{i}": float(d) for i, d in enumerate(difficulty)}
    b = {f"L{i}": float(d + 0.1 + rng.normal(0.0, 0.02)) for i, d in enumerate(difficulty)}
    diff, lo, hi = paired_bootstrap_diff(a, b, "mean", n_boot=500, seed=0)
    assert diff == pytest.approx(point_estimate(b) - point_estimate(a))
    assert 0.09 < lo < diff < hi < 0.11
    # unpaired intervals of either run are much wider than the paired difference's
    ua = bootstrap_ci(a, "mean", n_boot=500, seed=0)
    assert (ua[1] - ua[0]) > 10 * (hi - lo)
    # swapping the runs flips the sign
    d2, lo2, hi2 = paired_bootstrap_diff(b, a, "mean", n_boot=500, seed=0)
    assert d2 == pytest.approx(-diff) and lo2 == pytest.approx(-hi) and hi2 == pytest.approx(-lo)


def test_paired_difference_with_no_change_straddles_zero_and_is_deterministic():
    rng = np.random.default_rng(2)
    a = {f"L{i}": [float(v) for v in rng.uniform(size=3)] for i in range(50)}
    b = {k: [v + float(rng.normal(0, 0.05)) for v in vals] for k, vals in a.items()}
    r1 = paired_bootstrap_diff(a, b, "pooled_mean", n_boot=400, seed=3)
    r2 = paired_bootstrap_diff(a, b, "pooled_mean", n_boot=400, seed=3)
    assert r1 == r2
    assert r1[1] < 0.0 < r1[2]


def test_paired_difference_refuses_different_layouts_unless_asked():
    a = {"x": 1.0, "y": 2.0, "z": 3.0}
    b = {"x": 1.0, "y": 2.5, "w": 0.0}
    with pytest.raises(ValueError, match=r"only in the first run \(e.g. z\).*only in the second run \(e.g. w\)"):
        paired_bootstrap_diff(a, b)
    diff, lo, hi = paired_bootstrap_diff(a, b, on_mismatch="intersect", n_boot=200)
    assert diff == pytest.approx(0.25)
    assert lo <= diff <= hi


def test_metric_keys():
    assert ci_keys("box/AP", 0.1, 0.2) == {"box/AP/lo": 0.1, "box/AP/hi": 0.2}
    out = with_ci("clip/global", {"a": 30.0, "b": 32.0, "c": 31.0}, n_boot=200)
    assert set(out) == {"clip/global", "clip/global/lo", "clip/global/hi"}
    assert out["clip/global"] == pytest.approx(31.0)
    assert 30.0 <= out["clip/global/lo"] <= 31.0 <= out["clip/global/hi"] <= 32.0
