"""The scoring stage of a run: every configured scorer over the run's images, then ``metrics.json``.

What runs, each part only when configured (metric keys in brackets):

* ``detector`` -- COCO box AP of the detections against the layout boxes [``box/AP`` ... ``box/ARl``],
  per-instance IoU, hits and reasons (``instances.jsonl``) [``box/mIoU``, ``box/success``]. When the
  layouts come from an LVIS file, AP is LVIS-style (faster-coco-eval ``lvis_style``: the images'
  negative and not-exhaustive categories count) and adds [``box/APr`` ``box/APc`` ``box/APf``].
  A detector with ``takes_phrases`` (the open-vocabulary ``owlv2``) is asked for each image's layout
  phrases, and the phrases it returns are mapped back to the objects' categories (free-phrase
  layouts without categories: each phrase is its own category).
* ``extra_detectors`` -- the same for each further detector, side by side
  [``box@<name>/AP`` ``AP50`` ``AP75`` ``mIoU`` ``success``], and the per-instance agreement with
  ``detector``: the fraction of grounded objects that both call a hit or both a miss
  [``agreement/<name>``].
* ``pose`` -- a pose model on the images of layouts whose persons carry keypoints; OKS AP through
  COCOeval keypoints [``kp/AP`` ... ``kp/ARl``], and a per-keypoint breakdown (``breakdowns.json``).
* ``scoring.real_images`` -- the same detector and pose model on the layouts' real images
  (``Layout.image_path``, set by ``layouts.images_dir``) [``box/real/*``, ``kp/real/*``] and
  generated / real [``box/AP_ratio``, ``kp/AP_ratio``].
* ``scoring.error_analysis`` -- TIDE-style ΔAP50 per box error type [``box/tide/cls``, ``box/tide/loc``,
  ``box/tide/both``, ``box/tide/dupl``, ``box/tide/bkg``, ``box/tide/miss``] and the area under AP over
  IoU thresholds 0.05..0.95 [``box/AP_iou_auc``] (:mod:`gligen_eval.scoring.errors`; per category and
  the curve in ``breakdowns.json``).
* ``clip`` -- CLIP scores [``clip/global``, ``clip/regional``, ``clip/image``], one row per image in
  ``clip.jsonl``.
* ``fid`` -- FID and KID against the real images [``fid``, ``kid``, ``kid/std``].
* ``quality`` -- image quality beyond FID against the same real images
  (:mod:`gligen_eval.scoring.quality_modern`) [``fd_dinov2``, ``cmmd``, ``prdc/precision``,
  ``prdc/recall``, ``prdc/density``, ``prdc/coverage``, ``pref/pickscore``].
* spatial modalities (the manifest's resolved ``modality``: hed, canny, depth, normal, sem) -- the
  condition re-extracted from each image against the layout's input condition, one row per image
  in ``cond.jsonl`` (:mod:`gligen_eval.scoring.consistency`) [``cond/<name>``, e.g. ``cond/canny_f1``],
  and the same on the layouts' real images where they exist [``cond/real/<name>``].
* ``comp`` -- counts, spatial relations and colours on ``detector``'s cached detections, COCO-MIG
  with ``comp.mig`` (:mod:`gligen_eval.scoring.compositional`) [``comp/count_acc`` ``comp/count_f1``
  ``comp/relation_acc`` ``comp/color_acc_hsv`` ``comp/color_acc_clip``, ``mig/ISR`` ``mig/mIoU``
  ``mig/L{2..6}/*``], one row per image in ``comp.jsonl``.
* ``scoring.bootstrap`` -- percentile intervals over layouts (seeded) [``<key>/lo``, ``<key>/hi``] for
  ``box/AP`` and ``kp/AP`` (``scoring.bootstrap_ap`` draws, see :mod:`gligen_eval.scoring.resample`;
  per-image matches from hotcoco re-accumulated per draw, whatever ``scoring.backend``), ``box/mIoU``,
  ``box/success``, the CLIP scores and the ``cond/`` keys (``scoring.bootstrap`` draws).

Caching: detections are kept in ``detections.jsonl`` keyed by (sample key, detector fingerprint);
real images get the key ``real-<hash of the file's bytes>`` (plus the phrases asked for, for
phrase-taking detectors). CLIP rows are kept in ``clip.jsonl`` keyed by (sample key, CLIP
fingerprint). FID reference statistics are cached under ``fid.cache_dir``. Scoring again with
another metric or another detector reuses every image and every earlier result.

Distributed: every detector pass and the CLIP pass work in fixed chunks of the sample order; each
rank takes its share (:func:`gligen_eval.distributed.my_chunks`) and appends to its own record
file. Rank 0 merges the record files, computes FID (one process) and every metric.
"""

from __future__ import annotations

from gligen_eval.imageio import pil_open

import dataclasses
import gc
import logging
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from gligen_eval import distributed, store
from gligen_eval.config import ClipConfig, DetectorConfig, FidConfig, RunConfig
from gligen_eval.errors import ConfigError, InputError
from gligen_eval.records import Detection, InstanceRecord, Layout, SampleRecord, stable_hash

log = logging.getLogger("gligen_eval")

CLIP_ROWS = "clip.jsonl"
FID_CACHE_ENV = "GLIGEN_EVAL_FID_CACHE"
DEFAULT_FID_CACHE = "~/.cache/gligen-eval/fid"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
EXTRA_DETECTOR_KEYS = ("AP", "AP50", "AP75")
FID_KEYS = ("fid", "kid", "kid/std")  # into metrics.json; the image counts and KID subset size go to breakdowns.json


# --------------------------------------------------------------------------------------------
# detection with a cache


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
    from tqdm.auto import tqdm

    dist = dist or distributed.DistInfo()
    name = detector.fingerprint()
    cached = rd.detections()
    out = {s.sample_key: cached[(s.sample_key, name)] for s in samples if (s.sample_key, name) in cached}
    todo = [b for b in distributed.my_chunks(samples, batch_size, dist) if any(s.sample_key not in out for s in b)]
    out_file = rd.rank_file(store.DETECTIONS, dist.rank if dist.enabled else None)
    with tqdm(total=sum(map(len, todo)), desc=desc, unit="img", disable=not progress or not todo,
              file=sys.stderr) as bar:  # fmt: skip
        for batch in todo:
            images = []
            for s in batch:
                with pil_open(rd.root / s.image) as im:
                    images.append(im.convert("RGB"))
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
            bar.update(len(batch))
    return out


