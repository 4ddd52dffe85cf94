"""Depth, surface normals and ADE20K segmentation from pretrained models (transformers, diffusers).

* depth: any transformers depth-estimation model (``AutoModelForDepthEstimation``: DPT / MiDaS,
  Depth Anything, ...). Relative models predict disparity (near = large) and are used as is;
  metric ones (``depth_estimation_type: metric``, ZoeDepth, DepthPro) are inverted first. The
  prediction is brought to the image size by the processor's own post-processing (bicubic) and
  min-max normalized per image, ``* 255``,
  truncated to uint8, as the MiDaS annotator writes its maps: near = bright.
* normal: a diffusers Marigold normals pipeline (``MarigoldNormalsPipeline``; one ensemble member,
  its default steps and resolution, generator seeded 0); ``(n * 0.5 + 0.5) * 255``.
* sem: an ADE20K semantic segmenter (``AutoModelForSemanticSegmentation``: SegFormer, UperNet,
  Mask2Former ...; 150 labels in ADE20K order), its processor's semantic post-processing at the
  image size (long side at most :data:`SEM_WORK_SIDE`, then NEAREST), class ``c`` → label ``c + 1``
  (0 stays "other").

A model reference is a local folder or a hub id already in the local cache (``local_files_only``:
never downloaded); ``tiny`` builds a small seeded random model (tests). Weight files are read
by the libraries' safetensors / ``weights_only`` loaders; remote code is never trusted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from gligen_eval.errors import InputError, MissingWeightsError

_METRIC_TYPES = ("zoedepth", "depth_pro")
CHUNK = 8
SEM_WORK_SIDE = 1024
"""Class scores are upsampled to at most this long side, the labels then NEAREST to the image size."""


def _missing(what: str, ref: str, key: str) -> MissingWeightsError:
    return MissingWeightsError(
        f"{what} {ref!r} is neither a local folder nor in the local Hugging Face cache; fetch it with "
        f"`hf download {ref}` or point grounding.{key} at a local folder (hub look-ups are offline)"
    )


def _from_pretrained(what: str, key: str, ref: str, loaders: Sequence[Callable[..., Any]]) -> list[Any]:
    p = Path(ref).expanduser()
    looks_local = p.is_absolute() or ref.startswith((".", "~")) or ref.count("/") > 1
    if looks_local and not p.is_dir():
        raise MissingWeightsError(f"{what} folder not found: {p} (set grounding.{key} to a model folder or a cached hub id)")
    if p.is_dir():
        from gligen_eval.safeload import check_model_folder

        check_model_folder(p)  # no weights pickle beyond tensors, whatever the library's own loader does
        try:
            return [load(str(p), local_files_only=True) for load in loaders]
        except (OSError, ValueError) as e:
            raise InputError(f"cannot load the {what}: {' '.join(str(e).split())[:300]}", path=str(p)) from None
    try:
        return [load(ref, local_files_only=True) for load in loaders]
    except (OSError, ValueError):
        raise _missing(what, ref, key) from None


def _chunks(images: Sequence[np.ndarray]):
    """Runs of at most :data:`CHUNK` consecutive images of one size (one batch each)."""
    i = 0
    while i < len(images):
        j = i + 1
        while j < len(images) and j - i < CHUNK and images[j].shape == images[i].shape:
            j += 1
        yield list(images[i:j])
        i = j


def _seeded(seed: int, build: Callable[[], Any]) -> Any:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


# --------------------------------------------------------------------------------------------
# depth


def load_depth(ref: str) -> tuple[Any, Any]:
    """``(processor, model)`` of ``depth_model``."""
    if ref == "tiny":
        return tiny_depth()
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    proc, model = _from_pretrained("depth model", "depth_model", ref,
                                   [AutoImageProcessor.from_pretrained, AutoModelForDepthEstimation.from_pretrained])  # fmt: skip
    return proc, model.eval()


def tiny_depth(seed: int = 0) -> tuple[Any, Any]:
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    cfg = DPTConfig(hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32, image_size=32,
                    patch_size=8, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 8, 8, 8],
                    reassemble_factors=[4, 2, 1, 0.5], fusion_hidden_size=8, head_in_index=-1)  # fmt: skip
    model = _seeded(seed, lambda: DPTForDepthEstimation(cfg)).eval()
    proc = DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False, ensure_multiple_of=1)
    return proc, model


@torch.no_grad()
def estimate_depth(bundle: tuple[Any, Any], images: Sequence[np.ndarray], device: str) -> list[np.ndarray]:
    proc, model = bundle
    model = model.to(device)
    metric = getattr(model.config, "depth_estimation_type", None) == "metric" or model.config.model_type in _METRIC_TYPES
    out = []
    for chunk in _chunks(images):
        h, w = chunk[0].shape[:2]
        inputs = proc(images=chunk, return_tensors="pt").to(device)
        outputs = model(**inputs)
        post = getattr(proc, "post_process_depth_estimation", None)  # undoes the processor's padding, if any
        if post is not None:
            pred = torch.stack([r["predicted_depth"].reshape(h, w) for r in post(outputs, target_sizes=[(h, w)] * len(chunk))])
        else:
            pred = F.interpolate(outputs.predicted_depth[:, None], size=(h, w), mode="bicubic", align_corners=False)[:, 0]
        pred = pred.float()
        if metric:
            pred = 1.0 / pred.clamp(min=1e-6)
        for d in pred:
            d = d - d.min()
            d = d / d.max().clamp(min=1e-12)
            out.append((d * 255.0).clamp(0, 255).cpu().numpy().astype(np.uint8))
    return out


# --------------------------------------------------------------------------------------------
# sem


def load_segmenter(ref: str) -> tuple[Any, Any]:
    """``(processor, model)`` of ``sem_model``; refuses models that do not predict the ADE20K classes."""
    if ref == "tiny":
        return tiny_segmenter()
    from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

    loaders = [AutoImageProcessor.from_pretrained, AutoModelForSemanticSegmentation.from_pretrained]
    proc, model = _from_pretrained("sem model", "sem_model", ref, loaders)
    n = model.config.num_labels
    first = str((model.config.id2label or {}).get(0, "wall")).lower()
    if n != 150 or not (first.startswith("wall") or first.startswith("label_")):
        raise InputError(f"a sem extractor must predict the 150 ADE20K classes in ADE20K order (label 0 'wall'); "
                         f"this one has {n} labels, the first {first!r}", path=ref)  # fmt: skip
    return proc, model.eval()


def tiny_segmenter(seed: int = 0) -> tuple[Any, Any]:
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    cfg = SegformerConfig(num_labels=150, depths=[1, 1, 1, 1], hidden_sizes=[8, 8, 16, 16], num_attention_heads=[1, 1, 1, 1],
                          decoder_hidden_size=16, mlp_ratios=[2, 2, 2, 2])  # fmt: skip
    model = _seeded(seed, lambda: SegformerForSemanticSegmentation(cfg)).eval()
    proc = SegformerImageProcessor(size={"height": 32, "width": 32})
    return proc, model


@torch.no_grad()
def segment_ade20k(bundle: tuple[Any, Any], images: Sequence[np.ndarray], device: str) -> list[np.ndarray]:
    proc, model = bundle
    model = model.to(device)
    out = []
    from PIL import Image

    out = []
    for chunk in _chunks(images):
        h, w = chunk[0].shape[:2]
        scale = min(1.0, SEM_WORK_SIDE / max(h, w))  # 150 class scores per pixel: upsample to a bounded size
        wh, ww = max(1, round(h * scale)), max(1, round(w * scale))
        inputs = proc(images=chunk, return_tensors="pt").to(device)
        seg = proc.post_process_semantic_segmentation(model(**inputs), target_sizes=[(wh, ww)] * len(chunk))
        for s in seg:
            labels = (s.cpu().numpy().astype(np.int64) + 1).clip(0, 150).astype(np.uint8)
            if (wh, ww) != (h, w):
                labels = np.asarray(Image.fromarray(labels).resize((w, h), Image.NEAREST))
            out.append(labels)
    return out


# --------------------------------------------------------------------------------------------
# normal


def load_normals(ref: str) -> Any:
    """The Marigold normals pipeline of ``normal_model``."""
    if ref == "tiny":
        return tiny_normals()
    from diffusers import MarigoldNormalsPipeline

    (pipe,) = _from_pretrained("normal model", "normal_model", ref, [MarigoldNormalsPipeline.from_pretrained])
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_normals(seed: int = 0) -> Any:
    from diffusers import AutoencoderKL, DDIMScheduler, MarigoldNormalsPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from gligen_eval.generation.tiny import tiny_tokenizer

    tok = tiny_tokenizer()

    def build() -> tuple[Any, Any, Any]:
        unet = UNet2DConditionModel(sample_size=16, in_channels=8, out_channels=4, layers_per_block=1,
                                    block_out_channels=(8, 16), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16,
                                    norm_num_groups=4, attention_head_dim=2)  # fmt: skip
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8), norm_num_groups=4,
                            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)  # fmt: skip
        text = CLIPTextModel(CLIPTextConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                            vocab_size=len(tok), max_position_embeddings=77,
                                            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                            pad_token_id=tok.pad_token_id))  # fmt: skip
        return unet, vae, text

    unet, vae, text = _seeded(seed, build)
    sched = DDIMScheduler(num_train_timesteps=1000, prediction_type="v_prediction", timestep_spacing="trailing",
                          beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                          set_alpha_to_one=False)  # fmt: skip
    pipe = MarigoldNormalsPipeline(unet=unet.eval(), vae=vae.eval(), scheduler=sched, text_encoder=text.eval(),
                                   tokenizer=tok, prediction_type="normals", default_denoising_steps=1,
                                   default_processing_resolution=32)  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def estimate_normals(pipe: Any, images: Sequence[np.ndarray], device: str) -> list[np.ndarray]:
    from PIL import Image

    pipe = pipe.to(device)
    out = []
    for rgb in images:
        gen = torch.Generator(device=device).manual_seed(0)
        pred = pipe(Image.fromarray(rgb), ensemble_size=1, generator=gen, output_type="np").prediction
        n = np.asarray(pred, dtype=np.float32).reshape(rgb.shape[0], rgb.shape[1], 3)
        out.append(np.round((n.clip(-1, 1) * 0.5 + 0.5) * 255.0).astype(np.uint8))
    return out
