"""Distances between two sets of image features: the math of FD, CMMD and PRDC, in float64 NumPy.

Pure functions of ``(N, D)`` feature arrays; nothing here knows about images or networks
(:mod:`gligen_eval.scoring.quality_modern` makes the features). Pairwise quantities are computed
in blocks of ``chunk`` rows, so 30K x 30K images never need a 30K x 30K matrix in memory.

* :func:`feature_frechet_distance` -- the Fréchet distance of the two features' Gaussians
  (FID's formula, :func:`gligen_eval.scoring.quality.frechet_distance`); on DINOv2 features it is
  FD-DINOv2 (Stein et al. 2023).
* :func:`gaussian_mmd2` -- squared MMD with the Gaussian kernel ``exp(-||x - y||^2 / (2 sigma^2))``;
  :func:`cmmd` is it with sigma = 10, times 1000, on CLIP embeddings (Jayasumana et al. 2024).
  The unbiased estimator (the default) leaves the ``i == j`` terms out of the within-set means.
  The authors' reference code keeps them (``unbiased=False``).
* :func:`prdc` -- precision, recall, density and coverage (Naeem et al. 2020) from k-nearest-neighbour
  balls: a real sample's ball has the radius of its k-th nearest other real sample.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

DEFAULT_CHUNK = 1024


def _as_features(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"{name}: expected a non-empty (N, D) feature array, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: features contain NaN or infinity")
    return a


def _pair(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_features(x, "first set"), _as_features(y, "second set")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} and {b.shape[1]}")
    return a, b


def _blocks(n: int, chunk: int) -> Iterator[slice]:
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    for i in range(0, n, chunk):
        yield slice(i, min(i + chunk, n))


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``||a_i - b_j||^2`` for every pair, ``(len(a), len(b))``, clipped at 0 against rounding."""
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d2, 0.0)


# --------------------------------------------------------------------------------------------
# Fréchet distance


def mean_and_covariance(x: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (divides by ``N - 1``, as FID's torchmetrics state does)."""
    a = _as_features(x, "features")
    if a.shape[0] < 2:
        raise ValueError(f"a covariance needs at least 2 feature vectors, got {a.shape[0]}")
    mu = a.mean(0)
    c = a - mu
    return mu, (c.T @ c) / (a.shape[0] - 1)


def feature_frechet_distance(x: Any, y: Any) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (0 for identical sets)."""
    from gligen_eval.scoring.quality import frechet_distance

    a, b = _pair(x, y)
    return frechet_distance(*mean_and_covariance(a), *mean_and_covariance(b))


# --------------------------------------------------------------------------------------------
# MMD


def _kernel_sum(a: np.ndarray, b: np.ndarray, gamma: float, chunk: int, *, skip_diagonal: bool) -> float:
    """Sum of ``exp(-gamma ||a_i - b_j||^2)`` over all pairs (``a is b``: without ``i == j`` when asked)."""
    total = 0.0
    for s in _blocks(a.shape[0], chunk):
        k = np.exp(-gamma * squared_distances(a[s], b))
        if skip_diagonal:
            rows = np.arange(s.stop - s.start)
            k[rows, rows + s.start] = 0.0
        total += float(k.sum())
    return total


def gaussian_mmd2(x: Any, y: Any, sigma: float, *, unbiased: bool = True, chunk: int = DEFAULT_CHUNK) -> float:
    """Squared MMD between two feature sets under the Gaussian kernel of bandwidth ``sigma``.

    Unbiased: ``mean_{i!=j} k(x_i, x_j) + mean_{i!=j} k(y_i, y_j) - 2 mean_{i,j} k(x_i, y_j)``
    (needs 2 vectors per set; can be slightly negative). Biased: the ``i == j`` terms stay in.
    """
    a, b = _pair(x, y)
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    n, m = a.shape[0], b.shape[0]
    if unbiased and (n < 2 or m < 2):
        raise ValueError(f"the unbiased MMD needs at least 2 vectors per set, got {n} and {m}")
    gamma = 1.0 / (2.0 * float(sigma) ** 2)
    kxx = _kernel_sum(a, a, gamma, chunk, skip_diagonal=unbiased)
    kyy = _kernel_sum(b, b, gamma, chunk, skip_diagonal=unbiased)
    kxy = _kernel_sum(a, b, gamma, chunk, skip_diagonal=False)
    pxx, pyy = (n * (n - 1), m * (m - 1)) if unbiased else (n * n, m * m)
    return kxx / pxx + kyy / pyy - 2.0 * kxy / (n * m)


def cmmd(x: Any, y: Any, *, sigma: float = 10.0, scale: float = 1000.0, unbiased: bool = True,
         chunk: int = DEFAULT_CHUNK) -> float:  # fmt: skip
    """CMMD: ``scale * gaussian_mmd2`` with sigma = 10 and scale = 1000 (the paper's settings), meant
    for L2-normalised CLIP image embeddings."""
    return float(scale) * gaussian_mmd2(x, y, sigma, unbiased=unbiased, chunk=chunk)


# --------------------------------------------------------------------------------------------
# precision / recall / density / coverage


def knn_radii(x: Any, k: int, *, chunk: int = DEFAULT_CHUNK) -> np.ndarray:
    """Distance of each vector to its k-th nearest other vector of the same set."""
    a = _as_features(x, "features")
    if not 1 <= k < a.shape[0]:
        raise ValueError(f"k-nearest neighbours need 1 <= k < number of vectors, got k={k} with {a.shape[0]}")
    out = np.empty(a.shape[0])
    for s in _blocks(a.shape[0], chunk):
        d2 = squared_distances(a[s], a)
        rows = np.arange(s.stop - s.start)
        d2[rows, rows + s.start] = -1.0  # itself: always the smallest, then skipped
        out[s] = np.sqrt(np.maximum(np.partition(d2, k, axis=1)[:, k], 0.0))
    return out


def prdc(real: Any, fake: Any, k: int = 5, *, chunk: int = DEFAULT_CHUNK) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` against ``real`` (Naeem et al. 2020).

    With ``B(r_i)`` the ball around real ``r_i`` reaching its k-th nearest real neighbour, and
    ``B(f_j)`` the same among the fakes (strict ``<`` throughout):
    precision = share of fakes inside some real ball; recall = share of reals inside some fake
    ball; density = mean over fakes of the number of real balls holding it, divided by k;
    coverage = share of real balls that hold at least one fake.
    """
    r, f = _pair(real, fake)
    r_radii = knn_radii(r, k, chunk=chunk)
    f_radii = knn_radii(f, k, chunk=chunk)
    in_some_real = np.zeros(f.shape[0], dtype=bool)
    real_balls_per_fake = np.zeros(f.shape[0])
    real_in_some_fake = np.zeros(r.shape[0], dtype=bool)
    nearest_fake = np.full(r.shape[0], np.inf)
    for s in _blocks(f.shape[0], chunk):
        d = np.sqrt(squared_distances(r, f[s]))  # (n_real, block)
        inside = d < r_radii[:, None]
        in_some_real[s] = inside.any(0)
        real_balls_per_fake[s] = inside.sum(0)
        real_in_some_fake |= (d < f_radii[s][None, :]).any(1)
        nearest_fake = np.minimum(nearest_fake, d.min(1))
    return {
        "precision": float(in_some_real.mean()),
        "recall": float(real_in_some_fake.mean()),
        "density": float(real_balls_per_fake.mean() / k),
        "coverage": float((nearest_fake < r_radii).mean()),
    }
