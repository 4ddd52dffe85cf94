"""Image quality beyond FID: FD-DINOv2, CMMD, precision/recall/density/coverage and PickScore.

Keys (all written by :func:`score_quality`, each only when its section of ``quality`` is enabled):

* ``fd_dinov2`` -- Fréchet distance on DINOv2 CLS features (Stein et al. 2023 recommend ViT-L/14,
  ``facebook/dinov2-large``; images resized whole to 224 with PIL bicubic, ImageNet normalisation,
  as their dgm-eval does). Lower is better.
* ``cmmd`` -- Gaussian-kernel MMD (sigma = 10, unbiased, x 1000) on L2-normalised CLIP image
  embeddings (Jayasumana et al. 2024: CLIP ViT-L/14 at 336 px, ``openai/clip-vit-large-patch14-336``;
  images resized whole to the processor's size with PIL bicubic). Lower is better.
* ``prdc/precision``, ``prdc/recall``, ``prdc/density``, ``prdc/coverage`` -- Naeem et al. 2020 with
  k = 5 on the DINOv2 (default) or CLIP features. Higher is better.
* ``pref/pickscore`` -- PickScore (Kirstain et al. 2023) as a human-preference proxy: a CLIP model
  fine-tuned on human choices, scored like CLIPScore (``logit_scale.exp() * cos`` of the image and
  its layout's caption), averaged over images. Weights ``yuvalkirstain/PickScore_v1`` with the
  processor of ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``. Higher is better.

The real side is FID's: ``fid.reference`` or the layouts' real images. Reference features are
cached under ``quality.cache_dir`` (default FID's cache folder) as ``feat-ref-<key>.npz``, the key
covering the image list (paths, sizes, modification times, as FID's), the resize policy and the
network's fingerprint; features of the generated images are kept in ``RUN/features/<fingerprint>.npz``
by sample key, and PickScore rows in ``RUN/pickscore.jsonl`` (one per image), so re-scoring computes
only new images. The math lives in
:mod:`gligen_eval.scoring.distances`.

Weights load from a local folder or the local Hugging Face cache only (a
:class:`~gligen_eval.errors.MissingWeightsError` names what to fetch); ``tiny`` builds a small random
model in code for tests and offline smoke runs (its numbers mean nothing about a generator).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from gligen_eval import store
from gligen_eval.devices import resolve_device
from gligen_eval.errors import InputError
from gligen_eval.records import Layout, SampleRecord, stable_hash

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from gligen_eval.config import QualityConfig, RunConfig

QUALITY_KEYS = ("fd_dinov2", "cmmd", "prdc/precision", "prdc/recall", "prdc/density", "prdc/coverage", "pref/pickscore")
FEATURES_FORMAT_VERSION = 1
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------------------------
# feature networks


@dataclass
class ImageFeatures:
    """A network that maps images to ``(N, D)`` features, with the resize policy applied before it.

    ``embed`` takes a uint8 batch ``(B, 3, S, S)`` (already resized) and returns float features;
    ``fingerprint`` covers the weights, the resize policy and the preprocessing.
    """

    name: str
    fingerprint: str
    resize: Any  # ResizePolicy
    embed: Callable[["torch.Tensor"], "torch.Tensor"]
    batch_size: int = 32

    def features(self, images: Sequence[Any]) -> np.ndarray:
        """Features of images (paths or PIL images), read ``batch_size`` at a time; float64 ``(N, D)``."""
        import torch

        from gligen_eval.scoring.quality import iter_image_batches

        out = []
        for batch in iter_image_batches(images, self.resize, self.batch_size):
            with torch.inference_mode():
                out.append(self.embed(batch).detach().to("cpu", torch.float64).numpy())
        if not out:
            raise InputError("no images to compute features from")
        return np.concatenate(out)


def _normalizer(mean: Sequence[float], std: Sequence[float], device: str, dtype: Any) -> Callable:
    import torch

    m = torch.tensor(list(mean)[:3], dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(list(std)[:3], dtype=torch.float32).view(1, 3, 1, 1)

    def apply(batch: "torch.Tensor") -> "torch.Tensor":
        x = (batch.float() / 255.0 - m) / s
        return x.to(device, dtype)

    return apply


def tiny_dinov2(seed: int = 0, image_size: int = 32) -> Any:
    """A small random ``Dinov2Model`` (2 layers, 32 wide, patch 8), seeded; global random state untouched."""
    import torch
    from transformers import Dinov2Config, Dinov2Model

    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2,
                       image_size=image_size, patch_size=8)  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Dinov2Model(cfg).eval()


def dinov2_features(model: str, *, batch_size: int = 32, resize: str | None = None, device: str = "auto",
                    seed: int = 0) -> ImageFeatures:  # fmt: skip
    """DINOv2's CLS token after the final layer norm (``pooler_output``), as dgm-eval takes it."""
    from gligen_eval.scoring.clip import load_local_pretrained
    from gligen_eval.scoring.quality import ResizePolicy, module_digest

    dev = resolve_device(device)
    if model == "tiny":
        net, size = tiny_dinov2(seed), 32
    else:
        from transformers import Dinov2Model

        net, size = load_local_pretrained(Dinov2Model, model, "DINOv2 model"), 224
    net = net.to(dev).eval()
    policy = ResizePolicy.parse(resize) if resize else ResizePolicy(mode="resize", size=size, filter="bicubic")
    norm = _normalizer(IMAGENET_MEAN, IMAGENET_STD, dev, next(net.parameters()).dtype)

    def embed(batch: "torch.Tensor") -> "torch.Tensor":
        return net(pixel_values=norm(batch)).pooler_output

    fp = stable_hash({"net": "dinov2-cls", "model": model, "weights": module_digest(net), "resize": policy.name,
                      "norm": [IMAGENET_MEAN, IMAGENET_STD]})  # fmt: skip
    name = "tiny-dinov2 (random weights)" if model == "tiny" else f"dinov2:{model}"
    return ImageFeatures(name, fp, policy, embed, batch_size)


