"""Run configuration: YAML + ``--set key=value`` overrides.

Every section is a dataclass (here); unknown keys and wrong types are a :class:`ConfigError` that
names the key. ``RunConfig()`` holds the paper-protocol defaults (SD-1.4 sized, 512 px,
50 steps); the offline demo (``gligen-eval run`` with no config) is ``configs/demo.yaml``.
Reading YAML and overrides into these dataclasses is :mod:`gligen_eval.config_loading`; the checks
across keys are :mod:`gligen_eval.config_validation`. Every name is importable from here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from gligen_eval.conditions import CONDITION_DEFAULTS, CONDITION_OPTIONS


@dataclass
class LayoutsConfig:
    source: str = "sample"
    """``sample`` (bundled), a COCO ``instances_*.json``, or another supported layout file."""
    captions: str | None = None
    """COCO ``captions_*.json`` paired with ``source`` (optional)."""
    limit: int | None = None
    """Keep at most this many layouts (deterministic subsample by ``seed``)."""
    seed: int = 0
    max_objects: int = 30
    min_area: float = 0.0
    """Drop objects whose box covers less than this fraction of the image."""
    skip_crowd: bool = True
    images_dir: str | None = None
    """Folder of the real images of the layouts (for the real-image ceiling)."""


@dataclass
class ModelConfig:
    name: str = "tiny"
    """``tiny`` (random, built in code), a diffusers folder, a hub id, or an official GLIGEN ``.bin``."""
    device: str = "auto"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    tiny_seed: int = 0
    base: str | None = None
    """Base model for official checkpoints that only hold the UNet (e.g. a SD-1.4 diffusers folder)."""
    adapter: str | None = None
    """An adapter file (gated layers + position net, ``.safetensors``) plugged into ``name``'s UNet; ``name``
    may then be a plain Stable Diffusion folder."""
    attention: Literal["sdpa", "classic"] = "sdpa"
    """``sdpa``: PyTorch's fused attention kernel; ``classic``: explicit softmax(QKᵀ)V."""
    channels_last: bool = False
    compile: bool = False
    """``torch.compile`` the UNet (worth it for long runs on a GPU; the first batch pays the compile)."""
    modality: str | None = None
    """``text-box``, ``text-image-box``, ``keypoint``, ``inpaint-text-box``, ``inpaint-text-image-box``:
    which tiny model to build; for real checkpoints it is detected from the weights and checked."""


@dataclass
class SamplerConfig:
    steps: int = 50
    guidance_scale: float = 7.5
    height: int = 512
    width: int = 512
    scheduler: Literal["pndm", "ddim", "euler", "dpm"] = "pndm"
    schedule: Literal["alpha", "beta"] = "alpha"
    """``alpha``: the official [p1, p2, p3] schedule; ``beta``: the diffusers hard cut."""
    alpha: list[float] | None = None
    """``[p1, p2, p3]``; default: the official schedule of the model's modality (box and keypoint
    [0.3, 0, 0.7], image [1, 0, 0]); inpainting always runs at scale 1."""
    beta: float = 0.3
    negative_prompt: str = ""
    batch_size: int = 8
    seeds_per_layout: int = 1
    base_seed: int = 0
    max_objects: int = 30
    write_overlap: bool = True
    """Encode and write the PNGs on a background thread while the next batch generates (``false``: after
    each batch, in the generating thread; the images and rows are the same)."""