def merge_rank_rows(rd: store.RunDir, name: str, key: Sequence[str]) -> None:
    """Fold the per-rank parts of a record file into the file itself (rank 0, after a barrier);
    a later row with the same ``key`` fields wins."""
    rows: dict[tuple, dict] = {}
    for f in rd.record_files(name):
        for r in store.iter_jsonl(f):
            rows[tuple(r[k] for k in key)] = r
    store.write_jsonl(rd.path(name), rows.values())
    for f in rd.record_files(name)[1:]:
        f.unlink()


def merge_rank_detections(rd: store.RunDir) -> None:
    """Fold the per-rank detection files into ``detections.jsonl`` (rank 0, after a barrier)."""
    merge_rank_rows(rd, store.DETECTIONS, ("sample_key", "detector"))


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


def _release(device: str) -> None:
    gc.collect()
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


# --------------------------------------------------------------------------------------------
# real images


@dataclass(frozen=True)
class RealImage:
    layout: Layout
    path: Path
    digest: str
    width: int
    height: int


def _file_digest(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:24]


def real_images(layouts: Iterable[Layout]) -> list[RealImage]:
    """The real image of each layout (``Layout.image_path``); an error names the layout without one."""
    from PIL import UnidentifiedImageError

    out = []
    for lay in layouts:
        p = _real_image_path(lay)
        try:
            with pil_open(p) as im:
                w, h = im.size
        except (UnidentifiedImageError, OSError) as e:
            raise InputError(f"cannot read image ({e})", path=str(p), record=f"layout {lay.layout_id}") from None
        out.append(RealImage(lay, p.resolve(), _file_digest(p), int(w), int(h)))
    return out


def _real_image_path(lay: Layout) -> Path:
    if not lay.image_path:
        raise InputError("layout has no real image; set layouts.images_dir to the folder of the layouts' images",
                         record=f"layout {lay.layout_id}")  # fmt: skip
    p = Path(lay.image_path)
    if not p.is_file():
        raise InputError("real image not found", path=str(p), record=f"layout {lay.layout_id}")
    return p


def real_samples(images: Sequence[RealImage], *, with_phrases: bool) -> list[SampleRecord]:
    """Sample records of real images (``image`` is the absolute path); the key is the file's content
    hash, plus the layout's phrases for detectors that are asked for phrases."""
    out = []
    for r in images:
        key_parts: list[Any] = [r.digest]
        if with_phrases:
            key_parts.append(sorted(set(r.layout.phrases)))
        key = "real-" + stable_hash(key_parts, length=20)
        out.append(SampleRecord(sample_key=key, layout_id=r.layout.layout_id, seed=0, image=str(r.path), width=r.width,
                                height=r.height, layout_hash=r.layout.content_hash(), settings_hash="real"))  # fmt: skip
    return out


# --------------------------------------------------------------------------------------------
# boxes


def phrase_classes(layout: Layout) -> dict[str, str]:
    """Phrase -> the class its object is scored as (category, else the phrase itself)."""
    from gligen_eval.scoring.coco import object_class

    out: dict[str, str] = {}
    for o in layout.objects:
        out.setdefault(o.phrase, object_class(o))
    return out


def relabel_phrases(detections: Sequence[Detection], layout: Layout) -> list[Detection]:
    """Detections labelled with layout phrases, relabelled with their objects' classes."""
    table = phrase_classes(layout)
    return [dataclasses.replace(d, label=table[d.label]) if d.label in table else d for d in detections]


def detector_classes(detector: Any) -> list[str] | None:
    """The classes a closed-set detector can output (its ``names``), canonical and sorted; ``None`` for a
    detector that takes phrases or does not list its classes (then every object is scored)."""
    from gligen_eval.scoring.coco import canonical_category

    if getattr(detector, "takes_phrases", False):
        return None
    names = getattr(detector, "names", None)
    if isinstance(names, Mapping):
        names = list(names.values())
    if not isinstance(names, (list, tuple)) or not names:
        return None
    return sorted({canonical_category(str(n)) for n in names})


def scored_layout(layout: Layout, classes: Iterable[str] | None) -> Layout:
    """The layout as box AP scores it: with a closed-set detector (``classes``) only the objects whose class
    (category, else phrase) it can output; the others could never be found and are left out."""
    if classes is None:
        return layout
    from gligen_eval.scoring.coco import object_class

    vocab = set(classes)
    kept = [i for i, o in enumerate(layout.objects) if object_class(o) in vocab]
    return layout if len(kept) == len(layout.objects) else layout.keep_objects(kept)


def check_detector_classes(layouts: Sequence[Layout], classes: Sequence[str] | None, detector: str, *,
                           quiet: bool = False) -> None:  # fmt: skip
    """Refuse free-phrase layouts that a closed-set detector cannot score at all; warn once with how many
    phrases name none of its classes (those objects are not scored, ``n_instances_unmapped``)."""
    if classes is None:
        return
    from gligen_eval.scoring.coco import object_class

    vocab = set(classes)
    names = {object_class(o) for lay in layouts for o in lay.objects}
    unmapped = sorted(names - vocab)
    if not unmapped:
        return
    eg = ", ".join(repr(n) for n in unmapped[:3])
    if len(unmapped) == len(names):
        raise ConfigError(f"none of the {len(names)} object classes/phrases of the layouts (e.g. {eg}) is a class of "
                          f"the closed-set detector {detector}; score free-phrase layouts with an open-vocabulary "
                          "detector (detector.kind: owlv2) or give the objects categories")  # fmt: skip
    if not quiet:
        log.warning("%d of %d object classes/phrases name no class of the detector %s (e.g. %s): their objects are "
                    "not scored (n_instances_unmapped in metrics.json)", len(unmapped), len(names), detector, eg)