def clip_image_features(model: str, *, batch_size: int = 32, resize: str | None = None, device: str = "auto",
                        seed: int = 0) -> ImageFeatures:  # fmt: skip
    """L2-normalised projected CLIP image embeddings, the processor's mean and std, our own resize."""
    import torch

    from gligen_eval.scoring.clip import load_local_pretrained, projected_embeddings, tiny_clip
    from gligen_eval.scoring.quality import ResizePolicy, module_digest

    dev = resolve_device(device)
    if model == "tiny":
        net, processor = tiny_clip(seed=seed)
        image_processor = processor.image_processor
    else:
        from transformers import CLIPImageProcessor, CLIPModel

        net = load_local_pretrained(CLIPModel, model, "CLIP model")
        image_processor = load_local_pretrained(CLIPImageProcessor, model, "CLIP image processor")
    net = net.to(dev).eval()
    crop = getattr(image_processor, "crop_size", None) or {}
    size = int(crop.get("height") or net.config.vision_config.image_size)
    policy = ResizePolicy.parse(resize) if resize else ResizePolicy(mode="resize", size=size, filter="bicubic")
    mean, std = image_processor.image_mean, image_processor.image_std
    norm = _normalizer(mean, std, dev, next(net.parameters()).dtype)

    def embed(batch: "torch.Tensor") -> "torch.Tensor":
        emb = projected_embeddings(net.get_image_features(pixel_values=norm(batch)))
        return torch.nn.functional.normalize(emb.float(), dim=-1)

    fp = stable_hash({"net": "clip-image", "model": model, "weights": module_digest(net), "resize": policy.name,
                      "norm": [list(mean), list(std)]})  # fmt: skip
    name = "tiny-clip (random weights)" if model == "tiny" else f"clip:{model}"
    return ImageFeatures(name, fp, policy, embed, batch_size)


