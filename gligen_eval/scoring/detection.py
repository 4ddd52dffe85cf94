"""Detector passes over a run's images: building a scoring detector, the cached detections, and the
checks of a detector config that need no model."""

from __future__ import annotations

import dataclasses
import gc
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from gligen_eval import distributed, store
from gligen_eval.chunks import process_missing
from gligen_eval.config import DetectorConfig
from gligen_eval.imageio import pil_open
from gligen_eval.records import SampleRecord


def detect_missing(
    rd: store.RunDir,
    samples: Sequence[SampleRecord],
    detector: Any,
    *,
    batch_size: int,
    dist: distributed.DistInfo | None = None,
    progress: bool = True,
    desc: str = "detect",
    phrases_of: Callable[[SampleRecord], Sequence[str]] | None = None,
) -> dict[str, list]:
    """Run ``detector`` on the images without cached detections; returns {sample_key: [Detection]}
    for this rank's chunks and every cached sample.

    ``phrases_of(sample)``: the phrases to look for in that image, for detectors that take them.
    A sample's ``image`` is relative to the run directory, or absolute (real images).
    """
    dist = dist or distributed.DistInfo()
    name = detector.fingerprint()
    cached = rd.detections()
    out = {s.sample_key: cached[(s.sample_key, name)] for s in samples if (s.sample_key, name) in cached}
    out_file = rd.rank_file(store.DETECTIONS, dist.rank if dist.enabled else None)

    def process(batch: Sequence[SampleRecord]) -> None:
        images = read_images(rd, batch)
        if phrases_of is not None:
            dets = detector.detect(images, [list(phrases_of(s)) for s in batch])
        else:
            dets = detector.detect(images)
        rows = []
        for s, d in zip(batch, dets):
            if s.sample_key in out:  # cached already: keep it (the chunk ran whole for batch-identical numerics)
                continue
            out[s.sample_key] = d
            rows.append({"sample_key": s.sample_key, "detector": name, "detections": [x.to_dict() for x in d]})
        store.append_jsonl(out_file, rows)

    process_missing(samples, is_done=lambda s: s.sample_key in out, process=process, chunk_size=batch_size, dist=dist,
                    progress=progress, desc=desc)  # fmt: skip
    return out


def read_images(rd: store.RunDir, samples: Sequence[SampleRecord]) -> list[Any]:
    """The RGB images of ``samples`` (``image`` relative to the run directory, or absolute for real images)."""
    images = []
    for s in samples:
        with pil_open(rd.root / s.image) as im:
            images.append(im.convert("RGB"))
    return images


def merge_rank_detections(rd: store.RunDir) -> None:
    """Fold the per-rank detection files into ``detections.jsonl`` (rank 0, after a barrier)."""
    rd.merge_rank_rows(store.DETECTIONS, ("sample_key", "detector"))


def build_scoring_detector(cfg: DetectorConfig, *, device: str) -> Any:
    """The detector of a :class:`DetectorConfig`; ``kind: owlv2`` with ``weights: tiny`` builds the
    small random OWLv2 of :func:`gligen_eval.scoring.openvocab.tiny_owlv2` (offline smoke runs)."""
    from gligen_eval.scoring.detectors import build_detector

    data = dataclasses.asdict(cfg)
    data.pop("name", None)
    overrides: dict[str, Any] = {}
    if data.get("kind") == "owlv2" and data.get("weights") == "tiny":
        from gligen_eval.scoring.openvocab import tiny_owlv2

        overrides["model"], overrides["processor"] = tiny_owlv2(seed=0)
    if data.get("kind") == "grounding-dino" and data.get("weights") == "tiny":
        from gligen_eval.scoring.grounding_dino import tiny_grounding_dino

        overrides["model"], overrides["processor"] = tiny_grounding_dino(seed=0)
    return build_detector(data, device=device, **overrides)


def release(device: str) -> None:
    """Free a model's memory before the next one is built."""
    gc.collect()
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------------
# real images


def declared_classes(cfg: DetectorConfig) -> list[str] | None:
    """The classes a detector config can output, known without building it: what its class's
    ``declared_classes(config: dict)`` says (a YOLO ``.yaml`` definition: the 80 COCO classes); ``None``
    when that needs the model (checked again when scoring builds the detector)."""
    from gligen_eval.scoring.coco import canonical_category
    from gligen_eval.scoring.detectors import resolve_detector

    declared = getattr(resolve_detector(cfg.kind), "declared_classes", None)
    names = declared(dataclasses.asdict(cfg)) if callable(declared) else None
    return sorted({canonical_category(str(n)) for n in names}) if names else None


