"""Image quality: FID and KID between generated images and real images.

How a number is made, step by step:

1. **Images are read one batch at a time** from an iterable of paths (or PIL images) and never
   held all at once.
2. **Each image is resized by an explicit** :class:`ResizePolicy` with PIL before any network sees
   it. Resizing alone moves FID by several points (clean-fid), so the policy is part of every
   cache key and belongs in every report. The default, ``center-crop-then-resize-bicubic-299
   (PIL)``, takes the largest centred square of the image and resizes it with PIL's bicubic
   filter to 299x299 (Inception's input size, so Inception's own internal resize does nothing).
   ``resize-bicubic-299 (PIL)`` resizes the whole image, changing its aspect ratio.
3. **Features** come from a :class:`FeatureExtractor`: torch-fidelity's FID Inception v3 (through
   torchmetrics, ``feature=2048``, the standard FID features) built by :func:`inception_extractor`
   from a local weights file, or any ``nn.Module`` that maps a uint8 batch ``(N, 3, H, W)`` to
   ``(N, D)`` features (:func:`custom_extractor`, used by the offline tests).
4. **Statistics accumulate in torchmetrics** ``FrechetInceptionDistance`` (feature sums and sums of
   outer products, in float64) and ``KernelInceptionDistance`` (the features themselves).
5. **FID** is :func:`frechet_distance` of the two Gaussians, computed in float64 NumPy through a
   symmetric eigendecomposition. **KID** is torchmetrics' polynomial-kernel MMD over random
   subsets, with the subsets drawn from a seeded generator so that it is reproducible.

Statistics of the real images are computed once and cached on disk
(:meth:`FidKidScorer.reference_stats`), keyed by the image list (resolved paths with sizes and
modification times, or file contents), the resize policy and the feature extractor's
fingerprint (weights hash and settings).

The Inception weights are never downloaded: without the file
``$TORCH_HOME/hub/checkpoints/weights-inception-2015-12-05-6726825d.pth`` a
:class:`~gligen_eval.errors.MissingWeightsError` names that file and where to put it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from gligen_eval.errors import ConfigError, InputError
from gligen_eval.records import stable_hash
from gligen_eval.scoring.features import (
    INCEPTION_WEIGHTS_FILE,
    INCEPTION_WEIGHTS_URL,
    FeatureExtractor,
    ResizeFilter,
    ResizeMode,
    ResizePolicy,
    custom_extractor,
    default_inception_weights_path,
    inception_extractor,
    inception_weights_file,
    iter_image_batches,
    module_digest,
)
from gligen_eval.scoring.featstats import STATS_FORMAT_VERSION, FeatureStats, KeyMode, frechet_distance, image_list_digest

__all__ = [
    "INCEPTION_WEIGHTS_FILE",
    "INCEPTION_WEIGHTS_URL",
    "STATS_FORMAT_VERSION",
    "FeatureExtractor",
    "FeatureStats",
    "FidKidScorer",
    "KeyMode",
    "ResizeFilter",
    "ResizeMode",
    "ResizePolicy",
    "custom_extractor",
    "default_inception_weights_path",
    "frechet_distance",
    "image_list_digest",
    "inception_extractor",
    "inception_weights_file",
    "iter_image_batches",
    "module_digest",
]


# --------------------------------------------------------------------------------------------
# the scorer


def _passthrough(num_features: int) -> Any:
    """The feature network handed to the torchmetrics objects: features are computed once per
    batch by the :class:`FeatureExtractor` and given to both FID and KID, which pass them on."""
    import torch

    module = torch.nn.Identity()
    module.num_features = int(num_features)
    return module


class FidKidScorer:
    """Streaming FID/KID of generated images against cached real-image statistics.

    Usage::

        scorer = FidKidScorer(inception_extractor())
        scorer.set_reference(scorer.reference_stats(real_paths, cache_dir="~/.cache/gligen-eval/fid"))
        scorer.update(generated_paths)        # any iterable; read batch by batch
        scorer.compute()                      # {"fid": ..., "kid": ..., "kid/std": ..., ...}

    One process accumulates everything (in a distributed run, the process that scores).

    Args:
        extractor: the feature network (:func:`inception_extractor` or :func:`custom_extractor`).
        resize: the :class:`ResizePolicy` (or its name) applied to real and generated images alike.
        batch_size: images per forward pass; at most this many decoded images are held at once.
        kid: also compute KID (keeps the features of every image, N x D float32).
        kid_subsets, kid_subset_size, kid_degree, kid_gamma, kid_coef: torchmetrics KID settings;
            the subset size is lowered to the smaller image count when needed.
        kid_seed: seed of KID's random subsets.
    """

    def __init__(
        self,
        extractor: FeatureExtractor,
        resize: ResizePolicy | str = ResizePolicy(),
        *,
        batch_size: int = 32,
        kid: bool = True,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        kid_degree: int = 3,
        kid_gamma: float | None = None,
        kid_coef: float = 1.0,
        kid_seed: int = 0,
    ) -> None:
        self.extractor = extractor
        self.resize = ResizePolicy.parse(resize) if isinstance(resize, str) else resize
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if kid_subsets < 1 or kid_subset_size < 2:
            raise ConfigError(f"kid_subsets must be >= 1 and kid_subset_size >= 2 (got {kid_subsets}, {kid_subset_size})")
        self.batch_size = int(batch_size)
        self.kid = bool(kid)
        self.kid_subsets, self.kid_subset_size = int(kid_subsets), int(kid_subset_size)
        self.kid_degree, self.kid_gamma, self.kid_coef = int(kid_degree), kid_gamma, float(kid_coef)
        self.kid_seed = int(kid_seed)
        self._reference: FeatureStats | None = None
        self._fid, self._kid = self._new_metrics()

    # -- torchmetrics state ----------------------------------------------------------------

    def _new_metrics(self) -> tuple[Any, Any]:
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance

        d = self.extractor.num_features
        # One process accumulates everything: no all-gather at compute() under torch.distributed
        # (the other ranks are not computing, so a sync would hang or fail).
        fid = FrechetInceptionDistance(feature=_passthrough(d), reset_real_features=False, sync_on_compute=False)
        kid = None
        if self.kid:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "will save all extracted features in buffer"
                kid = KernelInceptionDistance(
                    feature=_passthrough(d), subsets=self.kid_subsets, subset_size=self.kid_subset_size,
                    degree=self.kid_degree, gamma=self.kid_gamma, coef=self.kid_coef, reset_real_features=False,
                    sync_on_compute=False,
                )  # fmt: skip
        return fid, kid

    def _accumulate(self, images: Iterable[Any], real: bool, fid: Any, kid: Any) -> int:
        n = 0
        for batch in iter_image_batches(images, self.resize, self.batch_size):
            feats = self.extractor(batch)
            fid.update(feats, real=real)
            if kid is not None:
                kid.update(feats.float(), real=real)
            n += int(batch.shape[0])
        return n

    # -- reference statistics ----------------------------------------------------------------

    def reference_key(self, images: Sequence[str | os.PathLike[str]], key_mode: KeyMode = "stat") -> str:
        """Cache key of the statistics of ``images`` under this resize policy and extractor."""
        return stable_hash({"images": image_list_digest(images, key_mode), "resize": self.resize.name,
                            "extractor": self.extractor.fingerprint, "format": STATS_FORMAT_VERSION}, length=24)  # fmt: skip

    def compute_stats(self, images: Iterable[Any], *, keep_features: bool | None = None) -> FeatureStats:
        """Statistics of an image set (paths or PIL images), read batch by batch."""
        keep = self.kid if keep_features is None else bool(keep_features)
        fid, kid = self._new_metrics()
        if not keep:
            kid = None
        n = self._accumulate(images, True, fid, kid)
        if n == 0:
            raise InputError("no images to compute statistics from")
        feats = None
        if kid is not None:
            import torch

            feats = torch.cat(list(kid.real_features), dim=0).numpy().astype(np.float32)
        return FeatureStats(
            n=int(fid.real_features_num_samples), features_sum=fid.real_features_sum.numpy().copy(),
            outer_sum=fid.real_features_cov_sum.numpy().copy(), features=feats,
            meta={"resize": self.resize.name, "extractor": self.extractor.name,
                  "extractor_fingerprint": self.extractor.fingerprint, "n": n},
        )  # fmt: skip

    def reference_stats(
        self,
        images: Sequence[str | os.PathLike[str]],
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        key_mode: KeyMode = "stat",
    ) -> FeatureStats:
        """Statistics of the real images, from ``cache_dir`` when present, else computed and cached.

        The file is ``<cache_dir>/fid-ref-<key>.npz``; the key covers the image list, the resize
        policy and the extractor fingerprint. A cached file without features is recomputed when
        KID needs them.
        """
        paths = [Path(p) for p in images]
        if not paths:
            raise InputError("the list of real images is empty")
        key = self.reference_key(paths, key_mode)
        cache = Path(cache_dir).expanduser() / f"fid-ref-{key}.npz" if cache_dir is not None else None
        if cache is not None and cache.is_file():
            try:
                stats = FeatureStats.load(cache)
            except InputError:
                stats = None  # unreadable: computed again and overwritten below
            if stats is not None and stats.meta.get("key") == key and (stats.features is not None or not self.kid):
                return stats
        stats = self.compute_stats(paths)
        stats.meta.update({"key": key, "key_mode": key_mode, "n_images": len(paths)})
        if cache is not None:
            stats.save(cache)
        return stats

    def set_reference(self, stats: FeatureStats) -> None:
        """Use ``stats`` as the real side of FID (and of KID, which needs its features)."""
        import torch

        d = self.extractor.num_features
        if stats.features_sum.shape != (d,):
            raise InputError(f"reference statistics have {stats.features_sum.shape[0]} features, the extractor gives {d}")
        fp = stats.meta.get("extractor_fingerprint")
        if fp is not None and fp != self.extractor.fingerprint:
            raise InputError(f"reference statistics were made with extractor {fp}, not {self.extractor.fingerprint}")
        if stats.meta.get("resize") not in (None, self.resize.name):
            raise InputError(f"reference statistics were made with resize policy {stats.meta['resize']!r}, not {self.resize.name!r}")
        if self.kid and stats.features is None:
            raise InputError("KID needs the real features; these reference statistics were saved without them")
        self._fid.real_features_sum = torch.from_numpy(np.asarray(stats.features_sum, dtype=np.float64)).clone()
        self._fid.real_features_cov_sum = torch.from_numpy(np.asarray(stats.outer_sum, dtype=np.float64)).clone()
        self._fid.real_features_num_samples = torch.tensor(int(stats.n), dtype=torch.long)
        if self._kid is not None:
            self._kid.real_features = [torch.from_numpy(np.asarray(stats.features, dtype=np.float32)).clone()]
        self._reference = stats

    # -- generated images ----------------------------------------------------------------

    def update(self, images: Iterable[Any]) -> int:
        """Add generated images (paths or PIL images), read batch by batch. Returns how many."""
        return self._accumulate(images, False, self._fid, self._kid)

    def reset(self) -> None:
        """Forget the generated images (the reference stays)."""
        self._fid.reset()
        if self._kid is not None:
            self._kid.reset()

    @property
    def n_generated(self) -> int:
        return int(self._fid.fake_features_num_samples)

    def generated_stats(self) -> FeatureStats:
        n = self.n_generated
        return FeatureStats(n=n, features_sum=self._fid.fake_features_sum.numpy().copy(),
                            outer_sum=self._fid.fake_features_cov_sum.numpy().copy())  # fmt: skip

    def compute(self) -> dict[str, float]:
        """``{"fid", "fid/n_real", "fid/n_fake"}`` plus ``{"kid", "kid/std", "kid/subset_size"}`` with KID.

        ``kid`` is the mean polynomial-kernel MMD² over subsets (raw, not scaled by 1000).
        """
        import torch

        if self._reference is None:
            raise InputError("no reference statistics: call set_reference(reference_stats(real_images)) first")
        n_fake = self.n_generated
        if n_fake < 2:
            raise InputError(f"FID needs at least 2 generated images, got {n_fake}")
        ref, gen = self._reference, self.generated_stats()
        if ref.n < 2:
            raise InputError(f"FID needs at least 2 real images, got {ref.n}")
        out = {"fid": frechet_distance(ref.mu, ref.sigma, gen.mu, gen.sigma),
               "fid/n_real": float(ref.n), "fid/n_fake": float(n_fake)}  # fmt: skip
        if self._kid is not None:
            subset = min(self.kid_subset_size, ref.n, n_fake)
            self._kid.subset_size = subset
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.kid_seed)
                mean, std = self._kid.compute()
            out.update({"kid": float(mean), "kid/std": float(std), "kid/subset_size": float(subset)})
        return out

    def fingerprint(self) -> str:
        """Identity of everything that shapes the numbers (extractor, resize, KID settings)."""
        return stable_hash({"extractor": self.extractor.fingerprint, "resize": self.resize.name, "kid": self.kid,
                            "kid_settings": [self.kid_subsets, self.kid_subset_size, self.kid_degree,
                                             self.kid_gamma, self.kid_coef, self.kid_seed]})  # fmt: skip
