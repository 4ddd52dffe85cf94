"""Open-vocabulary detection with the layout's own phrases (OWLv2 / OWL-ViT from transformers).

:class:`OwlDetector` follows the :class:`~gligen_eval.scoring.detectors.Detector` protocol
(``name``, ``fingerprint()``, ``detect(images)``) and also takes the phrases to look for, per
image: ``detect(images, phrases_per_image)``. Without per-image phrases it looks for the fixed
vocabulary given at construction (``phrases=``), e.g. the LVIS or COCO class names.
``takes_phrases = True`` tells a runner to pass each layout's phrases.

Each :class:`~gligen_eval.records.Detection` has a normalized xyxy box of the original image,
``label`` = the phrase it matched (exactly as given, duplicates removed), ``score`` = the sigmoid of
the model's logit for that phrase, and no ``category_id`` (the caller maps phrases to categories).

Post-processing, written out here rather than borrowed from the processor so that every step is
visible:

1. OWLv2 pads each image at the bottom/right to a square before resizing, so its boxes are
   fractions of that square: a box becomes pixels by ``* max(W, H)``, then fractions of the
   original by ``/ (W, H)``. OWL-ViT resizes without padding, so its boxes are already fractions
   of the original. Boxes are clipped to the image; those that end up empty (entirely in the
   padding) are dropped.
2. Only the columns of the image's own phrases are used (the processor pads ragged query lists
   with ``" "`` queries, which would otherwise compete).
3. ``label_mode="argmax"`` gives each predicted box its best phrase (the processor's
   convention); ``"all"`` keeps every (box, phrase) pair as a candidate (the usual protocol for
   LVIS-style AP with many classes).
4. Candidates with ``score < conf`` are dropped, then per-phrase NMS at IoU ``iou`` (``iou >= 1``
   disables it), then the ``max_det`` best are kept, highest score first.

Real ids (``google/owlv2-base-patch16-ensemble``...) load from a local folder or the local
Hugging Face cache only, else :class:`~gligen_eval.errors.MissingWeightsError`.
:func:`tiny_owlv2` builds a small random model for tests and the offline demo.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Sequence

from gligen_eval.devices import resolve_device
from gligen_eval.errors import ConfigError
from gligen_eval.records import Detection, stable_hash

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image

LabelMode = Literal["argmax", "all"]
SUPPORTED_MODEL_TYPES = ("owlv2", "owlvit")


def cxcywh_to_image_xyxy(boxes: "torch.Tensor", width: int, height: int, padded_square: bool) -> "torch.Tensor":
    """Model boxes (normalized cx, cy, w, h of the network input) -> normalized xyxy of the original
    ``width`` x ``height`` image, clipped to ``[0, 1]``.

    ``padded_square``: the input was the image padded at the bottom/right to ``max(W, H)`` square
    (OWLv2); otherwise the image was resized to the input directly (OWL-ViT).
    """
    import torch

    cx, cy, w, h = boxes.unbind(-1)
    xyxy = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
    if padded_square:
        side = float(max(width, height))
        scale = torch.tensor([side / width, side / height, side / width, side / height], dtype=xyxy.dtype, device=xyxy.device)
        xyxy = xyxy * scale
    return xyxy.clamp(0.0, 1.0)


def _unique(phrases: Sequence[str]) -> list[str]:
    seen: dict[str, None] = {}
    for p in phrases:
        if not isinstance(p, str):
            raise ConfigError(f"phrases must be strings, got {p!r}")
        if p.strip() and p not in seen:
            seen[p] = None
    return list(seen)


class PhraseDetector:
    """What the transformers detectors that are asked for each image's phrases share: the constructor
    (settings checked, the model loaded unless given, checked and placed), the fingerprint, the
    per-image queries and their batching, and the final ranking (per-phrase NMS, ``max_det``).
    A subclass names its ``model_types``, the transformers ``model_class`` that loads its weights and
    its defaults, and implements ``settings`` and ``_detect_batch(images, queries)``; its own
    constructor checks its own options and hands the rest on."""

    task = "detect"
    takes_phrases = True
    kind_name = "the open-vocabulary detector"
    model_types: tuple[str, ...] = SUPPORTED_MODEL_TYPES
    model_class = "AutoModelForZeroShotObjectDetection"
    default_conf = 0.1
    default_batch_size = 8

    def __init__(
        self,
        weights: str,
        conf: float | None = None,
        iou: float = 1.0,
        max_det: int = 100,
        batch_size: int | None = None,
        device: str = "auto",
        *,
        phrases: Sequence[str] | None = None,
        dtype: str = "float32",
        cache_dir: str | None = None,
        model: Any = None,
        processor: Any = None,
    ) -> None:
        conf = self.default_conf if conf is None else conf
        batch_size = self.default_batch_size if batch_size is None else batch_size
        if not 0.0 <= conf <= 1.0:
            raise ConfigError(f"{self.kind_name} conf must be in [0, 1], got {conf}")
        if not iou > 0.0 or max_det < 1 or batch_size < 1:
            raise ConfigError(f"{self.kind_name} iou must be > 0 and max_det, batch_size >= 1 (got {iou}, {max_det}, {batch_size})")
        self.weights = str(weights)
        self.conf, self.iou, self.max_det, self.batch_size = float(conf), float(iou), int(max_det), int(batch_size)
        self.phrases = _unique(phrases) if phrases is not None else None
        self.device = resolve_device(device)
        if (model is None) != (processor is None):
            raise ConfigError("pass both model and processor, or neither")
        if model is None:
            model, processor = self._load(dtype, cache_dir)
        model_type = getattr(model.config, "model_type", None)
        if model_type not in self.model_types:
            raise ConfigError(f"{self.weights!r} is a {model_type!r} model; {self.kind_name} supports {list(self.model_types)}")
        self.model = model.to(self.device).eval()
        self.processor = processor
        from gligen_eval.scoring.clip import check_tokenizer

        check_tokenizer(processor.tokenizer, int(model.config.text_config.vocab_size), self.weights)
        self.name = f"{model_type}:{self.weights.rstrip('/').split('/')[-1]}"
        self._fingerprint: str | None = None

    def _load(self, dtype: str, cache_dir: str | None) -> tuple[Any, Any]:
        """The model and processor of ``self.weights``, from a local folder or the local hub cache only."""
        import transformers

        from gligen_eval.scoring.clip import load_local_pretrained, resolve_dtype

        what = self.kind_name.removeprefix("the ")
        model = load_local_pretrained(getattr(transformers, self.model_class), self.weights, what, cache_dir,
                                      dtype=resolve_dtype(dtype))  # fmt: skip
        processor = load_local_pretrained(transformers.AutoProcessor, self.weights, f"{what} processor", cache_dir)
        return model, processor

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            from gligen_eval.scoring.quality import module_digest

            self._fingerprint = stable_hash({"detector": self.name, "weights": module_digest(self.model), **self.settings()})
        return self._fingerprint

    def detect(self, images: list["Image.Image"], phrases_per_image: Sequence[Sequence[str]] | None = None) -> list[list[Detection]]:
        """Detections per image for that image's phrases (or the fixed vocabulary)."""
        if phrases_per_image is None:
            if self.phrases is None:
                raise ConfigError(f"{self.kind_name} needs phrases: pass phrases_per_image or build it with phrases=[...]")
            queries = [list(self.phrases) for _ in images]
        else:
            if len(phrases_per_image) != len(images):
                raise ValueError(f"{len(images)} images but {len(phrases_per_image)} phrase lists")
            queries = [_unique(p) for p in phrases_per_image]
        out: list[list[Detection]] = [[] for _ in images]
        todo = [i for i, q in enumerate(queries) if q]
        for k in range(0, len(todo), self.batch_size):
            idx = todo[k : k + self.batch_size]
            for i, dets in zip(idx, self._detect_batch([images[i] for i in idx], [queries[i] for i in idx])):
                out[i] = dets
        return out

    def _ranked(self, cand: "torch.Tensor", scores: "torch.Tensor", labels: "torch.Tensor",
                queries: list[str]) -> list[Detection]:  # fmt: skip
        """The kept candidates (normalized xyxy) as detections: per-phrase NMS, best first, ``max_det``."""
        import torch

        if self.iou < 1.0 and len(scores):
            from torchvision.ops import batched_nms

            order = batched_nms(cand, scores, labels, self.iou)
        else:
            order = torch.argsort(scores, descending=True, stable=True)
        order = order[: self.max_det]
        return [Detection(box=tuple(float(v) for v in cand[j]), label=queries[int(labels[j])], score=float(scores[j]))
                for j in order]  # fmt: skip