@dataclass
class GroundingConfig:
    """Where image grounding and inpainting get their images (``auto``: the layout's own images for
    real models, drawn ones for the tiny offline model, whose sample layouts have no photos), and where
    spatial models get their condition maps (:mod:`gligen_eval.conditions`)."""

    reference_images: Literal["auto", "given", "crop", "synthetic"] = "auto"
    """Text+image: ``given`` (each object's ``reference_image``), ``crop`` (its box in the layout's
    image), ``synthetic`` (a drawn stand-in, offline smoke runs only)."""
    style_image: str | None = None
    """Text+image: an image-only "style" grounding token added to every layout."""
    input_images: Literal["auto", "layout", "synthetic"] = "auto"
    """Inpainting: ``layout`` (the layout's real image, ``layouts.images_dir``) or ``synthetic``."""
    paste_known: bool = False
    """Inpainting: put the input's latent back outside the boxes after the last step."""
    map: Literal["auto", "given", "extract", "synthetic"] = CONDITION_DEFAULTS["map"]
    """Spatial models (hed, canny, depth, normal, sem): where each layout's condition map comes from: ``given``
    (``map_dir`` or the layout's own map), ``extract`` (from its real image), ``synthetic`` (drawn from the boxes,
    offline smoke runs), ``auto`` (given, else extracted, else drawn for the bundled sample)."""
    map_dir: str | None = CONDITION_DEFAULTS["map_dir"]
    """Spatial: a folder of given maps named by layout id or by the layout's image/map file name."""
    canny_low: int = CONDITION_DEFAULTS["canny_low"]
    """Canny extraction: ``cv2.Canny`` thresholds (100/200 as the training maps were made)."""
    canny_high: int = CONDITION_DEFAULTS["canny_high"]
    hed_weights: str | None = CONDITION_DEFAULTS["hed_weights"]
    """HED extraction: a HED state dict file (original ``network-bsds500.pth`` or ControlNet's ``ControlNetHED.pth``);
    ``tiny``: random, tests only."""
    depth_model: str = CONDITION_DEFAULTS["depth_model"]
    """Depth extraction: a transformers depth-estimation model (local folder or cached hub id); ``tiny``: random."""
    normal_model: str = CONDITION_DEFAULTS["normal_model"]
    """Normal extraction: a diffusers Marigold normals pipeline (local folder or cached hub id); ``tiny``: random."""
    sem_model: str = CONDITION_DEFAULTS["sem_model"]
    """Sem extraction: a transformers ADE20K segmenter (SegFormer / UperNet / Mask2Former); ``tiny``: random."""
    extract_device: str = CONDITION_DEFAULTS["extract_device"]
    """Where the extractors run (``auto``: CUDA when present)."""

    def options(self) -> dict[str, Any]:
        """The grounding-tokenizer options that are set (``auto`` leaves the model's default)."""
        out: dict[str, Any] = {}
        if self.reference_images != "auto":
            out["reference_images"] = self.reference_images
        if self.style_image is not None:
            out["style_image"] = self.style_image
        if self.input_images != "auto":
            out["input_images"] = self.input_images
        if self.paste_known:
            out["paste_known"] = True
        for key in CONDITION_OPTIONS:  # the condition-map options that differ from their defaults
            if getattr(self, key) != CONDITION_DEFAULTS[key]:
                out[key] = getattr(self, key)
        return out


@dataclass
class DetectorConfig:
    kind: str = "yolo"
    """``yolo``, ``yolo-pose``, or a ``module:Class`` implementing the Detector protocol."""
    weights: str = "yolov8x.pt"
    """An ultralytics ``.pt`` checkpoint, or a ``.yaml`` model definition (random weights)."""
    conf: float = 0.001
    """Detection confidence floor; low (0.001) because COCO AP integrates over all scores."""
    iou: float = 0.6
    imgsz: int = 640
    max_det: int = 100
    batch_size: int = 16
    kpt_conf: float = 0.5
    """Pose models: a keypoint counts as present at or above this confidence."""
    text_threshold: float = 0.25
    """Grounding DINO: lowest phrase score of a box's label (its box threshold is ``conf``)."""
    prompts: Literal["phrases", "categories"] = "phrases"
    """Grounding DINO: ask for the layout's phrases or for the objects' classes (COCO-MIG asks for ``dog``,
    not ``a red dog``)."""
    label_mode: Literal["argmax", "all"] = "argmax"
    """Open-vocabulary detectors: one phrase per box (``argmax``) or every box x phrase pair (``all``)."""
    name: str | None = None
    """Label in metric keys (``box@<name>/AP``, ``agreement/<name>``); default: the detector's own name."""


@dataclass
class PoseConfig(DetectorConfig):
    """The pose model for keypoint AP (a :class:`DetectorConfig` with pose defaults)."""

    kind: str = "yolo-pose"
    weights: str = "yolov8x-pose.pt"


