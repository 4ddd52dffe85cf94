"""The scoring stage of a run: detectors over the run's images (cached), then metrics.

Detections are cached in ``detections.jsonl`` keyed by (sample key, detector fingerprint), so
adding a metric or a detector reuses every image and every earlier detection. Detection works in
fixed chunks of the sample order; under torch.distributed each rank takes its share of the
chunks, and rank 0 merges and scores.
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

from gligen_eval import distributed, store
from gligen_eval.config import RunConfig
from gligen_eval.records import Layout, SampleRecord


def detect_missing(
    rd: store.RunDir,
    samples: Sequence[SampleRecord],
    detector: Any,
    *,
    batch_size: int,
    dist: distributed.DistInfo | None = None,
    progress: bool = True,
    desc: str = "detect",
) -> dict[str, list]:
    """Run ``detector`` on the images without cached detections; returns {sample_key: [Detection]}
    for this rank's chunks and every cached sample."""
    from PIL import Image
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
                with Image.open(rd.root / s.image) as im:
                    images.append(im.convert("RGB"))
            dets = detector.detect(images)
            rows = []
            for s, d in zip(batch, dets):
                out[s.sample_key] = d
                rows.append({"sample_key": s.sample_key, "detector": name, "detections": [x.to_dict() for x in d]})
            store.append_jsonl(out_file, rows)
            bar.update(len(batch))
    return out


def merge_rank_detections(rd: store.RunDir) -> None:
    """Fold the per-rank detection files into ``detections.jsonl`` (rank 0, after a barrier)."""
    cached = rd.detections()
    rows = [{"sample_key": k, "detector": d, "detections": [x.to_dict() for x in v]} for (k, d), v in cached.items()]
    store.write_jsonl(rd.path(store.DETECTIONS), rows)
    for f in rd.record_files(store.DETECTIONS)[1:]:
        f.unlink()


def score_boxes(layouts: Sequence[Layout], samples: Sequence[SampleRecord], detections: dict, cfg: RunConfig):
    """COCO AP of the detections against the layout boxes, plus per-instance records."""
    from gligen_eval.scoring import coco, instances as inst

    by_id = {lay.layout_id: lay for lay in layouts}
    pairs = [(s, by_id[s.layout_id], detections[s.sample_key]) for s in samples]
    gt, results = coco.build_eval_inputs([(s.sample_key, lay, s.width, s.height, dets) for s, lay, dets in pairs])
    result = coco.run_coco_eval(gt, results, iou_type="bbox", backend=cfg.scoring.backend)
    records = []
    for s, lay, dets in pairs:
        records.extend(inst.match_instances(s, lay, dets, success_iou=cfg.scoring.success_iou,
                                            min_score=cfg.scoring.instance_min_score))  # fmt: skip
    agg = inst.aggregate(records)
    metrics: dict[str, Any] = {f"box/{k}": v for k, v in result.metrics.items()}
    metrics["box/mIoU"] = agg["mIoU"]
    metrics["box/success"] = agg["success"]
    breakdowns = {"box/AP_per_category": result.per_category}
    return metrics, breakdowns, records


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
    """Detect and score; writes instances/breakdowns/metrics on rank 0.

    Returns ``(metrics, scorers)``: ``metrics`` is ``None`` on ranks other than 0; ``scorers``
    describes every model used for scoring (name, fingerprint) for the manifest.
    """
    from gligen_eval.scoring.detectors import build_detector

    dist = dist or distributed.DistInfo()
    detector = build_detector(cfg.detector, device=device)
    scorers = {"detector": {"name": detector.name, "fingerprint": detector.fingerprint()}}
    detections = detect_missing(rd, samples, detector, batch_size=cfg.detector.batch_size, dist=dist,
                                progress=progress)  # fmt: skip
    distributed.barrier(dist)
    if not dist.is_main:
        return None, scorers
    if dist.enabled:
        merge_rank_detections(rd)
        name = detector.fingerprint()
        cached = rd.detections()
        detections = {s.sample_key: cached[(s.sample_key, name)] for s in samples}

    metrics, breakdowns, records = score_boxes(layouts, samples, detections, cfg)
    metrics["n_samples"] = len(samples)
    metrics["n_layouts"] = len(layouts)
    metrics["n_instances"] = len(records)
    store.write_jsonl(rd.path(store.INSTANCES), (r.to_dict() for r in records))
    store.atomic_write_json(rd.path(store.BREAKDOWNS), breakdowns)
    store.atomic_write_json(rd.path(store.METRICS), metrics)
    return metrics, scorers