def lvis_categories(layouts: Iterable[Layout], meta: Any) -> list[dict[str, Any]]:
    """COCO category dicts (id, name, frequency) of the LVIS categories the layouts use."""
    ids: set[int] = set()
    for lay in layouts:
        for i, o in enumerate(lay.objects):
            if o.category_id is None or o.category_id not in meta.categories:
                raise InputError(f"object {i} has category id {o.category_id!r}, which is not an LVIS category of the source",
                                 record=f"layout {lay.layout_id}")  # fmt: skip
            ids.add(o.category_id)
    return [{"id": c, "name": meta.categories[c].name, "frequency": meta.categories[c].frequency} for c in sorted(ids)]


@dataclass
class BoxEval:
    """One box evaluation: COCO summary, per-instance records and the COCO inputs (for intervals)."""

    result: Any
    records: list[InstanceRecord]
    gt: dict[str, Any]
    results: list[dict[str, Any]]
    samples: list[SampleRecord]
    lvis: bool = False
    unmapped: int = 0
    """Object instances left out because the detector has no class for them (see :func:`scored_layout`)."""

    def metrics(self, prefix: str) -> dict[str, Any]:
        from gligen_eval.scoring import instances as inst

        agg = inst.aggregate(self.records)
        out: dict[str, Any] = {f"{prefix}/{k}": v for k, v in self.result.metrics.items()}
        out[f"{prefix}/mIoU"] = agg["mIoU"]
        out[f"{prefix}/success"] = agg["success"]
        return out


def evaluate_boxes(
    layouts: Sequence[Layout],
    samples: Sequence[SampleRecord],
    detections: Mapping[str, Sequence[Detection]],
    *,
    backend: str = "hotcoco",
    success_iou: float = 0.5,
    min_score: float = 0.0,
    phrase_labels: bool = False,
    lvis_meta: Any = None,
    classes: Sequence[str] | None = None,
) -> BoxEval:
    """COCO (or LVIS-style) box AP of ``detections[sample_key]`` against the layout boxes, and the
    per-instance records. ``phrase_labels``: detection labels are layout phrases (relabelled to the
    objects' classes); ``lvis_meta``: an :class:`~gligen_eval.layouts.LvisMeta` for LVIS layouts;
    ``classes``: a closed-set detector's classes (:func:`detector_classes`): objects of other classes
    get neither ground truth nor instance records (:func:`scored_layout`)."""
    from gligen_eval.scoring import coco, instances as inst

    by_id = {lay.layout_id: lay for lay in layouts}
    pairs = []
    for s in samples:
        lay = by_id[s.layout_id]
        dets = list(detections[s.sample_key])
        pairs.append((s, lay, relabel_phrases(dets, lay) if phrase_labels else dets))
    lvis = lvis_meta is not None
    if lvis and backend not in ("hotcoco", "faster"):
        raise ConfigError("LVIS layouts are scored LVIS-style, which needs scoring.backend: hotcoco or faster")
    if lvis:
        classes = None  # LVIS-style AP has its own category table
    categories = lvis_categories([p[1] for p in pairs], lvis_meta) if lvis else None
    gt, results = coco.build_eval_inputs([(s.sample_key, scored_layout(lay, classes), s.width, s.height, d)
                                          for s, lay, d in pairs], categories=categories)  # fmt: skip
    if lvis:
        for im in gt["images"]:
            im["neg_category_ids"] = list(lvis_meta.neg_category_ids.get(im["layout_id"], ()))
            im["not_exhaustive_category_ids"] = list(lvis_meta.not_exhaustive_category_ids.get(im["layout_id"], ()))
    result = coco.run_coco_eval(gt, results, iou_type="bbox", backend=backend, lvis_style=lvis)
    records = []
    vocab = None if classes is None else set(classes)
    for s, lay, dets in pairs:
        rows = inst.match_instances(s, lay, dets, success_iou=success_iou, min_score=min_score)
        records.extend(r for r in rows if vocab is None or coco.object_class(lay.objects[r.object_index]) in vocab)
    unmapped = sum(len(lay.objects) for _, lay, _ in pairs) - len(records)
    return BoxEval(result, records, gt, results, list(samples), lvis, unmapped)


def score_boxes(layouts: Sequence[Layout], samples: Sequence[SampleRecord], detections: dict, cfg: RunConfig):
    """COCO AP of the detections against the layout boxes, plus per-instance records (no intervals).

    Returns ``(metrics, breakdowns, records)`` with ``box/*`` keys.
    """
    ev = evaluate_boxes(layouts, samples, detections, backend=cfg.scoring.backend, success_iou=cfg.scoring.success_iou,
                        min_score=cfg.scoring.instance_min_score)  # fmt: skip
    return ev.metrics("box"), {"box/AP_per_category": ev.result.per_category}, ev.records


def agreement_rate(a: Iterable[InstanceRecord], b: Iterable[InstanceRecord]) -> float:
    """Fraction of the grounded objects (same image, same object) that both records call a hit or both a
    miss; NaN when they share none."""
    hits = {(r.sample_key, r.object_index): r.hit for r in a}
    same = n = 0
    for r in b:
        k = (r.sample_key, r.object_index)
        if k in hits:
            n += 1
            same += hits[k] == r.hit
    return same / n if n else math.nan


# --------------------------------------------------------------------------------------------
# keypoints


def has_keypoints(layout: Layout) -> bool:
    return any(o.keypoints is not None for o in layout.objects)


def evaluate_keypoints(
    layouts: Sequence[Layout],
    samples: Sequence[SampleRecord],
    detections: Mapping[str, Sequence[Detection]],
    *,
    backend: str = "hotcoco",
) -> tuple[Any, dict, list]:
    """OKS AP (COCOeval keypoints) of pose detections against the layouts' persons with keypoints.

    Returns ``(CocoResult, gt, results)``. Persons whose keypoints are all unlabelled are ignored, as in COCO.
    """
    from gligen_eval.scoring import coco

    by_id = {lay.layout_id: lay for lay in layouts}
    gt, results = coco.build_eval_inputs(
        [(s.sample_key, by_id[s.layout_id], s.width, s.height, detections[s.sample_key]) for s in samples],
        iou_type="keypoints",
    )  # fmt: skip
    return coco.run_coco_eval(gt, results, iou_type="keypoints", backend=backend), gt, results