# --------------------------------------------------------------------------------------------
# feature caches


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    store.atomic_write_bytes(path, buf.getvalue())


def _load_npz(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of a cache file, or None when it is absent or unreadable (then it is recomputed)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: np.array(z[k]) for k in z.files}
    except (OSError, ValueError, KeyError):
        return None


def reference_features(net: ImageFeatures, images: Sequence[Path], cache_dir: Path | None) -> tuple[np.ndarray, str]:
    """Features of the real images, from ``<cache_dir>/feat-ref-<key>.npz`` when there, else computed
    and cached. Returns ``(features, key)``."""
    from gligen_eval.scoring.quality import image_list_digest

    key = stable_hash({"images": image_list_digest(images, "stat"), "features": net.fingerprint,
                       "format": FEATURES_FORMAT_VERSION}, length=24)  # fmt: skip
    path = cache_dir / f"feat-ref-{key}.npz" if cache_dir is not None else None
    if path is not None:
        cached = _load_npz(path)
        if cached is not None and str(cached.get("key", "")) == key and cached["features"].shape[0] == len(images):
            return cached["features"].astype(np.float64), key
    feats = net.features(images)
    if path is not None:
        meta = json.dumps({"name": net.name, "fingerprint": net.fingerprint, "resize": net.resize.name,
                           "n": len(images)})  # fmt: skip
        _save_npz(path, features=feats.astype(np.float32), key=np.asarray(key), meta=np.asarray(meta))
    return feats.astype(np.float32).astype(np.float64), key


def generated_features(rd: store.RunDir, net: ImageFeatures, samples: Sequence[SampleRecord]) -> np.ndarray:
    """Features of the run's images in ``samples`` order; ``RUN/features/<fingerprint>.npz`` keeps them
    by sample key, and only images not in it are read."""
    path = rd.root / "features" / f"{net.fingerprint}.npz"
    cached = _load_npz(path) or {}
    have: dict[str, np.ndarray] = {}
    if "keys" in cached and "features" in cached and len(cached["keys"]) == len(cached["features"]):
        have = {str(k): f for k, f in zip(cached["keys"], cached["features"])}
    todo = [s for s in samples if s.sample_key not in have]
    if todo:
        new = net.features([rd.root / s.image for s in todo]).astype(np.float32)
        have.update({s.sample_key: f for s, f in zip(todo, new)})
        keys = sorted(have)
        _save_npz(path, keys=np.asarray(keys), features=np.stack([have[k] for k in keys]))
    return np.stack([have[s.sample_key] for s in samples]).astype(np.float64)


# --------------------------------------------------------------------------------------------
# PickScore


def pickscore_prompt(layout: Layout) -> str:
    """The layout's caption, else its phrases joined by commas."""
    return layout.caption.strip() or ", ".join(p for p in layout.phrases if p)


def build_pickscore(model: str, processor: str | None, *, batch_size: int = 16, dtype: str = "float32",
                    device: str = "auto", seed: int = 0) -> Any:  # fmt: skip
    """A :class:`~gligen_eval.scoring.clip.ClipScorer` holding the PickScore model and its processor."""
    from gligen_eval.scoring.clip import ClipScorer, load_local_pretrained, resolve_dtype, tiny_clip

    if model == "tiny":
        net, proc = tiny_clip(seed=seed)
        return ClipScorer(net, proc, name="tiny-pickscore (random weights)", batch_size=batch_size, device=device)
    from transformers import CLIPModel, CLIPProcessor

    net = load_local_pretrained(CLIPModel, model, "PickScore model", dtype=resolve_dtype(dtype))
    proc = load_local_pretrained(CLIPProcessor, processor or model, "PickScore processor")
    return ClipScorer(net, proc, name=f"pickscore:{model}", batch_size=batch_size, device=device)


