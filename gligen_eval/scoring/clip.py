"""CLIP scores of generated images, computed with transformers' ``CLIPModel`` directly.

Three scores, each ``weight * max(cos, 0)`` of two L2-normalised CLIP embeddings:

* ``clip/global`` -- the whole image against the layout's caption;
* ``clip/regional`` -- the crop of each box against that object's phrase;
* ``clip/image`` -- the crop of each box against the object's reference image (image+box
  layouts): image-grounding similarity.

**Scale.** The reported numbers use ``weight=100`` by default: torchmetrics' ``CLIPScore``
convention and the "CLIP score" most text-to-image papers print (about 30 for a matching
caption with ViT-B/32). Hessel et al.'s CLIP-S uses ``weight=2.5``; pass ``weight=2.5`` to get it.
The raw cosine similarity is ``score / weight`` whenever it is positive.

**Crops.** A box (normalized xyxy) becomes the pixel rectangle ``floor(x0*W), floor(y0*H),
ceil(x1*W), ceil(y1*H)`` (at least ``min_crop_px`` wide and high). ``crop="tight"`` hands that
rectangle to the CLIP image processor, which resizes its short side and centre-crops, cutting
the ends of elongated boxes; ``crop="pad-square"`` first pads it to a square with the
processor's mean colour so the whole object is seen.

**Why not torchmetrics' CLIPScore.** Under transformers 5 ``get_image_features`` and
``get_text_features`` return a ``BaseModelOutputWithPooling`` whose ``pooler_output`` holds the
projected embeddings, where transformers 4 returned the tensor itself; torchmetrics 1.9 expects
the tensor. :func:`projected_embeddings` accepts both.

**Weights.** Real models (``openai/clip-vit-base-patch32``, ``openai/clip-vit-large-patch14``...)
load from a local folder or the local Hugging Face cache only; anything else is a
:class:`~gligen_eval.errors.MissingWeightsError` raised at once. :func:`tiny_clip` builds a small
random model with a locally built tokenizer for tests and the offline demo.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

from gligen_eval.devices import resolve_device
from gligen_eval.errors import ConfigError, InputError, MissingWeightsError
from gligen_eval.records import Layout, stable_hash
from gligen_eval.imageio import pil_open

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image

CropMode = Literal["tight", "pad-square"]
DEFAULT_CLIP_WEIGHT = 100.0


# --------------------------------------------------------------------------------------------
# pure functions


def projected_embeddings(output: Any) -> "torch.Tensor":
    """The projected embeddings from ``CLIPModel.get_image_features`` / ``get_text_features``.

    transformers 4 returns a tensor; transformers 5 returns a model output whose
    ``pooler_output`` is the projection (a tuple ``(last_hidden_state, pooler_output)`` when
    ``return_dict=False``).
    """
    import torch

    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if isinstance(pooled, torch.Tensor):
        return pooled
    if isinstance(output, (tuple, list)) and len(output) >= 2 and isinstance(output[1], torch.Tensor):
        return output[1]
    raise TypeError(f"cannot find projected embeddings in a {type(output).__name__}")


def clip_score(a: "torch.Tensor", b: "torch.Tensor", weight: float = DEFAULT_CLIP_WEIGHT) -> "torch.Tensor":
    """Row-wise ``weight * max(cos(a_i, b_i), 0)`` of two ``(N, D)`` embedding batches."""
    import torch

    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"clip_score needs two (N, D) batches of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    a = torch.nn.functional.normalize(a.float(), dim=-1)
    b = torch.nn.functional.normalize(b.float(), dim=-1)
    return weight * (a * b).sum(-1).clamp(min=0.0)


def box_to_pixels(box: Sequence[float], width: int, height: int, min_px: int = 2) -> tuple[int, int, int, int]:
    """Normalized xyxy -> the pixel rectangle that covers it (``floor`` / ``ceil``), clamped to the
    image and at least ``min_px`` wide and high (grown around its centre when smaller)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    eps = 1e-6  # 0.55 * 100 is 55.000000000000007 in floating point: still pixel 55
    l, t = math.floor(max(0.0, x0) * width + eps), math.floor(max(0.0, y0) * height + eps)
    r, b = math.ceil(min(1.0, x1) * width - eps), math.ceil(min(1.0, y1) * height - eps)

    def grow(lo: int, hi: int, size: int) -> tuple[int, int]:
        need = min(min_px, size)
        if hi - lo >= need:
            return lo, hi
        lo = max(0, min((lo + hi - need) // 2, size - need))
        return lo, lo + need

    l, r = grow(l, r, width)
    t, b = grow(t, b, height)
    return l, t, r, b


def crop_box(image: "Image.Image", box: Sequence[float], mode: CropMode = "tight", *,
             fill: tuple[int, int, int] = (124, 116, 104), min_px: int = 2) -> "Image.Image":  # fmt: skip
    """The crop of a normalized xyxy box (``"pad-square"``: centred on a square of ``fill``)."""
    from PIL import Image

    img = image if image.mode == "RGB" else image.convert("RGB")
    rect = box_to_pixels(box, img.width, img.height, min_px)
    crop = img.crop(rect)
    if mode == "pad-square" and crop.width != crop.height:
        side = max(crop.size)
        canvas = Image.new("RGB", (side, side), fill)
        canvas.paste(crop, ((side - crop.width) // 2, (side - crop.height) // 2))
        crop = canvas
    return crop


# --------------------------------------------------------------------------------------------
# loading


def resolve_dtype(dtype: str) -> Any:
    import torch

    try:
        return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
    except KeyError:
        raise ConfigError(f"dtype must be float32, float16 or bfloat16, got {dtype!r}") from None


def check_tokenizer(tokenizer: Any, vocab_size: int, source: str) -> None:
    """Refuse the near-empty tokenizer that an offline hub look-up can silently produce."""
    n = len(tokenizer)
    if n < max(3, vocab_size // 2) or n > vocab_size:
        raise MissingWeightsError(
            f"the tokenizer loaded for {source} has {n} tokens but the model expects {vocab_size}; "
            "its vocabulary files are missing. Place the complete model folder (with the tokenizer files) locally"
        )


def load_local_pretrained(loader: Any, name_or_path: str, what: str, cache_dir: str | None = None, **kwargs: Any) -> Any:
    """``loader.from_pretrained`` from a local folder or the local Hugging Face cache, never the network."""
    import pickle

    from gligen_eval.safeload import check_model_folder, unpickling_refusal

    path = Path(name_or_path).expanduser()
    source = str(path) if path.is_dir() else name_or_path
    if path.is_dir():
        check_model_folder(path)  # no weights pickle beyond tensors (transformers also reads them weights_only)
    try:
        return loader.from_pretrained(source, local_files_only=True, cache_dir=cache_dir, **kwargs)
    except pickle.UnpicklingError as e:
        raise unpickling_refusal(source, e) from None
    except (OSError, ValueError) as e:
        raise _not_local(name_or_path, what, path, f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}") from None


def _not_local(name_or_path: str, what: str, path: Path, detail: str) -> MissingWeightsError:
    where = f"the folder {path}" if path.is_dir() else "no such local folder, and not in the local Hugging Face cache"
    return MissingWeightsError(
        f"{what} {name_or_path!r} is not available locally ({where}); downloads are disabled. "
        f"Download it once (e.g. `hf download {name_or_path} --local-dir DIR`) and pass DIR. ({detail})"
    )


PRETRAINED_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                           "pytorch_model.bin.index.json")  # fmt: skip


def check_local_pretrained(name_or_path: str, what: str, cache_dir: str | None = None) -> None:
    """What :func:`load_local_pretrained` needs, checked without building the model: a local folder or a
    snapshot in the local Hugging Face cache with ``config.json`` and a weights file, whose pickles hold
    tensors only."""
    from gligen_eval.safeload import check_model_folder

    path = Path(name_or_path).expanduser()
    if path.is_dir():
        folder: Path | None = path
    else:
        from huggingface_hub import try_to_load_from_cache

        try:
            found = try_to_load_from_cache(name_or_path, "config.json", cache_dir=cache_dir)
        except ValueError as e:  # not a repo id
            raise _not_local(name_or_path, what, path, f"ValueError: {str(e)[:200]}") from None
        folder = Path(found).parent if isinstance(found, str) else None
    if folder is None or not (folder / "config.json").is_file():
        raise _not_local(name_or_path, what, path, "no config.json")
    if not any((folder / f).is_file() for f in PRETRAINED_WEIGHT_FILES):
        raise _not_local(name_or_path, what, path, f"none of {', '.join(PRETRAINED_WEIGHT_FILES)}")
    check_model_folder(folder)


# --------------------------------------------------------------------------------------------
# the scorer


@dataclass
class ClipSampleScores:
    """CLIP scores of one generated image; per-object lists follow the layout's objects (``None``
    where a score does not apply: no phrase, or no reference image)."""

    global_score: float | None
    regional: list[float | None] = field(default_factory=list)
    image: list[float | None] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"clip/global": self.global_score, "clip/regional": list(self.regional), "clip/image": list(self.image)}


class ClipScorer:
    """CLIP scores with a ``CLIPModel`` and its processor.

    Args:
        model: a transformers ``CLIPModel``.
        processor: a ``CLIPProcessor`` (tokenizer + image processor) that matches the model.
        name: the model's id, used in fingerprints.
        weight: ``w`` in ``w * max(cos, 0)``; 100 (torchmetrics' convention) or 2.5 (CLIP-S).
        crop: ``"tight"`` or ``"pad-square"`` (see the module notes).
        batch_size: images or texts per forward pass.
        min_crop_px: smallest crop side in pixels.
        device: ``"auto"``, ``"cpu"``, ``"cuda:0"``...
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        name: str = "clip",
        weight: float = DEFAULT_CLIP_WEIGHT,
        crop: CropMode = "tight",
        batch_size: int = 32,
        min_crop_px: int = 2,
        device: str = "auto",
    ) -> None:
        if crop not in ("tight", "pad-square"):
            raise ConfigError(f"CLIP crop must be 'tight' or 'pad-square', got {crop!r}")
        if not weight > 0:
            raise ConfigError(f"CLIP weight must be positive, got {weight!r}")
        if batch_size < 1 or min_crop_px < 1:
            raise ConfigError(f"batch_size and min_crop_px must be >= 1 (got {batch_size}, {min_crop_px})")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.processor = processor
        self.name = name
        self.weight = float(weight)
        self.crop = crop
        self.batch_size = int(batch_size)
        self.min_crop_px = int(min_crop_px)
        cfg = model.config
        self.max_text_tokens = int(cfg.text_config.max_position_embeddings)
        self.embed_dim = int(cfg.projection_dim)
        check_tokenizer(processor.tokenizer, int(cfg.text_config.vocab_size), name)
        mean = getattr(processor.image_processor, "image_mean", None) or (0.48145466, 0.4578275, 0.40821073)
        self._fill = tuple(int(round(255 * float(m))) for m in mean[:3])
        self._fingerprint: str | None = None

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        *,
        device: str = "auto",
        dtype: str = "float32",
        cache_dir: str | None = None,
        **kwargs: Any,
    ) -> "ClipScorer":
        """Load a CLIP model and processor from a local folder or the local HF cache (never the network)."""
        from transformers import CLIPModel, CLIPProcessor

        model = load_local_pretrained(CLIPModel, name_or_path, "CLIP model", cache_dir, dtype=resolve_dtype(dtype))
        processor = load_local_pretrained(CLIPProcessor, name_or_path, "CLIP processor", cache_dir)
        return cls(model, processor, name=str(name_or_path), device=device, **kwargs)

    def fingerprint(self) -> str:
        """Weights and settings (hashing the weights once, then remembered)."""
        if self._fingerprint is None:
            from gligen_eval.scoring.quality import module_digest

            self._fingerprint = stable_hash({"clip": self.name, "weights": module_digest(self.model),
                                             "weight": self.weight, "crop": self.crop, "min_crop_px": self.min_crop_px})  # fmt: skip
        return self._fingerprint

    # -- embeddings ------------------------------------------------------------------------

    def _check(self, emb: "torch.Tensor", n: int) -> "torch.Tensor":
        import torch

        if emb.shape != (n, self.embed_dim):
            raise ValueError(f"CLIP returned embeddings of shape {tuple(emb.shape)}, expected ({n}, {self.embed_dim})")
        return torch.nn.functional.normalize(emb.float(), dim=-1).cpu()

    def embed_images(self, images: Sequence["Image.Image"]) -> "torch.Tensor":
        """L2-normalised image embeddings ``(N, D)`` (float32, CPU)."""
        import torch

        out = []
        for i in range(0, len(images), self.batch_size):
            chunk = [im if im.mode == "RGB" else im.convert("RGB") for im in images[i : i + self.batch_size]]
            pixels = self.processor.image_processor(images=chunk, return_tensors="pt")["pixel_values"]
            with torch.inference_mode():
                res = self.model.get_image_features(pixel_values=pixels.to(self.device, self.model.dtype))
            out.append(self._check(projected_embeddings(res), len(chunk)))
        return torch.cat(out) if out else torch.zeros(0, self.embed_dim)

    def embed_texts(self, texts: Sequence[str]) -> "torch.Tensor":
        """L2-normalised text embeddings ``(N, D)``; texts longer than the model's limit are truncated."""
        import torch

        out = []
        for i in range(0, len(texts), self.batch_size):
            chunk = list(texts[i : i + self.batch_size])
            tok = self.processor.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_text_tokens, return_tensors="pt")
            with torch.inference_mode():
                res = self.model.get_text_features(input_ids=tok["input_ids"].to(self.device),
                                                   attention_mask=tok["attention_mask"].to(self.device))  # fmt: skip
            out.append(self._check(projected_embeddings(res), len(chunk)))
        return torch.cat(out) if out else torch.zeros(0, self.embed_dim)

    def _score(self, a: "torch.Tensor", b: "torch.Tensor") -> list[float]:
        return [float(v) for v in clip_score(a, b, self.weight)] if len(a) else []

    def crops(self, image: "Image.Image", boxes: Sequence[Sequence[float]]) -> list["Image.Image"]:
        return [crop_box(image, b, self.crop, fill=self._fill, min_px=self.min_crop_px) for b in boxes]  # type: ignore[arg-type]

    # -- scores ------------------------------------------------------------------------------

    def global_scores(self, images: Sequence["Image.Image"], captions: Sequence[str]) -> list[float]:
        """Each image against its caption."""
        if len(images) != len(captions):
            raise ValueError(f"{len(images)} images but {len(captions)} captions")
        return self._score(self.embed_images(images), self.embed_texts(captions))

    def regional_scores(self, images: Sequence["Image.Image"], boxes_per_image: Sequence[Sequence[Sequence[float]]],
                        phrases_per_image: Sequence[Sequence[str]]) -> list[list[float]]:  # fmt: skip
        """Each box crop against its phrase; one list per image, in box order."""
        crops, phrases, counts = [], [], []
        for img, boxes, phr in zip(images, boxes_per_image, phrases_per_image, strict=True):
            if len(boxes) != len(phr):
                raise ValueError(f"{len(boxes)} boxes but {len(phr)} phrases")
            crops.extend(self.crops(img, boxes))
            phrases.extend(phr)
            counts.append(len(boxes))
        flat = self._score(self.embed_images(crops), self.embed_texts(phrases))
        return _split(flat, counts)

    def image_grounding_scores(self, images: Sequence["Image.Image"], boxes_per_image: Sequence[Sequence[Sequence[float]]],
                               references_per_image: Sequence[Sequence["Image.Image"]]) -> list[list[float]]:  # fmt: skip
        """Each box crop against its reference image; one list per image, in box order."""
        crops, refs, counts = [], [], []
        for img, boxes, rimgs in zip(images, boxes_per_image, references_per_image, strict=True):
            if len(boxes) != len(rimgs):
                raise ValueError(f"{len(boxes)} boxes but {len(rimgs)} reference images")
            crops.extend(self.crops(img, boxes))
            refs.extend(rimgs)
            counts.append(len(boxes))
        flat = self._score(self.embed_images(crops), self.embed_images(refs))
        return _split(flat, counts)

    def score_layouts(
        self,
        images: Sequence["Image.Image"],
        layouts: Sequence[Layout],
        *,
        reference_root: str | os.PathLike[str] | None = None,
    ) -> list[ClipSampleScores]:
        """All three scores for generated images of the given layouts (one layout per image).

        Objects with an empty phrase get no regional score; objects without ``reference_image``
        get no image score. Relative reference paths are resolved against ``reference_root``, else
        against the layout's ``source_dir``.
        """

        if len(images) != len(layouts):
            raise ValueError(f"{len(images)} images but {len(layouts)} layouts")
        glob = self.global_scores(images, [lay.caption for lay in layouts])
        reg_idx = [[i for i, o in enumerate(lay.objects) if o.phrase.strip()] for lay in layouts]
        reg = self.regional_scores(images, [[lay.objects[i].box for i in idx] for lay, idx in zip(layouts, reg_idx)],
                                   [[lay.objects[i].phrase for i in idx] for lay, idx in zip(layouts, reg_idx)])  # fmt: skip
        ref_idx = [[i for i, o in enumerate(lay.objects) if o.reference_image] for lay in layouts]
        ref_images: list[list[Any]] = []
        for lay, idx in zip(layouts, ref_idx):
            row = []
            for i in idx:
                ref = Path(lay.objects[i].reference_image)  # type: ignore[arg-type]
                root = reference_root if reference_root is not None else lay.source_dir
                if not ref.is_absolute() and root is not None:
                    ref = Path(root) / ref
                if not ref.is_file():
                    raise InputError("reference image not found", path=str(ref), record=f"layout {lay.layout_id} object {i}")
                with pil_open(ref) as im:
                    row.append(im.convert("RGB"))
            ref_images.append(row)
        img = self.image_grounding_scores(images, [[lay.objects[i].box for i in idx] for lay, idx in zip(layouts, ref_idx)], ref_images)
        out = []
        for lay, g, ri, r, ii, s in zip(layouts, glob, reg_idx, reg, ref_idx, img):
            regional: list[float | None] = [None] * len(lay.objects)
            image: list[float | None] = [None] * len(lay.objects)
            for i, v in zip(ri, r):
                regional[i] = v
            for i, v in zip(ii, s):
                image[i] = v
            out.append(ClipSampleScores(global_score=g, regional=regional, image=image))
        return out


def _split(flat: list[float], counts: list[int]) -> list[list[float]]:
    out, k = [], 0
    for c in counts:
        out.append(flat[k : k + c])
        k += c
    return out


# --------------------------------------------------------------------------------------------
# aggregation


def clip_metrics(
    scores_by_layout: Mapping[str, Sequence[ClipSampleScores]],
    *,
    ci: bool = True,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, float]:
    """``clip/global``, ``clip/regional``, ``clip/image`` (pooled means) with ``/lo`` ``/hi`` bootstrap
    intervals over layouts. A key is left out when no sample has that score (e.g. no reference images)."""
    from gligen_eval.scoring.stats import with_ci

    per_key: dict[str, dict[str, list[float]]] = {"clip/global": {}, "clip/regional": {}, "clip/image": {}}
    for lid, samples in scores_by_layout.items():
        g, r, m = [], [], []
        for s in samples:
            if s.global_score is not None:
                g.append(float(s.global_score))
            r.extend(float(v) for v in s.regional if v is not None)
            m.extend(float(v) for v in s.image if v is not None)
        per_key["clip/global"][lid], per_key["clip/regional"][lid], per_key["clip/image"][lid] = g, r, m
    out: dict[str, float] = {}
    for key, values in per_key.items():
        if not any(values.values()):
            continue
        if ci:
            out.update(with_ci(key, values, "pooled_mean", n_boot=n_boot, alpha=alpha, seed=seed))
        else:
            total = [v for vs in values.values() for v in vs]
            out[key] = sum(total) / len(total)
    return out


# --------------------------------------------------------------------------------------------
# tiny model


def tiny_clip(seed: int = 0, image_size: int = 32, hidden: int = 32, projection_dim: int = 16) -> tuple[Any, Any]:
    """A small random ``CLIPModel`` and a matching ``CLIPProcessor`` built in code (no files).

    The tokenizer is :func:`gligen_eval.generation.tiny.tiny_tokenizer` (byte-level, one token per
    character). The same seed gives the same weights; the global torch random state is untouched.
    """
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from gligen_eval.generation.tiny import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    vocab = len(tokenizer)
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    cfg = CLIPConfig(
        text_config=dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77, bos_token_id=bos, eos_token_id=eos,
                         pad_token_id=eos),
        vision_config=dict(image_size=image_size, patch_size=max(4, image_size // 4), hidden_size=hidden,
                           intermediate_size=2 * hidden, num_hidden_layers=2, num_attention_heads=4),
        projection_dim=projection_dim,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(cfg).eval()
    image_processor = CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
    return model, CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
