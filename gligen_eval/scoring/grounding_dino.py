"""Grounding DINO (transformers ``GroundingDinoForObjectDetection``) asked for each layout's phrases.

:class:`GroundingDinoDetector` follows the :class:`~gligen_eval.scoring.detectors.Detector`
protocol plus ``detect(images, phrases_per_image)`` (``takes_phrases = True``), like the OWLv2
detector. Each image's phrases are lower-cased and joined into one prompt, ``"a red dog. a cat."``;
each phrase owns the prompt tokens inside its characters.

Post-processing, written out here so that every step is visible:

1. ``sigmoid`` of the token logits of each query box; the box is kept when its best token reaches
   the box threshold ``conf`` (COCO-MIG: 0.25);
2. the phrase score of a box is its best token inside that phrase; the box's label is the phrase
   with the highest score, kept when that score reaches ``text_threshold`` (COCO-MIG: 0.25); the
   detection's ``score`` is that phrase score;
3. boxes (normalized cx, cy, w, h of the image) become normalized xyxy clipped to the image;
   per-phrase NMS at IoU ``iou`` (``iou >= 1`` disables it), then the ``max_det`` best.

Phrases whose tokens fall beyond the model's text length (256 tokens) cannot be found.

``prompts="categories"`` tells a runner to ask for each object's class (its category, else its
phrase) instead of the phrase: COCO-MIG asks for ``"dog"``, not ``"a red dog"``, and checks the
colour separately. It is part of the fingerprint, so detections cached for one prompt mode are
never reused for the other.

Real weights (``IDEA-Research/grounding-dino-tiny``, ``-base``) load from a local folder or the
local Hugging Face cache only, else a :class:`~gligen_eval.errors.MissingWeightsError` naming what
to fetch. :func:`tiny_grounding_dino` builds a small random model and processor for tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from gligen_eval.errors import ConfigError
from gligen_eval.records import Detection
from gligen_eval.scoring.openvocab import PhraseDetector

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image


def build_prompt(phrases: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """``"a red dog. a cat."`` and the character span of each phrase in it."""
    parts, spans, pos = [], [], 0
    for p in phrases:
        text = " ".join(p.lower().split())
        spans.append((pos, pos + len(text)))
        parts.append(text + ".")
        pos += len(text) + 2
    return " ".join(parts), spans


def phrase_token_masks(offsets: Sequence[Sequence[int]], spans: Sequence[tuple[int, int]], n_tokens: int) -> "torch.Tensor":
    """``(phrases, n_tokens)`` bool: token ``t`` belongs to phrase ``p`` when its characters lie in the phrase."""
    import torch

    mask = torch.zeros(len(spans), n_tokens, dtype=torch.bool)
    for t, (a, b) in enumerate(offsets[:n_tokens]):
        if b <= a:  # special and padding tokens
            continue
        for p, (s, e) in enumerate(spans):
            if a >= s and b <= e:
                mask[p, t] = True
    return mask


class GroundingDinoDetector(PhraseDetector):
    """Grounding DINO zero-shot detector that looks for given phrases.

    Args:
        weights: a local model folder or a hub id present in the local Hugging Face cache
            (e.g. ``IDEA-Research/grounding-dino-tiny``); ignored when ``model`` is given.
        conf: box threshold (best token score of a box); default 0.25.
        text_threshold: lowest phrase score of the label.
        prompts: ``"phrases"`` (the layout's phrases) or ``"categories"`` (the objects' classes), for the runner.
        iou: per-phrase NMS IoU; 1.0 (default) disables NMS.
        max_det: detections kept per image.
        batch_size: images per forward pass (default 4).
        device: ``"auto"``, ``"cpu"``, ``"cuda:0"``...
        phrases: the fixed vocabulary used when ``detect`` gets no per-image phrases.
        dtype: model dtype when loading.
        cache_dir: Hugging Face cache folder to look in.
        model, processor: an already built model and processor (tests, :func:`tiny_grounding_dino`).
    """

    kind_name = "Grounding DINO"
    model_types = ("grounding-dino",)
    model_class = "GroundingDinoForObjectDetection"
    default_conf = 0.25
    default_batch_size = 4

    def __init__(self, weights: str = "IDEA-Research/grounding-dino-tiny", *args: Any, text_threshold: float = 0.25,
                 prompts: str = "phrases", **kwargs: Any) -> None:  # fmt: skip
        if not 0.0 <= text_threshold <= 1.0:
            raise ConfigError(f"Grounding DINO text_threshold must be in [0, 1], got {text_threshold}")
        if prompts not in ("phrases", "categories"):
            raise ConfigError(f"Grounding DINO prompts must be 'phrases' or 'categories', got {prompts!r}")
        self.prompts = prompts
        self.text_threshold = float(text_threshold)
        super().__init__(weights, *args, **kwargs)
        self.max_text_tokens = int(self.model.config.max_text_len)

    # -- protocol ----------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        return {"conf": self.conf, "text_threshold": self.text_threshold, "iou": self.iou, "max_det": self.max_det,
                "phrases": self.phrases, "prompts": self.prompts}  # fmt: skip

    # -- work ----------------------------------------------------------------------------

    def _detect_batch(self, images: list["Image.Image"], queries: list[list[str]]) -> list[list[Detection]]:
        import torch

        rgb = [im if im.mode == "RGB" else im.convert("RGB") for im in images]
        prompts = [build_prompt(q) for q in queries]
        tok = self.processor.tokenizer([p for p, _ in prompts], padding="longest", truncation=True,
                                       max_length=self.max_text_tokens, return_offsets_mapping=True,
                                       return_tensors="pt")  # fmt: skip
        offsets = tok.pop("offset_mapping").tolist()
        pix = self.processor.image_processor(images=rgb, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in {**tok, **pix}.items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        with torch.inference_mode():
            outputs = self.model(**inputs)
        logits = outputs.logits.float().cpu()  # (B, queries, max_text_len); -inf beyond the text
        boxes = outputs.pred_boxes.float().cpu()  # (B, queries, 4) normalized cxcywh
        n_tok = int(tok["input_ids"].shape[1])
        out = []
        for b, (q, (_, spans)) in enumerate(zip(queries, prompts)):
            masks = phrase_token_masks(offsets[b], spans, n_tok)
            out.append(self._postprocess(logits[b, :, :n_tok], boxes[b], masks, q))
        return out

    def _postprocess(self, logits: "torch.Tensor", boxes: "torch.Tensor", masks: "torch.Tensor",
                     queries: list[str]) -> list[Detection]:  # fmt: skip
        import torch

        probs = logits.sigmoid()  # (boxes, tokens)
        box_score = probs.max(dim=-1).values
        per_phrase = torch.where(masks[None, :, :], probs[:, None, :], torch.zeros(())).amax(dim=-1)  # (boxes, phrases)
        if per_phrase.shape[1] == 0:
            return []
        scores, labels = per_phrase.max(dim=-1)
        cx, cy, w, h = boxes.unbind(-1)
        xyxy = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1).clamp(0.0, 1.0)
        keep = (box_score >= self.conf) & (scores >= self.text_threshold) & (scores > 0)
        keep &= (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
        return self._ranked(xyxy[keep], scores[keep], labels[keep], queries)


def tiny_bert_tokenizer() -> Any:
    """A BERT word-piece tokenizer built in code: the special tokens at BERT's ids ([CLS] 101, [SEP] 102,
    ``.`` 1012, ``?`` 1013, which Grounding DINO's phrase masks look for), letters and digits as words
    and ``##`` pieces; 1100 tokens."""
    from transformers import BertTokenizerFast

    vocab = [f"[unused{i}]" for i in range(1100)]
    vocab[0], vocab[100], vocab[101], vocab[102], vocab[103] = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
    vocab[1012], vocab[1013], vocab[1010] = ".", "?", ","
    chars = "abcdefghijklmnopqrstuvwxyz0123456789"
    for k, c in enumerate(chars):
        vocab[200 + k] = c
        vocab[300 + k] = "##" + c
    return BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True)


