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

import hashlib
import json
import os
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Literal, Sequence

import numpy as np

from gligen_eval.errors import ConfigError, InputError, MissingWeightsError
from gligen_eval.hashing import file_sha256, tensors_sha256
from gligen_eval.imageio import pil_open
from gligen_eval.records import stable_hash

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image

INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_WEIGHTS_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_WEIGHTS_FILE
STATS_FORMAT_VERSION = 1

ResizeMode = Literal["center-crop", "resize"]
ResizeFilter = Literal["bicubic", "bilinear", "lanczos", "box", "nearest"]
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
# resize policy

_FILTERS = ("bicubic", "bilinear", "lanczos", "box", "nearest")
_POLICY_RE = re.compile(r"^(center-crop-then-resize|resize)-(bicubic|bilinear|lanczos|box|nearest)-(\d+)(?: \(PIL\))?$")


@dataclass(frozen=True)
class ResizePolicy:
    """How an image becomes the square network input (with PIL, before any tensor is made).

    ``mode="center-crop"``: crop the largest centred square, then resize it to ``size`` x ``size``.
    ``mode="resize"``: resize the whole image to ``size`` x ``size`` (the aspect ratio changes).
    ``filter``: the PIL resampling filter. Images are converted to RGB first.
    """

    mode: ResizeMode = "center-crop"
    size: int = 299
    filter: ResizeFilter = "bicubic"

    def __post_init__(self) -> None:
        if self.mode not in ("center-crop", "resize"):
            raise ConfigError(f"resize mode must be 'center-crop' or 'resize', got {self.mode!r}")
        if self.filter not in _FILTERS:
            raise ConfigError(f"resize filter must be one of {list(_FILTERS)}, got {self.filter!r}")
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 8:
            raise ConfigError(f"resize size must be an integer >= 8, got {self.size!r}")

    @property
    def name(self) -> str:
        """E.g. ``"center-crop-then-resize-bicubic-299 (PIL)"``; :meth:`parse` reads it back."""
        prefix = "center-crop-then-resize" if self.mode == "center-crop" else "resize"
        return f"{prefix}-{self.filter}-{self.size} (PIL)"

    @classmethod
    def parse(cls, text: str) -> "ResizePolicy":
        m = _POLICY_RE.match(text.strip())
        if not m:
            raise ConfigError(
                f"unknown resize policy {text!r}; expected e.g. 'center-crop-then-resize-bicubic-299' "
                "or 'resize-bicubic-299' (filters: " + ", ".join(_FILTERS) + ")"
            )
        mode = "center-crop" if m.group(1) == "center-crop-then-resize" else "resize"
        return cls(mode=mode, size=int(m.group(3)), filter=m.group(2))  # type: ignore[arg-type]

    def apply(self, image: "Image.Image") -> "Image.Image":
        from PIL import Image

        resample = {
            "bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
            "lanczos": Image.Resampling.LANCZOS, "box": Image.Resampling.BOX, "nearest": Image.Resampling.NEAREST,
        }[self.filter]  # fmt: skip
        img = image if image.mode == "RGB" else image.convert("RGB")
        if self.mode == "center-crop":
            w, h = img.size
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            img = img.crop((left, top, left + side, top + side))
        if img.size != (self.size, self.size):
            img = img.resize((self.size, self.size), resample=resample)
        return img


# --------------------------------------------------------------------------------------------
# feature extractors


def module_digest(module: Any) -> str:
    """Hash of a module's class and state (parameters and buffers, names, shapes, dtypes, values)."""
    return tensors_sha256(module.state_dict(), header="{name}|{shape_tuple}|{torch_dtype}",
                          seed=f"{type(module).__module__}.{type(module).__qualname__}", length=16)  # fmt: skip


@dataclass
class FeatureExtractor:
    """A network that maps a uint8 batch ``(N, 3, S, S)`` to float features ``(N, D)``.

    ``fingerprint`` identifies weights and settings; cached statistics are keyed by it.
    """

    module: Any
    name: str
    fingerprint: str
    num_features: int
    device: str = "cpu"

    def __post_init__(self) -> None:
        self.module = self.module.to(self.device).eval()

    def __call__(self, batch: "torch.Tensor") -> "torch.Tensor":
        import torch

        with torch.inference_mode():
            feats = self.module(batch.to(self.device))
        if feats.dim() == 1:
            feats = feats.unsqueeze(0)
        feats = feats.reshape(feats.shape[0], -1)
        if feats.shape != (batch.shape[0], self.num_features):
            raise ValueError(
                f"feature extractor {self.name!r} returned shape {tuple(feats.shape)}, "
                f"expected ({batch.shape[0]}, {self.num_features})"
            )
        return feats.detach().to("cpu", torch.float64)


