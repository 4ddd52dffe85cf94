"""Run configuration: YAML + ``--set key=value`` overrides.

Every section is a dataclass; unknown keys and wrong types are a :class:`ConfigError` that
names the key. ``RunConfig()`` holds the paper-protocol defaults (SD-1.4 sized, 512 px,
50 steps); the offline demo (``gligen-eval run`` with no config) is ``configs/demo.yaml``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from gligen_eval.conditions import CONDITION_DEFAULTS, CONDITION_OPTIONS
from gligen_eval.errors import ConfigError

DEMO_CONFIG = Path(__file__).parent / "configs" / "demo.yaml"


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
    backend: Literal["pycocotools", "faster"] = "faster"
    success_iou: float = 0.5
    """An object is a hit when a same-class detection overlaps its box with at least this IoU."""
    instance_min_score: float = 0.25
    """Detections below this score are ignored for per-instance IoU, hits and mIoU (not for AP)."""
    bootstrap: int = 1000
    """Bootstrap draws (over layouts) for the ``<key>/lo`` ``<key>/hi`` intervals of mIoU, success and CLIP; 0: none."""
    bootstrap_ap: int = 200
    """Draws for the AP intervals (each draw re-accumulates COCO AP; about 0.25 s per draw at 5000 images x 80
    categories on one CPU core); 0: no AP intervals. Also 0 when ``bootstrap`` is 0."""
    bootstrap_seed: int = 0
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
    sweep: SweepConfig = field(default_factory=SweepConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------
# building from plain data


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        if len(errors) == 1:  # one real alternative (``X | None``): its own message names the key
            raise ConfigError(errors[0])
        raise ConfigError(f"config key '{key}': expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"config key '{key}': must be one of {list(args)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        inner = args[0] if args else Any
        return [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        return _build(tp, value, prefix=f"{key}.")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}': expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
    raise ConfigError(f"config key '{key}': unsupported type {_type_name(tp)}")


def _build(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(
            f"unknown config key(s): {', '.join(prefix + str(k) for k in unknown)} "
            f"(known in {prefix.rstrip('.') or 'top level'}: {', '.join(sorted(names))})"
        )
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"--set {dotted}: '{p}' is not a section")
        node = nxt
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``"sampler.steps=20"`` → ``("sampler.steps", 20)``; the value is read as YAML."""
    import yaml

    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def config_from_dict(data: Mapping[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    merged: dict[str, Any] = _deepcopy(dict(data))
    for text in overrides:
        key, value = parse_override(text)
        _set_path(merged, key, value)
    cfg = _build(RunConfig, merged)
    validate(cfg)
    return cfg


def _deepcopy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deepcopy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deepcopy(v) for v in d]
    return d


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Load a YAML config (``None``: the embedded demo config) and apply ``key=value`` overrides."""
    import yaml

    p = Path(path) if path is not None else DEMO_CONFIG
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping")
    try:
        return config_from_dict(data, overrides)
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None


def validate(cfg: RunConfig) -> None:
    s = cfg.sampler
    if s.steps < 1:
        raise ConfigError(f"config key 'sampler.steps' must be >= 1, got {s.steps}")
    if s.height % 8 or s.width % 8 or s.height <= 0 or s.width <= 0:
        raise ConfigError(f"sampler.height/width must be positive multiples of 8, got {s.height}x{s.width}")
    if s.alpha is not None and (len(s.alpha) != 3 or any(a < 0 for a in s.alpha) or abs(sum(s.alpha) - 1.0) > 1e-6):
        raise ConfigError(f"config key 'sampler.alpha' must be 3 non-negative fractions summing to 1, got {s.alpha}")
    if any(not 0.0 <= t <= 1.0 for t in cfg.sweep.tau) or len(set(cfg.sweep.tau)) != len(cfg.sweep.tau):
        raise ConfigError(f"config key 'sweep.tau' must hold distinct values in [0, 1], got {cfg.sweep.tau}")
    if not 0.0 <= s.beta <= 1.0:
        raise ConfigError(f"config key 'sampler.beta' must be in [0, 1], got {s.beta}")
    if s.batch_size < 1 or s.seeds_per_layout < 1:
        raise ConfigError("sampler.batch_size and sampler.seeds_per_layout must be >= 1")
    if not 1 <= s.max_objects <= 30:
        raise ConfigError(f"config key 'sampler.max_objects' must be in [1, 30], got {s.max_objects}")
    if cfg.layouts.limit is not None and cfg.layouts.limit < 1:
        raise ConfigError(f"config key 'layouts.limit' must be >= 1, got {cfg.layouts.limit}")
    if not 0.0 <= cfg.layouts.min_area < 1.0:
        raise ConfigError(f"config key 'layouts.min_area' must be in [0, 1), got {cfg.layouts.min_area}")
    if not 0.0 < cfg.scoring.success_iou <= 1.0:
        raise ConfigError(f"config key 'scoring.success_iou' must be in (0, 1], got {cfg.scoring.success_iou}")
    _validate_scoring(cfg)


#: Sections that only change how images are scored, never which images are generated.
SCORING_SECTIONS: tuple[str, ...] = ("detector", "scoring", "pose", "extra_detectors", "fid", "clip")


def _validate_scoring(cfg: RunConfig) -> None:
    sc = cfg.scoring
    if sc.bootstrap < 0 or sc.bootstrap_ap < 0:
        raise ConfigError(f"config keys 'scoring.bootstrap' and 'scoring.bootstrap_ap' must be >= 0 (0 disables), "
                          f"got {sc.bootstrap} and {sc.bootstrap_ap}")  # fmt: skip
    if not 0.0 < sc.ci_level < 1.0:
        raise ConfigError(f"config key 'scoring.ci_level' must be in (0, 1), got {sc.ci_level}")
    if not 0.0 <= sc.instance_min_score <= 1.0:
        raise ConfigError(f"config key 'scoring.instance_min_score' must be in [0, 1], got {sc.instance_min_score}")
    detectors = [("detector", cfg.detector)] + [(f"extra_detectors[{i}]", d) for i, d in enumerate(cfg.extra_detectors)]
    if cfg.pose is not None:
        detectors.append(("pose", cfg.pose))
    for where, d in detectors:
        if d.batch_size < 1 or d.max_det < 1:
            raise ConfigError(f"config keys '{where}.batch_size' and '{where}.max_det' must be >= 1")
        if d.name is not None and (not d.name.strip() or "/" in d.name):
            raise ConfigError(f"config key '{where}.name' must be a non-empty name without '/', got {d.name!r}")
    names = [d.name for d in cfg.extra_detectors if d.name is not None]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"config key 'extra_detectors': duplicate name(s) {', '.join(dup)}")
    f = cfg.fid
    if f.batch_size < 1 or f.kid_subsets < 1 or f.kid_subset_size < 2:
        raise ConfigError("config keys 'fid.batch_size' and 'fid.kid_subsets' must be >= 1 and 'fid.kid_subset_size' >= 2")
    if f.enabled:
        from gligen_eval.scoring.quality import ResizePolicy

        try:
            ResizePolicy.parse(f.resize)
        except ConfigError as e:
            raise ConfigError(f"config key 'fid.resize': {e}") from None
    c = cfg.clip
    if not c.weight > 0 or c.batch_size < 1:
        raise ConfigError(f"config keys 'clip.weight' must be > 0 and 'clip.batch_size' >= 1, got {c.weight}, {c.batch_size}")
    if not c.model.strip():
        raise ConfigError("config key 'clip.model' must name a model ('tiny', a local folder or a hub id)")