def keypoint_breakdown(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]],
                       sigmas: Sequence[float] | None = None) -> dict[str, dict[str, float]]:  # fmt: skip
    """Per keypoint type: how well the best-matching detection places it.

    For every ground-truth person with labelled keypoints, the detection of the same image with the
    highest OKS is taken (none: every point scores 0). Each labelled point gets its keypoint similarity
    ``exp(-d^2 / (2 area (2 sigma)^2))`` (the per-point term of OKS, COCOeval's constants). Per keypoint
    name: ``similarity`` (mean), ``pck`` (fraction with similarity >= 0.5) and ``n`` (labelled points).
    """
    import numpy as np

    from gligen_eval.records import COCO_KEYPOINT_NAMES
    from gligen_eval.scoring.coco import COCO_KEYPOINT_SIGMAS

    sig = np.asarray(sigmas if sigmas is not None else COCO_KEYPOINT_SIGMAS, dtype=float)
    var = (2 * sig) ** 2
    preds: dict[Any, list[np.ndarray]] = {}
    for r in results:
        preds.setdefault(r["image_id"], []).append(np.asarray(r["keypoints"], dtype=float).reshape(-1, 3))
    sums = np.zeros(sig.size)
    good = np.zeros(sig.size)
    counts = np.zeros(sig.size)
    for a in gt["annotations"]:
        g = np.asarray(a["keypoints"], dtype=float).reshape(-1, 3)
        labelled = g[:, 2] > 0
        if not labelled.any():
            continue
        area = float(a.get("area", a["bbox"][2] * a["bbox"][3]))
        best = np.zeros(sig.size)
        best_oks = -1.0
        for d in preds.get(a["image_id"], ()):
            dist2 = (d[:, 0] - g[:, 0]) ** 2 + (d[:, 1] - g[:, 1]) ** 2
            ks = np.exp(-dist2 / var / (area + np.spacing(1)) / 2)
            o = float(ks[labelled].mean())
            if o > best_oks:
                best_oks, best = o, ks
        sums[labelled] += best[labelled]
        good[labelled] += best[labelled] >= 0.5
        counts[labelled] += 1
    names = COCO_KEYPOINT_NAMES if sig.size == len(COCO_KEYPOINT_NAMES) else [str(i) for i in range(sig.size)]
    return {
        nm: {"similarity": float(sums[k] / counts[k]), "pck": float(good[k] / counts[k]), "n": int(counts[k])}
        for k, nm in enumerate(names) if counts[k] > 0
    }  # fmt: skip


# --------------------------------------------------------------------------------------------
# intervals


def _columns_by_layout(samples: Sequence[SampleRecord]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        out.setdefault(s.layout_id, []).append(i)
    return out


def ap_interval(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]], samples: Sequence[SampleRecord], *,
                iou_type: str = "bbox", lvis_style: bool = False, n_boot: int, alpha: float,
                seed: int) -> tuple[float, float]:  # fmt: skip
    """Bootstrap interval of AP over layouts; the images of ``gt`` (as :func:`coco.build_eval_inputs`
    orders them: by sample key) carry their ``layout_id``."""
    from gligen_eval.scoring.resample import ImageSetAP, bootstrap_ap_interval

    ap_set = ImageSetAP(gt, results, iou_type=iou_type, lvis_style=lvis_style)  # type: ignore[arg-type]
    by_layout: dict[str, list[int]] = {}
    for i, im in enumerate(gt["images"]):
        by_layout.setdefault(im["layout_id"], []).append(i)
    if sorted(by_layout) != sorted(_columns_by_layout(samples)):
        raise ValueError("the ground truth's images are not the images of these samples")
    columns = {lid: by_layout[lid] for lid in _columns_by_layout(samples)}  # layouts in sample order
    return bootstrap_ap_interval(ap_set, columns, n_boot=n_boot, alpha=alpha, seed=seed)


def instance_intervals(prefix: str, records: Sequence[InstanceRecord], layouts: Sequence[Layout], *, n_boot: int,
                       alpha: float, seed: int) -> dict[str, float]:  # fmt: skip
    """``<prefix>/mIoU`` and ``<prefix>/success`` intervals (pooled over each layout's instances)."""
    from gligen_eval.scoring import stats

    out: dict[str, float] = {}
    for key, attr in (("mIoU", "best_iou"), ("success", "hit")):
        per_layout: dict[str, list[float]] = {lay.layout_id: [] for lay in layouts}
        for r in records:
            per_layout.setdefault(r.layout_id, []).append(float(getattr(r, attr)))
        lo, hi = stats.bootstrap_ci(per_layout, "pooled_mean", n_boot=n_boot, alpha=alpha, seed=seed)
        out.update(stats.ci_keys(f"{prefix}/{key}", lo, hi))
    return out


# --------------------------------------------------------------------------------------------
# CLIP


def build_clip_scorer(cfg: ClipConfig, *, device: str) -> Any:
    """``clip.model: tiny`` builds :func:`gligen_eval.scoring.clip.tiny_clip`; anything else loads locally."""
    from gligen_eval.scoring.clip import ClipScorer, tiny_clip

    kw = {"weight": cfg.weight, "crop": cfg.crop, "batch_size": cfg.batch_size, "device": device}
    if cfg.model == "tiny":
        model, processor = tiny_clip(seed=cfg.seed)
        return ClipScorer(model, processor, name="tiny-clip", **kw)
    return ClipScorer.from_pretrained(cfg.model, dtype=cfg.dtype, **kw)