class OwlDetector(PhraseDetector):
    """OWLv2 / OWL-ViT zero-shot detector that looks for given phrases.

    Args:
        weights: a local model folder or a hub id present in the local Hugging Face cache
            (e.g. ``google/owlv2-base-patch16-ensemble``); ignored when ``model`` is given.
        conf: lowest score kept (0.0 keeps everything; AP evaluation wants a low value); default 0.1.
        iou: per-phrase NMS IoU threshold; 1.0 (default) disables NMS.
        max_det: detections kept per image.
        batch_size: images per forward pass (default 8).
        device: ``"auto"``, ``"cpu"``, ``"cuda:0"``...
        phrases: the fixed vocabulary used when ``detect`` gets no per-image phrases.
        label_mode: ``"argmax"`` (one phrase per box) or ``"all"`` (every box x phrase pair).
        dtype: model dtype when loading.
        cache_dir: Hugging Face cache folder to look in (default: the standard one).
        model, processor: an already built model and processor (tests, :func:`tiny_owlv2`).
    """

    def __init__(self, weights: str = "google/owlv2-base-patch16-ensemble", *args: Any, label_mode: LabelMode = "argmax",
                 **kwargs: Any) -> None:  # fmt: skip
        if label_mode not in ("argmax", "all"):
            raise ConfigError(f"label_mode must be 'argmax' or 'all', got {label_mode!r}")
        self.label_mode = label_mode
        super().__init__(weights, *args, **kwargs)
        self.padded_square = self.model.config.model_type == "owlv2" and bool(getattr(self.processor.image_processor, "do_pad", True))
        self.max_text_tokens = int(self.model.config.text_config.max_position_embeddings)

    # -- protocol ----------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        return {"conf": self.conf, "iou": self.iou, "max_det": self.max_det, "label_mode": self.label_mode,
                "phrases": self.phrases}  # fmt: skip

    # -- work ----------------------------------------------------------------------------

    def _detect_batch(self, images: list["Image.Image"], queries: list[list[str]]) -> list[list[Detection]]:
        import torch

        rgb = [im if im.mode == "RGB" else im.convert("RGB") for im in images]
        inputs = self.processor(text=queries, images=rgb, return_tensors="pt", padding="max_length",
                                truncation=True, max_length=self.max_text_tokens)  # fmt: skip
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        with torch.inference_mode():
            outputs = self.model(**inputs)
        logits = outputs.logits.float().cpu()  # (B, boxes, max queries)
        boxes = outputs.pred_boxes.float().cpu()  # (B, boxes, 4) cxcywh
        return [self._postprocess(logits[b, :, : len(q)], boxes[b], q, rgb[b].width, rgb[b].height) for b, q in enumerate(queries)]

    def _postprocess(self, logits: "torch.Tensor", boxes: "torch.Tensor", queries: list[str], width: int, height: int) -> list[Detection]:
        import torch

        xyxy = cxcywh_to_image_xyxy(boxes, width, height, self.padded_square)
        probs = logits.sigmoid()  # (boxes, queries)
        if self.label_mode == "argmax":
            scores, labels = probs.max(dim=-1)
            box_idx = torch.arange(len(scores))
        else:
            box_idx, labels = torch.meshgrid(torch.arange(probs.shape[0]), torch.arange(probs.shape[1]), indexing="ij")
            box_idx, labels, scores = box_idx.reshape(-1), labels.reshape(-1), probs.reshape(-1)
        cand = xyxy[box_idx]
        keep = (scores >= self.conf) & (cand[:, 2] > cand[:, 0]) & (cand[:, 3] > cand[:, 1])
        return self._ranked(cand[keep], scores[keep], labels[keep], queries)