@dataclass
class ScoringConfig:
    backend: Literal["hotcoco", "pycocotools", "faster"] = "hotcoco"
    success_iou: float = 0.5
    """An object is a hit when a same-class detection overlaps its box with at least this IoU."""
    instance_min_score: float = 0.25
    """Detections below this score are ignored for per-instance IoU, hits and mIoU (not for AP)."""
    bootstrap: int = 1000
    """Bootstrap draws (over layouts) for the ``<key>/lo`` ``<key>/hi`` intervals of mIoU, success and CLIP; 0: none."""
    bootstrap_ap: int = 1000
    """Draws for the AP intervals (each draw re-accumulates the per-image COCO matches: about 15 ms per draw at
    5000 images on one CPU core, 15 s for 1000 draws with the set-up); 0: no AP intervals. Also 0 when
    ``bootstrap`` is 0."""
    bootstrap_seed: int = 0
    error_analysis: bool = False
    """TIDE-style ΔAP50 per box error type (``box/tide/{cls,loc,both,dupl,bkg,miss}``) and the area under
    AP over IoU thresholds 0.05..0.95 (``box/AP_iou_auc``); not for LVIS layouts."""
    ci_level: float = 0.95
    """Confidence level of the intervals."""
    real_images: bool = False
    """Also run the detector (and pose model) on the layouts' real images (``layouts.images_dir``) and report
    ``box/real/*`` and ``box/AP_ratio`` = generated AP / real AP (the real-image ceiling)."""


@dataclass
class FidConfig:
    enabled: bool = False
    reference: str | None = None
    """Folder of real images (searched recursively); default: the layouts' real images (``layouts.images_dir``)."""
    feature: Literal["inception", "tiny"] = "inception"
    """``inception``: torch-fidelity's FID Inception v3 (2048 features, local weights file); ``tiny``: a small
    seeded random conv net built in code, for offline smoke runs only (its numbers are not FID)."""
    inception_weights: str | None = None
    """Path of ``weights-inception-2015-12-05-6726825d.pth``; default ``$TORCH_HOME/hub/checkpoints/``."""
    resize: str = "center-crop-then-resize-bicubic-299"
    """Resize policy applied to real and generated images alike (see ``scoring.quality.ResizePolicy``)."""
    batch_size: int = 32
    kid: bool = True
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    seed: int = 0
    """Seed of KID's subsets and of the ``tiny`` feature net."""
    cache_dir: str | None = None
    """Where reference statistics are cached; default ``$GLIGEN_EVAL_FID_CACHE`` or ``~/.cache/gligen-eval/fid``."""


@dataclass
class ClipConfig:
    enabled: bool = False
    model: str = "openai/clip-vit-base-patch32"
    """``tiny`` (random, built in code; offline smoke runs), a local folder, or a hub id in the local HF cache."""
    weight: float = 100.0
    """Scale ``w`` of ``w * max(cos, 0)``: 100 (the usual CLIP score) or 2.5 (CLIP-S)."""
    crop: Literal["tight", "pad-square"] = "tight"
    batch_size: int = 32
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    seed: int = 0
    """Seed of the ``tiny`` model."""


@dataclass
class FdDinov2Config:
    enabled: bool = False
    model: str = "facebook/dinov2-large"
    """DINOv2 ViT-L/14 (Stein et al. 2023): ``tiny`` (random, built in code), a local folder, or a hub id in the local HF cache."""
    batch_size: int = 32
    resize: str | None = None
    """Resize policy (``scoring.quality.ResizePolicy``); default ``resize-bicubic-224`` (``tiny``: 32)."""


@dataclass
class CmmdConfig:
    enabled: bool = False
    model: str = "openai/clip-vit-large-patch14-336"
    """CLIP ViT-L/14 at 336 px (Jayasumana et al. 2024): ``tiny``, a local folder, or a hub id in the local HF cache."""
    batch_size: int = 32
    resize: str | None = None
    """Resize policy; default ``resize-bicubic-<the processor's crop size>``."""
    sigma: float = 10.0
    unbiased: bool = True
    """The unbiased MMD estimator; ``false`` keeps the i == j terms as the authors' reference code does."""


@dataclass
class PrdcConfig:
    enabled: bool = False
    features: Literal["dinov2", "clip"] = "dinov2"
    """Which features the k-NN balls live in (shared with ``fd_dinov2`` / ``cmmd`` when the model is the same)."""
    model: str | None = None
    """Default: ``quality.fd_dinov2.model`` (``features: dinov2``) or ``quality.cmmd.model`` (``clip``)."""
    batch_size: int = 32
    k: int = 5


@dataclass
class PickScoreConfig:
    enabled: bool = False
    model: str = "yuvalkirstain/PickScore_v1"
    """A CLIP model (``tiny``, a local folder, or a hub id in the local HF cache)."""
    processor: str | None = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
    """Where the processor (tokenizer + image processor) comes from; ``null``: from ``model``."""
    batch_size: int = 16
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"


