"""The CLIP pass of a run: CLIP scores of every image, cached in ``clip.jsonl``."""

from __future__ import annotations

import os
from typing import Any, Sequence

from gligen_eval import distributed, store
from gligen_eval.chunks import process_missing
from gligen_eval.config import ClipConfig
from gligen_eval.records import Layout, SampleRecord

CLIP_ROWS = "clip.jsonl"


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
    from gligen_eval.scoring.clip import ClipSampleScores
    from gligen_eval.scoring.detection import read_images

    dist = dist or distributed.DistInfo()
    fp = scorer.fingerprint()
    by_id = {lay.layout_id: lay for lay in layouts}
    out: dict[str, Any] = {}
    for f in rd.record_files(CLIP_ROWS):
        for r in store.iter_jsonl(f):
            if r.get("scorer") == fp:
                out[r["sample_key"]] = ClipSampleScores(r["clip/global"], list(r["clip/regional"]), list(r["clip/image"]))
    out = {s.sample_key: out[s.sample_key] for s in samples if s.sample_key in out}
    out_file = rd.rank_file(CLIP_ROWS, dist.rank if dist.enabled else None)

    def process(batch: Sequence[SampleRecord]) -> None:
        lays = [by_id[s.layout_id] for s in batch]
        scores = scorer.score_layouts(read_images(rd, batch), lays, reference_root=reference_root)
        rows = []
        for s, lay, sc in zip(batch, lays, scores):
            out[s.sample_key] = sc
            rows.append({"sample_key": s.sample_key, "layout_id": s.layout_id, "seed": s.seed, "image": s.image,
                         "scorer": fp, "caption": lay.caption, "phrases": lay.phrases, **sc.to_dict()})  # fmt: skip
        store.append_jsonl(out_file, rows)

    process_missing(samples, is_done=lambda s: s.sample_key in out, process=process, chunk_size=batch_size, dist=dist,
                    progress=progress, desc="clip")  # fmt: skip
    return out


