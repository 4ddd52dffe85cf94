"""Detectors that look at generated images.

One protocol, :class:`Detector`: ``detect(images)`` takes a list of PIL images and returns, per
image, a list of :class:`~gligen_eval.records.Detection` with normalized xyxy boxes, ``label``
= class name and ``score``. Implementations:

* :class:`YoloDetector` -- ultralytics YOLO, from any local ``.pt`` checkpoint or a ``.yaml`` model
  definition (random weights, seeded, for tests and the offline demo);
* :class:`YoloPoseDetector` -- ultralytics ``*-pose`` models; detections carry 17 COCO keypoints.

Backends are found through a lazy registry (``kind -> "module:Class"``): the library behind a
detector is imported only when that detector is built. Add one with :func:`register_detector`,
or name ``"package.module:Class"`` directly as the kind.

A ``.pt`` checkpoint is read by :mod:`gligen_eval.safeload` (``weights_only=True``, an allow-list of
torch/ultralytics module classes that are rebuilt but never called) and handed to ultralytics,
which never unpickles the file itself; anything else in the file is refused with a one-line
:class:`InputError`; so is a ``.yaml`` definition that building would run as code. ultralytics never downloads here: a missing ``.pt`` file is a :class:`MissingWeightsError`, and
``YOLO_OFFLINE=1`` plus an isolated ``YOLO_CONFIG_DIR`` are set (when unset) before it is imported.
Its log lines go to stderr, so that ``--json`` output on stdout stays clean.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import sys
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

from gligen_eval.devices import resolve_device
from gligen_eval.errors import ConfigError, InputError, MissingWeightsError
from gligen_eval.hashing import file_sha256
from gligen_eval.records import Detection, stable_hash
from gligen_eval.registry import Registry
from gligen_eval.scoring.coco import COCO80_NAMES


@runtime_checkable
class Detector(Protocol):
    """What the runner needs from a detector."""

    name: str

    def fingerprint(self) -> str:
        """Stable id of weights + settings; cached detections are keyed by it."""
        ...

    def detect(self, images: list[Any]) -> list[list[Detection]]:
        """One list of detections (normalized xyxy boxes) per PIL image."""
        ...


# --------------------------------------------------------------------------------------------
# registry

DETECTORS = Registry("detector kind", {
    "yolo": "gligen_eval.scoring.detectors:YoloDetector",
    "yolo-pose": "gligen_eval.scoring.detectors:YoloPoseDetector",
    "owlv2": "gligen_eval.scoring.openvocab:OwlDetector",
    "grounding-dino": "gligen_eval.scoring.grounding_dino:GroundingDinoDetector",
    "file": "gligen_eval.scoring.filedet:FileDetector",
})  # fmt: skip


def register_detector(kind: str, target: str) -> None:
    """Make ``kind`` build ``target`` (``"package.module:Class"``); the module is imported on use."""
    DETECTORS.register(kind, target)


def detector_kinds() -> list[str]:
    return DETECTORS.names()


def resolve_detector(kind: str) -> type:
    """The detector class for a registered kind or a ``"module:Class"`` path."""
    return DETECTORS.resolve(kind)


def _keywords(cls: type) -> tuple[set[str], bool]:
    """The keyword arguments ``cls(...)`` takes, following ``**kwargs`` that a constructor hands on to
    its base class's; and whether it takes any keyword at all (``**kwargs`` reaching ``object``)."""
    names: set[str] = set()
    passed_on = False
    for klass in cls.__mro__[:-1]:  # object's own constructor takes nothing
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self"}
        passed_on = any(p.kind is p.VAR_KEYWORD for p in params)
        if not passed_on:
            return names, False
    return names, passed_on


def build_detector(cfg: Any, *, device: str = "auto", **overrides: Any) -> Detector:
    """Build the detector described by ``cfg`` (a :class:`~gligen_eval.config.DetectorConfig` or a mapping).

    The config's fields that the detector's constructor accepts are passed on, then ``device`` and
    ``overrides``. ``kind`` picks the class through the registry.
    """
    data: dict[str, Any] = asdict(cfg) if is_dataclass(cfg) else dict(cfg)
    kind = data.pop("kind", "yolo")
    cls = resolve_detector(kind)
    params, takes_any = _keywords(cls)
    kwargs = {k: v for k, v in data.items() if takes_any or k in params}
    if takes_any or "device" in params:
        kwargs["device"] = device
    kwargs.update(overrides)
    return cls(**kwargs)


