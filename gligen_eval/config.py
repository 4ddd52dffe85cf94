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


@dataclass
class SamplerConfig:
    steps: int = 50
    guidance_scale: float = 7.5
    height: int = 512
    width: int = 512
    scheduler: Literal["pndm", "ddim", "euler", "dpm"] = "pndm"
    schedule: Literal["alpha", "beta"] = "alpha"
    """``alpha``: the official [p1, p2, p3] schedule; ``beta``: the diffusers hard cut."""
    alpha: list[float] = field(default_factory=lambda: [0.3, 0.0, 0.7])
    beta: float = 0.3
    negative_prompt: str = ""
    batch_size: int = 8
    seeds_per_layout: int = 1
    base_seed: int = 0
    max_objects: int = 30


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


@dataclass
class ScoringConfig:
    backend: Literal["pycocotools", "faster"] = "faster"
    success_iou: float = 0.5
    """An object is a hit when a same-class detection overlaps its box with at least this IoU."""
    instance_min_score: float = 0.25
    """Detections below this score are ignored for per-instance IoU, hits and mIoU (not for AP)."""


@dataclass
class RunConfig:
    name: str = "run"
    out: str | None = None
    """Run directory; default ``runs/<name>``."""
    device: str = "auto"
    layouts: LayoutsConfig = field(default_factory=LayoutsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)

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
    if len(s.alpha) != 3 or any(a < 0 for a in s.alpha) or abs(sum(s.alpha) - 1.0) > 1e-6:
        raise ConfigError(f"config key 'sampler.alpha' must be 3 non-negative fractions summing to 1, got {s.alpha}")
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