def tiny_grounding_dino(seed: int = 0, image_size: int = 64, d_model: int = 32, num_queries: int = 20) -> tuple[Any, Any]:
    """A small random ``GroundingDinoForObjectDetection`` and processor built in code (no files)."""
    import torch
    from transformers import (BertConfig, GroundingDinoConfig, GroundingDinoForObjectDetection, GroundingDinoImageProcessor,
                              GroundingDinoProcessor, SwinConfig)  # fmt: skip

    tokenizer = tiny_bert_tokenizer()
    backbone = SwinConfig(image_size=image_size, patch_size=4, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                          window_size=2, out_features=["stage2", "stage3", "stage4"])  # fmt: skip
    text = BertConfig(vocab_size=len(tokenizer), hidden_size=d_model, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=2 * d_model, max_position_embeddings=64)  # fmt: skip
    cfg = GroundingDinoConfig(backbone_config=backbone, text_config=text, num_queries=num_queries, encoder_layers=1,
                              decoder_layers=2, encoder_ffn_dim=2 * d_model, decoder_ffn_dim=2 * d_model, d_model=d_model,
                              encoder_attention_heads=2, decoder_attention_heads=2, num_feature_levels=3,
                              encoder_n_points=2, decoder_n_points=2, max_text_len=64, disable_custom_kernels=True)  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GroundingDinoForObjectDetection(cfg).eval()
        # Two layer-normed 32-wide vectors give dot products (the token logits) of tens, saturating
        # every score at this width; a small decoder output norm spreads the scores over (0, 1).
        with torch.no_grad():
            model.model.decoder.layer_norm.weight.mul_(0.05)
            model.model.decoder.layer_norm.bias.zero_()
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": image_size, "longest_edge": image_size})
    return model, GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer)
