"""Feature statistics of an image set, their on-disk cache format, and the Fréchet distance.

:class:`FeatureStats` holds what FID needs of one image set (feature sums and sums of outer
products in float64, optionally the features for KID) and is saved atomically as ``.npz`` without
pickles. :func:`image_list_digest` names an ordered list of image files for cache keys;
:func:`frechet_distance` is the FID formula in float64 NumPy.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from gligen_eval.errors import ConfigError, InputError
from gligen_eval.hashing import file_sha256

STATS_FORMAT_VERSION = 1

KeyMode = Literal["stat", "content"]


# --------------------------------------------------------------------------------------------
# the math


def _drop_noise(eigenvalues: np.ndarray) -> np.ndarray:
    """Eigenvalues within rounding noise of zero (or below it) become exactly zero, so that the
    square roots of a rank-deficient covariance's null space add nothing."""
    top = float(np.abs(eigenvalues).max()) if eigenvalues.size else 0.0
    tol = top * eigenvalues.size * np.finfo(np.float64).eps
    return np.where(eigenvalues > tol, eigenvalues, 0.0)


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """Fréchet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    ``||mu1 - mu2||^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr((sigma1 sigma2)^(1/2))``, in float64.
    The trace of the matrix square root is the sum of the square roots of the eigenvalues of the
    symmetric matrix ``sigma1^(1/2) sigma2 sigma1^(1/2)`` (same spectrum as ``sigma1 sigma2``),
    which stays real and stable for the rank-deficient covariances of small image sets.
    """
    m1 = np.asarray(mu1, dtype=np.float64).reshape(-1)
    m2 = np.asarray(mu2, dtype=np.float64).reshape(-1)
    s1 = np.asarray(sigma1, dtype=np.float64)
    s2 = np.asarray(sigma2, dtype=np.float64)
    d = m1.shape[0]
    if m2.shape[0] != d or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"frechet_distance: shapes do not match: mu1 {m1.shape}, sigma1 {s1.shape}, mu2 {m2.shape}, sigma2 {s2.shape}")
    if not (np.isfinite(m1).all() and np.isfinite(m2).all() and np.isfinite(s1).all() and np.isfinite(s2).all()):
        raise ValueError("frechet_distance: inputs contain NaN or infinity")
    s1 = (s1 + s1.T) / 2.0
    s2 = (s2 + s2.T) / 2.0
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(_drop_noise(w))) @ v.T
    m = root1 @ s2 @ root1
    ev = np.linalg.eigvalsh((m + m.T) / 2.0)
    tr_covmean = float(np.sqrt(_drop_noise(ev)).sum())
    diff = m1 - m2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


# --------------------------------------------------------------------------------------------
# statistics and their cache


@dataclass
class FeatureStats:
    """Accumulated features of one image set.

    ``features_sum`` (D,) and ``outer_sum`` (D, D) are sums over images in float64, the state of
    torchmetrics' FID; ``features`` (N, D, float32) are kept for KID when asked.
    """

    n: int
    features_sum: np.ndarray
    outer_sum: np.ndarray
    features: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def mu(self) -> np.ndarray:
        return self.features_sum / self.n

    @property
    def sigma(self) -> np.ndarray:
        """Unbiased covariance (divides by ``n - 1``), as torchmetrics computes it."""
        if self.n < 2:
            raise ValueError("a covariance needs at least 2 images")
        mu = self.mu
        return (self.outer_sum - self.n * np.outer(mu, mu)) / (self.n - 1)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically (temp file in the same folder, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {
            "n": np.asarray(self.n, dtype=np.int64),
            "features_sum": np.asarray(self.features_sum, dtype=np.float64),
            "outer_sum": np.asarray(self.outer_sum, dtype=np.float64),
            "meta": np.asarray(json.dumps(self.meta, sort_keys=True)),
        }
        if self.features is not None:
            arrays["features"] = np.asarray(self.features, dtype=np.float32)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "FeatureStats":
        try:
            with np.load(path, allow_pickle=False) as z:
                features = np.array(z["features"]) if "features" in z.files else None
                return cls(n=int(z["n"]), features_sum=np.array(z["features_sum"]), outer_sum=np.array(z["outer_sum"]),
                           features=features, meta=json.loads(str(z["meta"])))  # fmt: skip
        except (OSError, KeyError, ValueError) as e:
            raise InputError(f"not a readable feature-statistics file ({e})", path=str(path)) from None


def image_list_digest(images: Sequence[str | os.PathLike[str]], mode: KeyMode = "stat") -> str:
    """Identity of an ordered list of image files.

    ``"stat"``: resolved path, size and modification time of each file (cheap; touching or
    moving files changes it). ``"content"``: SHA-256 of each file's bytes (paths do not count,
    so a copied folder keeps its key).
    """
    if mode not in ("stat", "content"):
        raise ConfigError(f"image key mode must be 'stat' or 'content', got {mode!r}")
    h = hashlib.sha256(f"{mode}\n".encode())
    for i, p in enumerate(images):
        path = Path(p)
        if not path.is_file():
            raise InputError("image file not found", path=str(path), record=f"image {i}")
        if mode == "stat":
            st = path.stat()
            h.update(f"{path.resolve()}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
        else:
            h.update(f"{file_sha256(path)}\n".encode())
    return h.hexdigest()[:32]