# --------------------------------------------------------------------------------------------
# ultralytics


def _default_yolo_config_dir() -> str:
    root = os.environ.get("GLIGEN_EVAL_VENV_ROOT") or str(Path.home() / ".cache" / "gligen-eval")
    return str(Path(root) / "ultralytics-config")


def _import_yolo() -> Any:
    """``ultralytics.YOLO``, imported offline, with its log lines routed to stderr."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")  # ultralytics must never pip-install at run time
    os.environ.setdefault("YOLO_CONFIG_DIR", _default_yolo_config_dir())
    Path(os.environ["YOLO_CONFIG_DIR"]).mkdir(parents=True, exist_ok=True)
    with contextlib.redirect_stdout(sys.stderr):
        from ultralytics import YOLO
    for h in logging.getLogger("ultralytics").handlers:
        if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) in (sys.stdout, sys.__stdout__):
            h.setStream(sys.stderr)
    return YOLO


@contextlib.contextmanager
def torch_threads_kept():
    """Put torch's intra-op thread count back after ultralytics code.

    ultralytics' predictor sets it (to 1 on a CPU). What runs next (the next τ of a sweep, the next
    run in the same process) would otherwise sum floats in another order and differ from a fresh
    process by a uint8 level here and there.
    """
    import torch

    threads = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def _load_yolo_checkpoint(YOLO: Any, path: Path) -> Any:
    """``YOLO(path)`` without letting ultralytics unpickle the file: it is read first by
    :func:`~gligen_eval.safeload.read_ultralytics_checkpoint` (``weights_only=True``, torch/ultralytics
    module classes only), then that object is handed over; anything else is a one-line :class:`InputError`."""
    from gligen_eval.safeload import read_ultralytics_checkpoint, torch_load_returns

    ckpt = read_ultralytics_checkpoint(path)
    try:
        with torch_load_returns(path, ckpt) as calls, contextlib.redirect_stdout(sys.stderr):
            model = YOLO(str(path), verbose=False)
    except (TypeError, AttributeError, KeyError, ValueError, SyntaxError, RuntimeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise InputError(f"ultralytics cannot use this checkpoint ({first})", path=str(path)) from None
    if len(calls) != 1:
        raise InputError("ultralytics did not take the checkpoint read safely; refusing to use it", path=str(path))
    return model


def check_yolo_weights(weights: str, *, read: bool = False) -> Path | None:
    """Check YOLO ``weights`` without building a model: a ``.yaml`` definition must be readable and
    must not run code when built; a ``.pt`` file must exist. ``read``: also check the checkpoint's
    pickle against the allow-list (its tensors are not read). Returns the resolved ``.pt`` path, or
    ``None`` for a definition (random weights)."""
    if weights.endswith((".yaml", ".yml")):
        _check_yolo_definition(weights)
        return None
    path = Path(weights).expanduser()
    if path.suffix != ".pt":
        raise ConfigError(f"detector weights must be an ultralytics .pt checkpoint or a .yaml model definition, got {weights!r}")
    if not path.is_file():
        raise MissingWeightsError(
            f"detector weights {weights!r} not found at {path.resolve()}; downloads are disabled. "
            f"Download {path.name} (ultralytics releases: https://github.com/ultralytics/assets/releases) "
            f"and place it at {path.resolve()}, or set detector.weights to the path of a local .pt file "
            "(or to a .yaml model definition such as yolov8n.yaml for random weights)"
        )
    if read:
        from gligen_eval.safeload import check_ultralytics_checkpoint

        check_ultralytics_checkpoint(path)
    return path.resolve()


def _check_yolo_definition(weights: str) -> None:
    """Building from a ``.yaml`` evaluates parts of it: refuse definitions that would run code."""
    _import_yolo()
    from ultralytics.nn.tasks import yaml_model_load

    from gligen_eval.safeload import check_ultralytics_definition

    try:
        with contextlib.redirect_stdout(sys.stderr):
            definition = yaml_model_load(weights)
    except FileNotFoundError as e:
        raise ConfigError(f"detector model definition {weights!r} not found ({e})") from None
    except Exception as e:  # not YAML, or not a mapping
        raise InputError(f"not a readable ultralytics model definition ({str(e).splitlines()[0][:200]})",
                         path=weights) from None  # fmt: skip
    check_ultralytics_definition(definition, weights)


class YoloDetector:
    """ultralytics YOLO on a batch of PIL images.

    Args:
        weights: a local ``.pt`` checkpoint, or a ``.yaml`` model definition (a file, or a name that
            ultralytics ships such as ``yolov8n.yaml``), built with random weights seeded by ``seed``.
        conf, iou, imgsz, max_det: ultralytics prediction settings (score threshold, NMS IoU,
            inference size, detections per image). Random weights need ``conf=0.0`` to find anything.
        batch_size: images per forward pass.
        device: ``"auto"`` (GPU when present), ``"cpu"``, ``"cuda:0"``...
        class_names: class names by class index; by default the model's own, except that a model
            without names (built from a ``.yaml``) gets the COCO-80 names when it has 80 classes
            and ``person`` when it is a one-class pose model.
        seed: seed of the random weights of a ``.yaml`` model.
    """

    task = "detect"

    def __init__(
        self,
        weights: str = "yolov8n.pt",
        conf: float = 0.25,
        iou: float = 0.7,
        imgsz: int = 640,
        max_det: int = 300,
        batch_size: int = 16,
        device: str = "auto",
        *,
        class_names: Sequence[str] | Mapping[int, str] | None = None,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= conf <= 1.0:
            raise ConfigError(f"detector conf must be in [0, 1], got {conf}")
        if not 0.0 < iou <= 1.0:
            raise ConfigError(f"detector iou must be in (0, 1], got {iou}")
        if imgsz < 32 or max_det < 1 or batch_size < 1:
            raise ConfigError(f"detector imgsz must be >= 32 and max_det, batch_size >= 1 (got {imgsz}, {max_det}, {batch_size})")
        self.weights = str(weights)
        self.conf, self.iou, self.imgsz, self.max_det = float(conf), float(iou), int(imgsz), int(max_det)
        self.batch_size = int(batch_size)
        self.device = resolve_device(device)
        self.seed = int(seed)
        self.random_weights = self.weights.endswith((".yaml", ".yml"))
        with torch_threads_kept():
            self.model = self._load()
        self.names = self._class_names(class_names)
        self.name = f"{'yolo-pose' if self.task == 'pose' else 'yolo'}:{Path(self.weights).name}"
        self._fingerprint: str | None = None

    @classmethod
    def declared_classes(cls, config: Mapping[str, Any]) -> list[str] | None:
        """The classes a config's model outputs without building it: a ``.yaml`` definition gives the 80
        COCO classes (names of a ``.pt`` are in the checkpoint: ``None``)."""
        return list(COCO80_NAMES) if str(config.get("weights", "")).endswith((".yaml", ".yml")) else None

    # -- loading -----------------------------------------------------------------------------

    def _load(self) -> Any:
        YOLO = _import_yolo()
        path = check_yolo_weights(self.weights)
        if path is None:
            import torch

            try:
                with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(sys.stderr):
                    torch.manual_seed(self.seed)
                    model = YOLO(self.weights, verbose=False)
            except FileNotFoundError as e:
                raise ConfigError(f"detector model definition {self.weights!r} not found ({e})") from None
            self._weights_path = None
        else:
            self._weights_path = path
            model = _load_yolo_checkpoint(YOLO, self._weights_path)
        if getattr(model, "task", self.task) != self.task:
            raise ConfigError(f"{self.weights!r} is a {model.task!r} model; {type(self).__name__} needs a {self.task!r} model")
        return model

    def _class_names(self, override: Sequence[str] | Mapping[int, str] | None) -> dict[int, str]:
        if override is not None:
            items = override.items() if isinstance(override, Mapping) else enumerate(override)
            return {int(k): str(v) for k, v in items}
        names = {int(k): str(v) for k, v in dict(self.model.names).items()}
        placeholder = all(v == str(k) for k, v in names.items())  # a model built from a .yaml has no names
        if placeholder and len(names) == len(COCO80_NAMES):
            return dict(enumerate(COCO80_NAMES))
        if placeholder and len(names) == 1 and self.task == "pose":
            return {0: "person"}
        return names

    # -- protocol ----------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        return {"task": self.task, "conf": self.conf, "iou": self.iou, "imgsz": self.imgsz, "max_det": self.max_det,
                "names": [self.names[k] for k in sorted(self.names)]}  # fmt: skip

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            if self._weights_path is not None:
                weights = {"sha256": file_sha256(self._weights_path, length=16)}
            else:
                from ultralytics.nn.tasks import yaml_model_load

                cfg = yaml_model_load(self.weights)
                weights = {"yaml": {k: v for k, v in cfg.items() if k != "yaml_file"}, "seed": self.seed}
            self._fingerprint = stable_hash({"detector": self.name, "weights": weights, **self.settings()})
        return self._fingerprint

    def detect(self, images: list[Any]) -> list[list[Detection]]:
        out: list[list[Detection]] = []
        for i in range(0, len(images), self.batch_size):
            chunk = [im.convert("RGB") if getattr(im, "mode", "RGB") != "RGB" else im for im in images[i : i + self.batch_size]]
            with contextlib.redirect_stdout(sys.stderr), torch_threads_kept():
                results = self.model.predict(chunk, conf=self.conf, iou=self.iou, imgsz=self.imgsz, max_det=self.max_det,
                                             device=self.device, verbose=False)  # fmt: skip
            out.extend(self._convert(r) for r in results)
        return out

    def _convert(self, result: Any) -> list[Detection]:
        boxes = result.boxes
        if boxes is None or len(boxes) == 0:
            return []
        xyxy = boxes.xyxyn.clamp(0, 1).cpu().tolist()
        scores = boxes.conf.cpu().tolist()
        cls = boxes.cls.cpu().int().tolist()
        return [Detection(box=tuple(b), label=self.names.get(c, str(c)), score=s) for b, s, c in zip(xyxy, scores, cls)]


class YoloPoseDetector(YoloDetector):
    """ultralytics ``*-pose`` model: person detections with 17 COCO keypoints.

    Each keypoint is ``(x, y, v)`` normalized; ``v`` is 2 when the model's keypoint confidence is at
    least ``kpt_conf`` and 0 otherwise (all 2 for models without keypoint confidences).
    """

    task = "pose"

    @classmethod
    def declared_classes(cls, config: Mapping[str, Any]) -> list[str] | None:
        return ["person"] if str(config.get("weights", "")).endswith((".yaml", ".yml")) else None

    def __init__(self, weights: str = "yolov8n-pose.pt", *args: Any, kpt_conf: float = 0.5, **kwargs: Any) -> None:
        """``kpt_conf``: the lowest keypoint confidence that counts as visible; the rest as :class:`YoloDetector`."""
        if not 0.0 <= kpt_conf <= 1.0:
            raise ConfigError(f"kpt_conf must be in [0, 1], got {kpt_conf}")
        self.kpt_conf = float(kpt_conf)
        super().__init__(weights, *args, **kwargs)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "kpt_conf": self.kpt_conf}

    def _convert(self, result: Any) -> list[Detection]:
        dets = super()._convert(result)
        kp = getattr(result, "keypoints", None)
        if not dets or kp is None:
            return dets
        xy = kp.xyn.clamp(0, 1).cpu().tolist()
        conf = kp.conf.cpu().tolist() if kp.conf is not None else None
        out = []
        for n, d in enumerate(dets):
            pts = tuple(
                (float(x), float(y), 2 if conf is None or conf[n][k] >= self.kpt_conf else 0)
                for k, (x, y) in enumerate(xy[n])
            )
            out.append(Detection(box=d.box, label=d.label, score=d.score, category_id=d.category_id, keypoints=pts))
        return out