def default_inception_weights_path() -> Path:
    """``$TORCH_HOME/hub/checkpoints/weights-inception-2015-12-05-6726825d.pth`` (torch hub's cache)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE


def inception_weights_file(weights_path: str | os.PathLike[str] | None = None) -> Path:
    """The Inception weights file (default :func:`default_inception_weights_path`); a
    :class:`MissingWeightsError` saying where to put it when absent."""
    path = Path(weights_path).expanduser() if weights_path is not None else default_inception_weights_path()
    if not path.is_file():
        raise MissingWeightsError(
            f"FID/KID need torch-fidelity's Inception weights {INCEPTION_WEIGHTS_FILE}, not found at {path}; "
            f"downloads are disabled. Fetch {INCEPTION_WEIGHTS_URL} and place it at {path} "
            "(that is $TORCH_HOME/hub/checkpoints/; TORCH_HOME defaults to ~/.cache/torch), "
            "or pass its location as the weights path"
        )
    return path


def inception_extractor(
    feature: Literal[64, 192, 768, 2048] = 2048,
    weights_path: str | os.PathLike[str] | None = None,
    *,
    antialias: bool = True,
    device: str = "cpu",
) -> FeatureExtractor:
    """torch-fidelity's FID Inception v3 (through torchmetrics), loaded from a local file only.

    Args:
        feature: which Inception layer; 2048 (the pool features) is standard FID.
        weights_path: the weights file; default :func:`default_inception_weights_path`.
        antialias: torchmetrics' resize inside Inception (to 299); with the default 299 resize
            policy it has nothing to do.
        device: where the network runs.

    Raises :class:`MissingWeightsError` (and downloads nothing) when the file is absent.
    """
    if feature not in (64, 192, 768, 2048):
        raise ConfigError(f"Inception feature must be one of 64, 192, 768, 2048, got {feature!r}")
    path = inception_weights_file(weights_path)
    from torchmetrics.image.fid import NoTrainInceptionV3

    from gligen_eval.safeload import read_state_dict, torch_load_returns

    state = read_state_dict(path)  # torch-fidelity itself would unpickle the file without weights_only
    with torch_load_returns(path, state) as calls:
        module = NoTrainInceptionV3(
            name="inception-v3-compat", features_list=[str(feature)],
            feature_extractor_weights_path=str(path), antialias=antialias,
        )  # fmt: skip
    if len(calls) != 1:
        raise InputError("torch-fidelity did not take the weights read safely; refusing to use them", path=str(path))
    fp = stable_hash({"net": "torch-fidelity inception-v3-compat", "feature": int(feature),
                      "weights_sha256": file_sha256(path), "antialias": bool(antialias)})  # fmt: skip
    return FeatureExtractor(module, name=f"inception-v3-compat/{feature}", fingerprint=fp,
                            num_features=int(feature), device=device)  # fmt: skip


def custom_extractor(module: Any, *, name: str | None = None, num_features: int | None = None,
                     input_size: int = 32, device: str = "cpu") -> FeatureExtractor:  # fmt: skip
    """Wrap any ``nn.Module`` that maps uint8 ``(N, 3, S, S)`` to ``(N, D)``.

    The fingerprint hashes the module's class and state, so changed weights change cache keys.
    ``num_features`` is found with one probe batch of ``input_size`` pixels when not given.
    """
    import torch

    if num_features is None:
        probe = torch.zeros(1, 3, input_size, input_size, dtype=torch.uint8, device=device)
        with torch.inference_mode():
            num_features = int(module.to(device).eval()(probe).reshape(1, -1).shape[1])
    label = name or type(module).__qualname__
    fp = stable_hash({"net": label, "module": module_digest(module), "num_features": int(num_features)})
    return FeatureExtractor(module, name=label, fingerprint=fp, num_features=int(num_features), device=device)


# --------------------------------------------------------------------------------------------
# reading images in batches

def _load(item: Any, policy: ResizePolicy, index: int) -> "Image.Image":
    from PIL import Image, UnidentifiedImageError

    if isinstance(item, Image.Image):
        return policy.apply(item)
    path = Path(item)
    if not path.is_file():
        raise InputError("image file not found", path=str(path), record=f"image {index}")
    try:
        with pil_open(path) as im:
            im.load()
            return policy.apply(im)
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f"cannot read image ({e})", path=str(path), record=f"image {index}") from None


def iter_image_batches(images: Iterable[Any], policy: ResizePolicy, batch_size: int = 32) -> Iterator["torch.Tensor"]:
    """Yield uint8 tensors ``(B, 3, S, S)`` with ``B <= batch_size``, reading images lazily."""
    import torch

    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    buf: list[np.ndarray] = []
    for i, item in enumerate(images):
        buf.append(np.asarray(_load(item, policy, i), dtype=np.uint8))
        if len(buf) == batch_size:
            yield torch.from_numpy(np.stack(buf)).permute(0, 3, 1, 2).contiguous()
            buf = []
    if buf:
        yield torch.from_numpy(np.stack(buf)).permute(0, 3, 1, 2).contiguous()


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
