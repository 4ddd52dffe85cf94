"""Box scoring: layout objects against detections (COCO/LVIS box AP, per-instance records), and the
class vocabulary of closed-set detectors (which objects they can be asked about)."""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from gligen_eval.errors import ConfigError
from gligen_eval.records import Detection, InstanceRecord, Layout, SampleRecord

log = logging.getLogger("gligen_eval")


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
    if classes is None or layout.lvis_style:  # LVIS-style AP has its own category table
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
    classes: Sequence[str] | None = None,
) -> BoxEval:
    """COCO (or LVIS-style) box AP of ``detections[sample_key]`` against the layout boxes, and the
    per-instance records. ``phrase_labels``: detection labels are layout phrases (relabelled to the
    objects' classes); LVIS-style layouts (:func:`~gligen_eval.scoring.coco.lvis_style_of`) are scored
    LVIS-style, from what they carry; ``classes``: a closed-set detector's classes (:func:`detector_classes`):
    objects of other classes get neither ground truth nor instance records (:func:`scored_layout`)."""
    from gligen_eval.scoring import coco, instances as inst

    by_id = {lay.layout_id: lay for lay in layouts}
    pairs = []
    for s in samples:
        lay = by_id[s.layout_id]
        dets = list(detections[s.sample_key])
        pairs.append((s, lay, relabel_phrases(dets, lay) if phrase_labels else dets))
    lvis = coco.lvis_style_of(p[1] for p in pairs)
    if lvis and backend not in ("hotcoco", "faster"):
        raise ConfigError("LVIS layouts are scored LVIS-style, which needs scoring.backend: hotcoco or faster")
    if lvis:
        classes = None  # LVIS-style AP has its own category table
    gt, results = coco.build_eval_inputs([(s.sample_key, scored_layout(lay, classes), s.width, s.height, d)
                                          for s, lay, d in pairs])  # fmt: skip
    result = coco.run_coco_eval(gt, results, iou_type="bbox", backend=backend, lvis_style=lvis)
    records = []
    vocab = None if classes is None else set(classes)
    for s, lay, dets in pairs:
        rows = inst.match_instances(s, lay, dets, success_iou=success_iou, min_score=min_score)
        records.extend(r for r in rows if vocab is None or coco.object_class(lay.objects[r.object_index]) in vocab)
    unmapped = sum(len(lay.objects) for _, lay, _ in pairs) - len(records)
    return BoxEval(result, records, gt, results, list(samples), lvis, unmapped)


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




def evaluate_pass(ctx: Any, p: Any, samples: Sequence[SampleRecord]) -> BoxEval:
    """:func:`evaluate_boxes` of one detector pass (:class:`~gligen_eval.scoring.detection.DetectorPass`)
    on ``samples`` with the run's scoring settings; ``ctx`` is the
    :class:`~gligen_eval.scoring.protocol.ScoreContext` (its cached detections)."""
    sc = ctx.cfg.scoring
    return evaluate_boxes(ctx.layouts, samples, p.detections(ctx.shared["detections"], samples), backend=sc.backend,
                          success_iou=sc.success_iou, min_score=sc.instance_min_score, phrase_labels=p.takes_phrases,
                          classes=p.info.get("classes"))  # fmt: skip


def per_category_instances(records: Sequence[InstanceRecord]) -> dict[str, dict[str, float]]:
    from gligen_eval.scoring.instances import aggregate_by_category

    return aggregate_by_category(records)


def ratio(a: Any, b: Any) -> float | None:
    """Generated / real (``None`` where undefined: COCO's -1, or a real value of 0)."""
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or a < 0 or not b > 0:
        return None
    return float(a) / float(b)