def check_detector_weights(cfg: DetectorConfig) -> None:
    """The weights of a detector config, checked without building it: YOLO ``.pt`` files (existence and
    the pickle's allow-list) and ``.yaml`` definitions, OWLv2 folders and cached hub ids. Another
    detector class is checked by its ``check_weights(config: dict)`` when it has one."""
    from gligen_eval.scoring.detectors import YoloDetector, check_yolo_weights, resolve_detector
    from gligen_eval.scoring.openvocab import OwlDetector

    cls = resolve_detector(cfg.kind)
    if isinstance(cls, type) and issubclass(cls, YoloDetector):
        check_yolo_weights(cfg.weights, read=True)
    elif isinstance(cls, type) and issubclass(cls, OwlDetector):
        if cfg.weights != "tiny":
            from gligen_eval.scoring.clip import check_local_pretrained

            check_local_pretrained(cfg.weights, "open-vocabulary detector")
    elif callable(getattr(cls, "check_weights", None)):
        cls.check_weights(dataclasses.asdict(cfg))



@dataclasses.dataclass
class DetectorPass:
    """One detector over the generated images (and the real images when asked)."""

    role: str
    label: str
    info: dict[str, Any]
    takes_phrases: bool
    samples: list[SampleRecord]
    real: list[SampleRecord] = dataclasses.field(default_factory=list)

    def detections(self, cached: Mapping[tuple[str, str], list], samples: Sequence[SampleRecord]) -> dict[str, list]:
        """{sample key: detections} of this detector for ``samples``, from the run's cache
        (:meth:`~gligen_eval.store.RunDir.detections`)."""
        fp = self.info["fingerprint"]
        return {s.sample_key: cached[(s.sample_key, fp)] for s in samples}


def run_detector_pass(ctx: Any, role: str, dcfg: DetectorConfig, samples: Sequence[SampleRecord],
                      real_layouts: Sequence[Any], *, label: str | None = None,
                      check_classes: bool = True) -> DetectorPass:  # fmt: skip
    """Build ``dcfg``'s detector once, detect what is not cached on the generated images (and on the
    real images of ``real_layouts``), free it. ``ctx`` is a :class:`~gligen_eval.scoring.protocol.ScoreContext`."""
    from gligen_eval.scoring.boxes import check_detector_classes, detector_classes, phrase_classes
    from gligen_eval.scoring.realimages import real_samples

    det = build_scoring_detector(dcfg, device=ctx.device)
    takes = bool(getattr(det, "takes_phrases", False))
    label = label or dcfg.name or str(det.name).replace("/", "_")
    info = {"name": det.name, "fingerprint": det.fingerprint(), "kind": dcfg.kind, "weights": dcfg.weights,
            "takes_phrases": takes}  # fmt: skip
    classes = detector_classes(det) if check_classes else None
    if classes is not None:
        info["classes"] = classes
        if not ctx.shared.get("lvis"):  # LVIS-style AP has its own category table
            check_detector_classes(ctx.layouts, classes, f"{det.name} ({role})")
    by_id = ctx.by_id
    phrases_of: Callable[[SampleRecord], Sequence[str]] | None = None
    if takes and getattr(det, "prompts", "phrases") == "categories":  # ask for the classes, not the phrases
        phrases_of = lambda s: list(dict.fromkeys(phrase_classes(by_id[s.layout_id]).values()))  # noqa: E731
    elif takes:
        phrases_of = lambda s: by_id[s.layout_id].phrases  # noqa: E731
    kw = {"batch_size": dcfg.batch_size, "dist": ctx.dist, "progress": ctx.progress, "phrases_of": phrases_of}
    detect_missing(ctx.rd, samples, det, desc=role, **kw)
    real = real_samples(_real_images(ctx, real_layouts), with_phrases=takes) if real_layouts else []
    if real:
        detect_missing(ctx.rd, real, det, desc=f"{role} (real images)", **kw)
    del det
    release(ctx.device)
    return DetectorPass(role, label, info, takes, list(samples), real)


def _real_images(ctx: Any, layouts: Sequence[Any]) -> list[Any]:
    """The real images of ``layouts``, each file read and hashed once per run (the detector and the pose
    model score the same images)."""
    from gligen_eval.scoring.realimages import real_images

    cache = ctx.shared.setdefault("real_images", {})
    missing = [lay for lay in layouts if lay.layout_id not in cache]
    cache.update({r.layout.layout_id: r for r in real_images(missing)})
    return [cache[lay.layout_id] for lay in layouts]


def check_detector_config(dcfg: DetectorConfig, layouts: Sequence[Any] | None, *, lvis: bool,
                          classes: bool = True) -> None:  # fmt: skip
    """Preflight of one detector config: its weights (:func:`check_detector_weights`) and, for a
    closed-set detector whose classes are known without building it, that it can name some object
    of ``layouts`` (not for LVIS layouts, which have their own category table)."""
    from gligen_eval.scoring.boxes import check_detector_classes

    check_detector_weights(dcfg)
    names = declared_classes(dcfg) if classes and layouts is not None and not lvis else None
    if names is not None:  # a closed-set detector that can name none of the phrases fails now
        check_detector_classes(layouts, names, dcfg.name or f"{dcfg.kind}:{Path(dcfg.weights).name}", quiet=True)


def random_detector_weights(dcfg: DetectorConfig) -> bool:
    """A ``.yaml`` YOLO definition or a ``tiny`` OWLv2/Grounding DINO: random weights."""
    return dcfg.weights.endswith((".yaml", ".yml")) or (dcfg.kind in ("owlv2", "grounding-dino") and dcfg.weights == "tiny")