def tiny_owlv2(seed: int = 0, image_size: int = 32, hidden: int = 32) -> tuple[Any, Any]:
    """A small random ``Owlv2ForObjectDetection`` and a matching processor, built in code.

    The tokenizer is :func:`gligen_eval.generation.tiny.tiny_tokenizer` (byte-level); queries are
    cut at 16 tokens, as in the real OWLv2. ``image_size // 8`` squared boxes are predicted per image.
    """
    import torch
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    from gligen_eval.generation.tiny import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    tokenizer.model_max_length = 16
    cfg = Owlv2Config(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=1,
                         num_attention_heads=4, max_position_embeddings=16, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id),
        vision_config=dict(image_size=image_size, patch_size=8, hidden_size=hidden, intermediate_size=2 * hidden,
                           num_hidden_layers=1, num_attention_heads=4),
        projection_dim=hidden,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Owlv2ForObjectDetection(cfg).eval()
        # The detection heads start with unit-variance weights, which saturates every box and score
        # at a width this small. Give them fan-in scaled weights instead, and a small last box layer,
        # so boxes stay near the per-patch prior boxes and scores spread over (0, 1).
        with torch.no_grad():
            for head in (model.class_head, model.box_head, model.objectness_head):
                for layer in head.modules():
                    if isinstance(layer, torch.nn.Linear):
                        layer.weight.normal_(0.0, layer.in_features**-0.5)
            model.box_head.dense2.weight.mul_(0.3)
    processor = Owlv2Processor(image_processor=Owlv2ImageProcessor(size={"height": image_size, "width": image_size}), tokenizer=tokenizer)
    return model, processor