def clip_missing(
    rd: store.RunDir,
    samples: Sequence[SampleRecord],
    layouts: Sequence[Layout],
    scorer: Any,
    *,
    batch_size: int,
    dist: distributed.DistInfo | None = None,
    progress: bool = True,
    reference_root: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """CLIP scores of the images without a cached row in ``clip.jsonl``; returns {sample_key: ClipSampleScores}
    for this rank's chunks and every cached sample."""
    from tqdm.auto import tqdm

    from gligen_eval.scoring.clip import ClipSampleScores

    dist = dist or distributed.DistInfo()
    fp = scorer.fingerprint()
    by_id = {lay.layout_id: lay for lay in layouts}
    out: dict[str, Any] = {}
    for f in rd.record_files(CLIP_ROWS):
        for r in store.iter_jsonl(f):
            if r.get("scorer") == fp:
                out[r["sample_key"]] = ClipSampleScores(r["clip/global"], list(r["clip/regional"]), list(r["clip/image"]))
    out = {s.sample_key: out[s.sample_key] for s in samples if s.sample_key in out}
    todo = [b for b in distributed.my_chunks(samples, batch_size, dist) if any(s.sample_key not in out for s in b)]
    out_file = rd.rank_file(CLIP_ROWS, dist.rank if dist.enabled else None)
    with tqdm(total=sum(map(len, todo)), desc="clip", unit="img", disable=not progress or not todo,
              file=sys.stderr) as bar:  # fmt: skip
        for batch in todo:
            images = []
            for s in batch:
                with pil_open(rd.root / s.image) as im:
                    images.append(im.convert("RGB"))
            lays = [by_id[s.layout_id] for s in batch]
            scores = scorer.score_layouts(images, lays, reference_root=reference_root)
            rows = []
            for s, lay, sc in zip(batch, lays, scores):
                out[s.sample_key] = sc
                rows.append({"sample_key": s.sample_key, "layout_id": s.layout_id, "seed": s.seed, "image": s.image,
                             "scorer": fp, "caption": lay.caption, "phrases": lay.phrases, **sc.to_dict()})  # fmt: skip
            store.append_jsonl(out_file, rows)
            bar.update(len(batch))
    return out


# --------------------------------------------------------------------------------------------
# FID / KID


def tiny_fid_extractor(seed: int = 0, *, num_features: int = 32, device: str = "cpu") -> Any:
    """A small seeded random conv net as FID/KID features, for offline smoke runs.

    It is **not** Inception: its FID/KID only show that the scoring path works.
    """
    import torch

    from gligen_eval.scoring.quality import custom_extractor

    class TinyConvFeatures(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU(),
                torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
                torch.nn.Conv2d(16, num_features, 3, stride=2, padding=1), torch.nn.ReLU(),
                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
            )  # fmt: skip

        def forward(self, x: "torch.Tensor") -> "torch.Tensor":
            return self.net(x.float() / 127.5 - 1.0)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = TinyConvFeatures()
    return custom_extractor(module, name=f"tiny-conv-{num_features} (random weights, not Inception)",
                            num_features=num_features, device=device)  # fmt: skip


def fid_cache_dir(cfg: FidConfig) -> Path:
    """``fid.cache_dir``, else ``$GLIGEN_EVAL_FID_CACHE``, else ``~/.cache/gligen-eval/fid``."""
    return Path(cfg.cache_dir or os.environ.get(FID_CACHE_ENV) or DEFAULT_FID_CACHE).expanduser()


def fid_reference_images(cfg: FidConfig, layouts: Sequence[Layout]) -> tuple[list[Path], str]:
    """The real images FID compares with, and a description of where they come from."""
    if cfg.reference is not None:
        root = Path(cfg.reference).expanduser()
        if not root.is_dir():
            raise InputError("fid.reference is not a folder of images", path=str(root))
        paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in fid.reference", path=str(root))
        return paths, f"folder {root}"
    seen: dict[Path, None] = {}
    for lay in layouts:
        if not lay.image_path:
            raise InputError("FID needs real images: set fid.reference to a folder of images, or layouts.images_dir "
                             "to the folder of the layouts' images", record=f"layout {lay.layout_id}")  # fmt: skip
        p = Path(lay.image_path)
        if not p.is_file():
            raise InputError("real image not found", path=str(p), record=f"layout {lay.layout_id}")
        seen.setdefault(p, None)
    return list(seen), "the layouts' real images"


def build_fid_scorer(cfg: FidConfig, *, device: str) -> Any:
    from gligen_eval.scoring.quality import FidKidScorer, inception_extractor

    if cfg.feature == "tiny":
        extractor = tiny_fid_extractor(cfg.seed, device=device)
    else:
        extractor = inception_extractor(2048, cfg.inception_weights, device=device)
    return FidKidScorer(extractor, cfg.resize, batch_size=cfg.batch_size, kid=cfg.kid, kid_subsets=cfg.kid_subsets,
                        kid_subset_size=cfg.kid_subset_size, kid_seed=cfg.seed)  # fmt: skip


def score_fid(rd: store.RunDir, cfg: FidConfig, layouts: Sequence[Layout], samples: Sequence[SampleRecord], *,
              device: str) -> tuple[dict[str, float], dict[str, Any]]:  # fmt: skip
    """``fid`` (and ``kid``, ``kid/std``...) of the run's images against the reference images; images are
    read batch by batch. Returns ``(metrics, description for the manifest)``."""
    paths, where = fid_reference_images(cfg, layouts)
    scorer = build_fid_scorer(cfg, device=device)
    cache = fid_cache_dir(cfg)
    stats = scorer.reference_stats(paths, cache_dir=cache)
    scorer.set_reference(stats)
    scorer.update(rd.root / s.image for s in samples)
    out = scorer.compute()
    reference = {"source": where, "images": len(paths), "key": stats.meta.get("key"), "cache_dir": str(cache)}
    info = {"name": scorer.extractor.name, "fingerprint": scorer.fingerprint(),
            "extractor_fingerprint": scorer.extractor.fingerprint, "resize": scorer.resize.name, "reference": reference}  # fmt: skip
    return out, info


# --------------------------------------------------------------------------------------------
# the stage


@dataclass
class DetectorPass:
    """One detector over the generated images (and the real images when asked)."""

    role: str
    label: str
    info: dict[str, Any]
    takes_phrases: bool
    samples: list[SampleRecord]
    real: list[SampleRecord] = field(default_factory=list)


def _lvis_meta(cfg: RunConfig) -> Any:
    from gligen_eval.layouts import load_lvis_meta, resolve_source

    kind, path = resolve_source(cfg.layouts.source)
    return load_lvis_meta(path) if kind == "lvis" and path is not None else None


def _source_kind(cfg: RunConfig) -> str:
    from gligen_eval.layouts import resolve_source

    return resolve_source(cfg.layouts.source)[0]


def _layout_source_dir(cfg: RunConfig) -> Path | None:
    from gligen_eval.layouts import resolve_source

    _, path = resolve_source(cfg.layouts.source)
    return path.parent if path is not None else None


def _ratio(a: Any, b: Any) -> float | None:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or a < 0 or not b > 0:
        return None
    return float(a) / float(b)


def _order(metrics: dict[str, Any]) -> dict[str, Any]:
    """Point values first (in the order they were added), then the ``/lo`` ``/hi`` intervals."""
    ci = {k: v for k, v in metrics.items() if k.endswith(("/lo", "/hi"))}
    return {**{k: v for k, v in metrics.items() if k not in ci}, **ci}


def score_run(
    rd: store.RunDir,
    cfg: RunConfig,
    layouts: Sequence[Layout],
    samples: Sequence[SampleRecord],
    *,
    device: str,
    dist: distributed.DistInfo | None = None,
    progress: bool = True,
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Run every configured scorer; writes instances/clip/breakdowns/metrics on rank 0.

    Returns ``(metrics, scorers)``: ``metrics`` is ``None`` on ranks other than 0; ``scorers``
    describes every model used for scoring (name, fingerprint) for the manifest.
    """
    dist = dist or distributed.DistInfo()
    sc = cfg.scoring
    by_id = {lay.layout_id: lay for lay in layouts}
    kp_layouts = [lay for lay in layouts if has_keypoints(lay)] if cfg.pose is not None else []
    kp_ids = {lay.layout_id for lay in kp_layouts}
    kp_samples = [s for s in samples if s.layout_id in kp_ids]
    reals = {r.layout.layout_id: r for r in real_images(layouts)} if sc.real_images else {}

    # -- detector passes (every rank, its share of the chunks) ------------------------------------
    jobs: list[tuple[str, DetectorConfig, list[SampleRecord], list[Layout]]] = [
        ("detector", cfg.detector, list(samples), list(layouts) if sc.real_images else [])]
    for d in cfg.extra_detectors:
        jobs.append(("extra", d, list(samples), []))
    if cfg.pose is not None and kp_samples:
        jobs.append(("pose", cfg.pose, kp_samples, kp_layouts if sc.real_images else []))
    elif cfg.pose is not None:
        log.warning("a pose model is configured but no layout has persons with keypoints: no kp/ metrics")

    passes: list[DetectorPass] = []
    scorers: dict[str, Any] = {}
    lvis_source = _lvis_meta(cfg)
    labels: set[str] = set()
    for role, dcfg, gen, real_lays in jobs:
        det = build_scoring_detector(dcfg, device=device)
        takes = bool(getattr(det, "takes_phrases", False))
        label = dcfg.name or str(det.name).replace("/", "_")
        if role == "extra":
            if label in labels:
                raise ConfigError(f"two extra_detectors are both named {label!r}; give them distinct 'name' keys")
            labels.add(label)
            role = f"detector@{label}"
        info = {"name": det.name, "fingerprint": det.fingerprint(), "kind": dcfg.kind, "weights": dcfg.weights}
        classes = detector_classes(det) if role != "pose" else None
        if classes is not None:
            info["classes"] = classes
            if lvis_source is None:
                check_detector_classes(layouts, classes, f"{det.name} ({role})")
        phrases_of = (lambda s: by_id[s.layout_id].phrases) if takes else None
        if takes and getattr(det, "prompts", "phrases") == "categories":  # ask for the classes, not the phrases
            phrases_of = lambda s: list(dict.fromkeys(phrase_classes(by_id[s.layout_id]).values()))  # noqa: E731
        detect_missing(rd, gen, det, batch_size=dcfg.batch_size, dist=dist, progress=progress, desc=role,
                       phrases_of=phrases_of)  # fmt: skip
        real = real_samples([reals[lay.layout_id] for lay in real_lays], with_phrases=takes)
        if real:
            detect_missing(rd, real, det, batch_size=dcfg.batch_size, dist=dist, progress=progress,
                           desc=f"{role} (real images)", phrases_of=phrases_of)  # fmt: skip
        passes.append(DetectorPass(role, label, info, takes, gen, real))
        scorers[role] = info
        del det
        _release(device)

    clip_scorer = clip_scores = None
    if cfg.clip.enabled:
        clip_scorer = build_clip_scorer(cfg.clip, device=device)
        scorers["clip"] = {"name": clip_scorer.name, "fingerprint": clip_scorer.fingerprint(),
                           "weight": clip_scorer.weight, "crop": clip_scorer.crop}  # fmt: skip
        clip_scores = clip_missing(rd, samples, layouts, clip_scorer, batch_size=cfg.clip.batch_size, dist=dist,
                                   progress=progress, reference_root=_layout_source_dir(cfg))  # fmt: skip

    cond_pass = _condition_pass(rd, cfg, layouts, samples, dist=dist, progress=progress)
    if cond_pass is not None:
        scorers["condition"] = cond_pass[0].describe()

    distributed.barrier(dist)
    if not dist.is_main:
        return None, scorers
    if dist.enabled:
        merge_rank_detections(rd)
        if clip_scorer is not None:
            merge_rank_rows(rd, CLIP_ROWS, ("sample_key", "scorer"))
            clip_scores = clip_missing(rd, samples, layouts, clip_scorer, batch_size=cfg.clip.batch_size, progress=False)
        if cond_pass is not None:
            cond_pass = _condition_pass(rd, cfg, layouts, samples, merge=True, progress=False)

    # -- metrics (rank 0) -------------------------------------------------------------------------
    lvis_meta = lvis_source
    cached = rd.detections()
    alpha = 1.0 - sc.ci_level
    n_boot = sc.bootstrap
    n_boot_ap = sc.bootstrap_ap if sc.bootstrap > 0 else 0

    def dets(p: DetectorPass, ss: Sequence[SampleRecord]) -> dict[str, list]:
        fp = p.info["fingerprint"]
        return {s.sample_key: cached[(s.sample_key, fp)] for s in ss}

    def boxes(p: DetectorPass, ss: Sequence[SampleRecord]) -> BoxEval:
        return evaluate_boxes(layouts, ss, dets(p, ss), backend=sc.backend, success_iou=sc.success_iou,
                              min_score=sc.instance_min_score, phrase_labels=p.takes_phrases, lvis_meta=lvis_meta,
                              classes=p.info.get("classes"))  # fmt: skip

    main = passes[0]
    ev = boxes(main, main.samples)
    metrics: dict[str, Any] = ev.metrics("box")
    breakdowns: dict[str, Any] = {"box/AP_per_category": ev.result.per_category,
                                  "box/instances_per_category": _per_category_instances(ev.records)}  # fmt: skip
    records = ev.records
    if sc.error_analysis and not ev.lvis:
        from gligen_eval.scoring.errors import error_metrics

        err_metrics, err_breakdowns = error_metrics(ev.gt, ev.results, prefix="box")
        metrics.update(err_metrics)
        breakdowns.update(err_breakdowns)
    if n_boot_ap:
        metrics.update(_ci("box/AP", ap_interval(ev.gt, ev.results, ev.samples, lvis_style=ev.lvis, n_boot=n_boot_ap,
                                                 alpha=alpha, seed=sc.bootstrap_seed)))  # fmt: skip
    if n_boot:
        metrics.update(instance_intervals("box", records, layouts, n_boot=n_boot, alpha=alpha, seed=sc.bootstrap_seed))
    if main.real:
        real_ev = boxes(main, main.real)
        metrics.update(real_ev.metrics("box/real"))
        metrics["box/AP_ratio"] = _ratio(metrics["box/AP"], metrics["box/real/AP"])
        breakdowns["box/real/AP_per_category"] = real_ev.result.per_category

    for p in passes[1:]:
        if p.role == "pose":
            metrics.update(_score_pose(p, layouts, dets, breakdowns, backend=sc.backend, n_boot=n_boot_ap, alpha=alpha,
                                       seed=sc.bootstrap_seed))  # fmt: skip
            continue
        xev = boxes(p, p.samples)
        xm = xev.metrics(f"box@{p.label}")
        for k in EXTRA_DETECTOR_KEYS:
            metrics[f"box@{p.label}/{k}"] = xm[f"box@{p.label}/{k}"]
        metrics[f"box@{p.label}/mIoU"] = xm[f"box@{p.label}/mIoU"]
        metrics[f"box@{p.label}/success"] = xm[f"box@{p.label}/success"]
        metrics[f"agreement/{p.label}"] = agreement_rate(records, xev.records)

    if cfg.comp.enabled:  # counts, relations and colours on the main detector's detections
        metrics.update(_score_comp(rd, cfg, layouts, main, dets(main, main.samples), records, clip_scorer, scorers,
                                   device=device))  # fmt: skip

    if clip_scores is not None:
        from gligen_eval.scoring.clip import clip_metrics

        per_layout: dict[str, list] = {}
        for s in samples:
            per_layout.setdefault(s.layout_id, []).append(clip_scores[s.sample_key])
        metrics.update(clip_metrics(per_layout, ci=n_boot > 0, n_boot=max(n_boot, 1), alpha=alpha, seed=sc.bootstrap_seed))

    if cond_pass is not None:
        from gligen_eval.scoring.consistency import condition_metrics

        metrics.update(condition_metrics(cond_pass[3], cond_pass[0], cond_pass[1], cond_pass[2], n_boot=n_boot,
                                         alpha=alpha, seed=sc.bootstrap_seed))  # fmt: skip

    if cfg.fid.enabled:
        fid_metrics, scorers["fid"] = score_fid(rd, cfg.fid, layouts, samples, device=device)
        metrics.update({k: fid_metrics[k] for k in FID_KEYS if k in fid_metrics})
        breakdowns["fid"] = {k: v for k, v in fid_metrics.items() if k not in FID_KEYS}

    from gligen_eval.scoring import quality_modern

    if quality_modern.enabled(cfg.quality):  # fd_dinov2, cmmd, prdc/*, pref/pickscore
        quality_metrics, scorers["quality"] = quality_modern.score_quality(rd, cfg, layouts, samples, device=device)
        metrics.update(quality_metrics)

    psnr = [s.extra["outside_psnr"] for s in samples if s.extra.get("outside_psnr") is not None]
    if psnr:  # inpainting: how well the region outside the boxes kept the input image
        finite = [v for v in psnr if math.isfinite(v)]
        metrics["inpaint/outside_psnr"] = float(sum(finite) / len(finite)) if finite else float("inf")
    metrics = _order(metrics)
    metrics["n_samples"] = len(samples)
    metrics["n_layouts"] = len(layouts)
    metrics["n_instances"] = len(records)
    if ev.unmapped:
        metrics["n_instances_unmapped"] = ev.unmapped
    store.write_jsonl(rd.path(store.INSTANCES), (r.to_dict() for r in records))
    store.atomic_write_json(rd.path(store.BREAKDOWNS), breakdowns)
    store.atomic_write_json(rd.path(store.METRICS), metrics)
    return metrics, scorers


def _condition_pass(rd: store.RunDir, cfg: RunConfig, layouts: Sequence[Layout], samples: Sequence[SampleRecord], *,
                    dist: distributed.DistInfo | None = None, progress: bool = True, merge: bool = False) -> Any:  # fmt: skip
    """Spatial runs: the condition-consistency rows of the generated and real images (``cond.jsonl``).
    Returns ``(scorer, generated items, real items, {key: row})``, or None for other modalities."""
    from gligen_eval.scoring import consistency as cs

    modality = cs.run_modality(rd, cfg)
    if not cs.is_spatial(modality):
        return None
    if merge:
        merge_rank_rows(rd, cs.COND_ROWS, ("key", "scorer"))
    scorer = cs.ConditionScorer(str(modality), cs.condition_options(cfg.grounding))
    items, real = cs.generated_items(samples), cs.real_items(layouts, samples)
    rows = cs.cond_missing(rd, items + real, layouts, scorer, dist=dist, progress=progress)
    return scorer, items, real, rows


def _ci(key: str, bounds: tuple[float, float]) -> dict[str, float]:
    from gligen_eval.scoring.stats import ci_keys

    return ci_keys(key, *bounds)


def _per_category_instances(records: Sequence[InstanceRecord]) -> dict[str, dict[str, float]]:
    from gligen_eval.scoring.instances import aggregate_by_category

    return aggregate_by_category(records)


def _comp_clip(cfg: RunConfig, clip_scorer: Any, *, device: str) -> Any:
    """The CLIP model of the colour check: the run's CLIP scorer when it is the same model."""
    if not cfg.comp.clip:
        return None
    model = cfg.comp.clip_model or cfg.clip.model
    if clip_scorer is not None and model == cfg.clip.model:
        return clip_scorer
    return build_clip_scorer(dataclasses.replace(cfg.clip, model=model), device=device)


def _score_comp(rd: store.RunDir, cfg: RunConfig, layouts: Sequence[Layout], p: DetectorPass, detections: dict,
                records: Sequence[InstanceRecord], clip_scorer: Any, scorers: dict[str, Any], *,
                device: str) -> dict[str, Any]:  # fmt: skip
    """``comp/`` (and ``mig/``) keys; one row per image in ``comp.jsonl``."""
    from gligen_eval.config import comp_options
    from gligen_eval.scoring import compositional as comp

    by_id = {lay.layout_id: lay for lay in layouts}
    if p.takes_phrases:
        detections = {s.sample_key: relabel_phrases(detections[s.sample_key], by_id[s.layout_id]) for s in p.samples}
    options = comp_options(cfg)
    clip = _comp_clip(cfg, clip_scorer, device=device)
    judge = comp.ClipColorJudge(clip, options.colors) if clip is not None else None
    out, rows = comp.score_compositional(rd.root, layouts, p.samples, detections, records, options, judge=judge)
    store.write_jsonl(rd.path(comp.COMP_ROWS), rows)
    sc = cfg.scoring
    if sc.bootstrap:
        out.update(comp.intervals(rows, list(out), n_boot=sc.bootstrap, alpha=1.0 - sc.ci_level, seed=sc.bootstrap_seed))
    scorers["comp"] = {"detector": p.info["fingerprint"], "clip": judge.fingerprint() if judge else None,
                       **dataclasses.asdict(options)}  # fmt: skip
    return out


def _score_pose(p: DetectorPass, layouts: Sequence[Layout], dets: Callable, breakdowns: dict[str, Any], *,
                backend: str, n_boot: int, alpha: float, seed: int) -> dict[str, Any]:  # fmt: skip
    result, gt, results = evaluate_keypoints(layouts, p.samples, dets(p, p.samples), backend=backend)
    out: dict[str, Any] = {f"kp/{k}": v for k, v in result.metrics.items()}
    breakdowns["kp/AP_per_keypoint"] = keypoint_breakdown(gt, results)
    if n_boot:
        out.update(_ci("kp/AP", ap_interval(gt, results, p.samples, iou_type="keypoints", n_boot=n_boot, alpha=alpha,
                                            seed=seed)))  # fmt: skip
    if p.real:
        real_result, _, _ = evaluate_keypoints(layouts, p.real, dets(p, p.real), backend=backend)
        out.update({f"kp/real/{k}": v for k, v in real_result.metrics.items()})
        out["kp/AP_ratio"] = _ratio(out["kp/AP"], out["kp/real/AP"])
    return out


def preflight(cfg: RunConfig, *, device: str, layouts: Sequence[Layout] | None = None) -> None:
    """Check that every scoring weight file and id exists and is readable, without building any model
    (scoring builds each once), and that the real images the scoring reads (``scoring.real_images``,
    FID's reference) are there for ``layouts``: missing weights and images fail before any image is
    generated. A spatial ``model.modality`` also builds its condition extractor (kept cached for scoring)."""
    if layouts is not None:
        if cfg.scoring.real_images:
            for lay in layouts:
                _real_image_path(lay)
        if cfg.fid.enabled:
            fid_reference_images(cfg.fid, layouts)
    check_classes = layouts is not None and _source_kind(cfg) != "lvis"
    for d in [cfg.detector, *cfg.extra_detectors, *([cfg.pose] if cfg.pose is not None else [])]:
        check_detector_weights(d)
        classes = _declared_classes(d) if check_classes and d is not cfg.pose else None
        if classes is not None:  # a closed-set detector that can name none of the phrases fails now
            check_detector_classes(layouts, classes, d.name or f"{d.kind}:{Path(d.weights).name}", quiet=True)
    from gligen_eval.scoring.clip import check_local_pretrained

    if cfg.clip.enabled and cfg.clip.model != "tiny":
        check_local_pretrained(cfg.clip.model, "CLIP model")
    if cfg.comp.enabled and cfg.comp.clip and (cfg.comp.clip_model or cfg.clip.model) != "tiny":
        check_local_pretrained(cfg.comp.clip_model or cfg.clip.model, "CLIP model of the colour check")
    if cfg.fid.enabled and cfg.fid.feature != "tiny":
        from gligen_eval.safeload import check_pickle, safetensors_keys
        from gligen_eval.scoring.quality import inception_weights_file

        path = inception_weights_file(cfg.fid.inception_weights)
        safetensors_keys(path) if path.suffix == ".safetensors" else check_pickle(path)
    from gligen_eval.scoring import quality_modern

    if quality_modern.enabled(cfg.quality):
        q = cfg.quality
        if layouts is not None and (q.fd_dinov2.enabled or q.cmmd.enabled or q.prdc.enabled):
            n_real = len(fid_reference_images(cfg.fid, layouts)[0])
            quality_modern.check_counts(q, n_real, len(layouts) * cfg.sampler.seeds_per_layout)
        quality_modern.check_weights(q)
    from gligen_eval.scoring import consistency as cs

    if cs.is_spatial(cfg.model.modality):  # a spatial modality named in the config: its extractor for the cond/ keys
        cs.check_extractor(str(cfg.model.modality), cs.condition_options(cfg.grounding))
        _release(device)


def _declared_classes(cfg: DetectorConfig) -> list[str] | None:
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


def uses_random_scoring_weights(cfg: RunConfig) -> bool:
    """Whether any scoring model of ``cfg`` has random weights (a ``.yaml`` detector, ``tiny`` CLIP/OWLv2/FID features)."""
    dets = [cfg.detector, *cfg.extra_detectors, *([cfg.pose] if cfg.pose is not None else [])]
    if any(d.weights.endswith((".yaml", ".yml")) or (d.kind == "owlv2" and d.weights == "tiny") for d in dets):
        return True
    if any(d.kind == "grounding-dino" and d.weights == "tiny" for d in dets):
        return True
    if cfg.comp.enabled and cfg.comp.clip and (cfg.comp.clip_model or cfg.clip.model) == "tiny":
        return True
    from gligen_eval.scoring.quality_modern import uses_random_weights

    if uses_random_weights(cfg.quality):
        return True
    return (cfg.clip.enabled and cfg.clip.model == "tiny") or (cfg.fid.enabled and cfg.fid.feature == "tiny")