def pickscores(scorer: Any, images: Sequence[Any], prompts: Sequence[str]) -> list[float]:
    """``logit_scale.exp() * cos(image, prompt)`` for each image (PickScore's score, not clipped at 0)."""
    from gligen_eval.imageio import pil_open

    if len(images) != len(prompts):
        raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
    scale = float(scorer.model.logit_scale.detach().float().exp().cpu())
    out: list[float] = []
    step = scorer.batch_size
    for i in range(0, len(images), step):
        chunk = []
        for item in images[i : i + step]:
            if isinstance(item, (str, os.PathLike)):
                with pil_open(item) as im:
                    chunk.append(im.convert("RGB"))
            else:
                chunk.append(item)
        a = scorer.embed_images(chunk)
        b = scorer.embed_texts(list(prompts[i : i + step]))
        out.extend(float(v) for v in scale * (a * b).sum(-1))
    return out


PICKSCORE_ROWS = "pickscore.jsonl"


def pickscore_rows(rd: store.RunDir, scorer: Any, layouts: Sequence[Layout],
                   samples: Sequence[SampleRecord]) -> list[float]:  # fmt: skip
    """PickScore of each sample (``samples`` order); ``RUN/pickscore.jsonl`` holds one row per image
    (sample key, layout, prompt, score, scorer fingerprint) and rows already there are reused."""
    by_id = {lay.layout_id: lay for lay in layouts}
    fp = scorer.fingerprint()
    path = rd.path(PICKSCORE_ROWS)
    have: dict[tuple[str, str], float] = {}
    if path.is_file():
        for row in store.iter_jsonl(path):
            if row.get("scorer") == fp and isinstance(row.get("pickscore"), (int, float)):
                have[(str(row.get("sample_key")), str(row.get("prompt")))] = float(row["pickscore"])
    prompts = [pickscore_prompt(by_id[s.layout_id]) for s in samples]
    todo = [(s, p) for s, p in zip(samples, prompts) if (s.sample_key, p) not in have]
    if todo:
        new = pickscores(scorer, [rd.root / s.image for s, _ in todo], [p for _, p in todo])
        store.append_jsonl(path, [{"sample_key": s.sample_key, "layout_id": s.layout_id, "prompt": p, "pickscore": v,
                                   "scorer": fp} for (s, p), v in zip(todo, new)])  # fmt: skip
        have.update({(s.sample_key, p): v for (s, p), v in zip(todo, new)})
    return [have[(s.sample_key, p)] for s, p in zip(samples, prompts)]


# --------------------------------------------------------------------------------------------
# the scoring pass


def enabled(q: "QualityConfig") -> bool:
    return q.fd_dinov2.enabled or q.cmmd.enabled or q.prdc.enabled or q.pickscore.enabled


def _feature_specs(q: "QualityConfig") -> dict[str, tuple[str, str, int, str | None]]:
    """``{metric: (family, model, batch size, resize)}`` of the feature-based metrics enabled."""
    specs: dict[str, tuple[str, str, int, str | None]] = {}
    if q.fd_dinov2.enabled:
        specs["fd_dinov2"] = ("dinov2", q.fd_dinov2.model, q.fd_dinov2.batch_size, q.fd_dinov2.resize)
    if q.cmmd.enabled:
        specs["cmmd"] = ("clip", q.cmmd.model, q.cmmd.batch_size, q.cmmd.resize)
    if q.prdc.enabled:
        same = q.fd_dinov2 if q.prdc.features == "dinov2" else q.cmmd
        specs["prdc"] = (q.prdc.features, q.prdc.model or same.model, q.prdc.batch_size, same.resize)
    return specs


def _build(family: str, model: str, batch_size: int, resize: str | None, *, device: str, seed: int) -> ImageFeatures:
    build = dinov2_features if family == "dinov2" else clip_image_features
    return build(model, batch_size=batch_size, resize=resize, device=device, seed=seed)