@dataclass
class QualityConfig:
    """Image-quality metrics beyond FID; their real images are FID's (``fid.reference`` or the layouts' images)."""

    fd_dinov2: FdDinov2Config = field(default_factory=FdDinov2Config)
    cmmd: CmmdConfig = field(default_factory=CmmdConfig)
    prdc: PrdcConfig = field(default_factory=PrdcConfig)
    pickscore: PickScoreConfig = field(default_factory=PickScoreConfig)
    cache_dir: str | None = None
    """Where reference features are cached; default FID's cache folder."""
    seed: int = 0
    """Seed of the ``tiny`` models."""


@dataclass
class CompConfig:
    """Compositional checks on the detector's detections (:mod:`gligen_eval.scoring.compositional`)."""

    enabled: bool = False
    """Counts, spatial relations and colours: ``comp/count_acc`` ``comp/count_f1`` ``comp/relation_acc``
    ``comp/color_acc_hsv`` ``comp/color_acc_clip``."""
    margin: float = 0.05
    """Two layout boxes imply a relation when their centres differ by more than this fraction of the image."""
    min_score: float | None = None
    """Detections counted as present at or above this score; default ``scoring.instance_min_score``."""
    hsv_min_share: float = 0.2
    """A colour passes the HSV check when at least this share of the box's pixels is in its range (COCO-MIG)."""
    colors: list[str] = field(default_factory=lambda: ["red", "yellow", "green", "blue", "white", "black", "brown",
                                                       "pink", "purple", "orange", "gray"])  # fmt: skip
    """Colour vocabulary of the CLIP zero-shot check (and the colour words looked for in phrases)."""
    clip: bool = True
    """Also check colours by CLIP zero-shot (``comp/color_acc_clip``)."""
    clip_model: str | None = None
    """CLIP model of the colour check; default ``clip.model`` (``tiny`` for offline smoke runs)."""
    mig: bool = False
    """COCO-MIG instance success and mIoU per level (``mig/ISR`` ``mig/mIoU`` ``mig/L{2..6}/*``)."""
    mig_iou: float = 0.5


@dataclass
class SweepConfig:
    tau: list[float] = field(default_factory=list)
    """Scheduled-sampling sweep: one sub-run per τ over the same layouts and seeds (empty: no sweep).
    τ is ``beta`` for the hard cut and the full-grounding fraction ``p1`` of ``alpha = [τ, 0, 1 - τ]``."""


@dataclass
class RunConfig:
    name: str = "run"
    out: str | None = None
    """Run directory; default ``runs/<name>``."""
    device: str = "auto"
    layouts: LayoutsConfig = field(default_factory=LayoutsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    grounding: GroundingConfig = field(default_factory=GroundingConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    pose: PoseConfig | None = None
    """Pose model for keypoint AP on layouts whose persons carry keypoints (``kp/*``); none by default."""
    extra_detectors: list[DetectorConfig] = field(default_factory=list)
    """More detectors scored side by side (``box@<name>/*``) with their agreement with ``detector``."""
    fid: FidConfig = field(default_factory=FidConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    """FD-DINOv2, CMMD, precision/recall/density/coverage, PickScore (all off by default)."""
    comp: CompConfig = field(default_factory=CompConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    scorers: dict[str, Any] = field(default_factory=dict)
    """More scorers, by name (a built-in scorer without a section of its own) or ``"package.module:Class"``
    (a :class:`~gligen_eval.scoring.protocol.Scorer` subclass), each with its options (a mapping, or null)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: Sections that only change how images are scored, never which images are generated.
SCORING_SECTIONS: tuple[str, ...] = ("detector", "scoring", "pose", "extra_detectors", "fid", "clip", "quality", "comp",
                                     "scorers")


# (after the sections: these modules read them lazily, so importing either first works too)
from gligen_eval.config_loading import DEMO_CONFIG, config_from_dict, load_config, parse_override  # noqa: E402
from gligen_eval.config_validation import comp_options, validate  # noqa: E402

__all__ = [
    "DEMO_CONFIG", "SCORING_SECTIONS", "ClipConfig", "CmmdConfig", "CompConfig", "DetectorConfig", "FdDinov2Config",
    "FidConfig", "GroundingConfig", "LayoutsConfig", "ModelConfig", "PickScoreConfig", "PoseConfig", "PrdcConfig",
    "QualityConfig", "RunConfig", "SamplerConfig", "ScoringConfig", "SweepConfig", "comp_options", "config_from_dict",
    "load_config", "parse_override", "validate",
]  # fmt: skip