def check_weights(q: "QualityConfig") -> None:
    """Every enabled quality model's weights are on disk (a folder or the local HF cache), checked
    without building the model: missing weights fail before generation, each model loads once."""
    from gligen_eval.scoring.clip import check_local_pretrained

    for family, model, _, _ in _feature_specs(q).values():
        if model != "tiny":
            check_local_pretrained(model, f"{family} model")
    if q.pickscore.enabled and q.pickscore.model != "tiny":
        check_local_pretrained(q.pickscore.model, "PickScore model")  # its processor is looked up when it is built


def check_counts(q: "QualityConfig", n_real: int, n_generated: int) -> None:
    """Enough images for the enabled metrics (PRDC's k-NN balls need more than k on each side)."""
    if q.prdc.enabled and min(n_real, n_generated) <= q.prdc.k:
        raise InputError(f"precision/recall/density/coverage with quality.prdc.k={q.prdc.k} need more than {q.prdc.k} "
                         f"real and generated images, got {n_real} and {n_generated}")  # fmt: skip


def uses_random_weights(q: "QualityConfig") -> bool:
    specs = _feature_specs(q).values()
    return any(model == "tiny" for _, model, _, _ in specs) or (q.pickscore.enabled and q.pickscore.model == "tiny")


def score_quality(rd: store.RunDir, cfg: "RunConfig", layouts: Sequence[Layout], samples: Sequence[SampleRecord], *,
                  device: str) -> tuple[dict[str, float], dict[str, Any]]:  # fmt: skip
    """The enabled ``quality`` metrics of the run's images. Returns ``(metrics, description for the manifest)``."""
    from gligen_eval.scoring import distances
    from gligen_eval.scoring.detection import release as _release
    from gligen_eval.scoring.fid_pass import fid_cache_dir, fid_reference_images

    q = cfg.quality
    metrics: dict[str, float] = {}
    info: dict[str, Any] = {}
    specs = _feature_specs(q)
    if specs:
        paths, where = fid_reference_images(cfg.fid, layouts)
        cache = Path(q.cache_dir).expanduser() if q.cache_dir else fid_cache_dir(cfg.fid)
        feats: dict[tuple, tuple[np.ndarray, np.ndarray, dict[str, Any]]] = {}  # one pass per network and resize
        for metric, spec in specs.items():
            family, model, _, resize = spec
            if (family, model, resize) not in feats:
                net = _build(*spec, device=device, seed=q.seed)
                real, key = reference_features(net, paths, cache)
                about = {"name": net.name, "fingerprint": net.fingerprint, "resize": net.resize.name,
                         "reference": {"source": where, "images": len(paths), "key": key, "cache_dir": str(cache)}}  # fmt: skip
                feats[(family, model, resize)] = (real, generated_features(rd, net, samples), about)
                del net  # the model goes before the next one is built
                _release(device)
            real, gen, about = feats[(family, model, resize)]
            info[metric] = dict(about)
            if metric == "fd_dinov2":
                metrics["fd_dinov2"] = distances.feature_frechet_distance(real, gen)
            elif metric == "cmmd":
                metrics["cmmd"] = distances.cmmd(real, gen, sigma=q.cmmd.sigma, unbiased=q.cmmd.unbiased)
                info[metric].update(sigma=q.cmmd.sigma, unbiased=q.cmmd.unbiased, scale=1000.0)
            else:
                check_counts(q, len(real), len(gen))
                metrics.update({f"prdc/{k}": v for k, v in distances.prdc(real, gen, q.prdc.k).items()})
                info[metric]["k"] = q.prdc.k
    if q.pickscore.enabled:
        p = q.pickscore
        scorer = build_pickscore(p.model, p.processor, batch_size=p.batch_size, dtype=p.dtype, device=device,
                                 seed=q.seed)  # fmt: skip
        scores = pickscore_rows(rd, scorer, layouts, samples)
        metrics["pref/pickscore"] = float(np.mean(scores))
        info["pickscore"] = {"name": scorer.name, "fingerprint": scorer.fingerprint(), "processor": p.processor}
        del scorer
        _release(device)
    return {k: metrics[k] for k in QUALITY_KEYS if k in metrics}, info
