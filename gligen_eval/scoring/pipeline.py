"""The scoring stage of a run: every configured scorer over the run's images, then ``metrics.json``.

The scorers (:mod:`gligen_eval.scoring.scorers`, one module each; the protocol in
:mod:`gligen_eval.scoring.protocol`) run in their ``order``; metric keys in brackets:

* ``detector`` -- COCO box AP of the detections against the layout boxes [``box/AP`` ... ``box/ARl``],
  per-instance IoU, hits and reasons (``instances.jsonl``) [``box/mIoU``, ``box/success``]. When the
  layouts come from an LVIS file, AP is LVIS-style (the images' negative and not-exhaustive
  categories count) and adds [``box/APr`` ``box/APc`` ``box/APf``]. A detector with
  ``takes_phrases`` (the open-vocabulary ``owlv2``, ``grounding-dino``) is asked for each image's
  layout phrases, and the phrases it returns are mapped back to the objects' categories (free-phrase
  layouts without categories: each phrase is its own category). With ``scoring.real_images`` the
  same detector scores the layouts' real images [``box/real/*``, ``box/AP_ratio``]; with
  ``scoring.error_analysis`` TIDE-style ΔAP per error type [``box/tide/*``] and the area under AP
  over IoU thresholds [``box/AP_iou_auc``] (:mod:`gligen_eval.scoring.errors`).
* ``extra_detectors`` -- each further detector side by side [``box@<name>/AP`` ``AP50`` ``AP75``
  ``mIoU`` ``success``] and its per-instance agreement with ``detector`` [``agreement/<name>``].
* ``pose`` -- OKS AP on the images of layouts whose persons carry keypoints [``kp/AP`` ... ``kp/ARl``],
  a per-keypoint breakdown (``breakdowns.json``), the real-image ceiling [``kp/real/*``, ``kp/AP_ratio``].
* ``fid`` -- FID and KID against the real images [``fid``, ``kid``, ``kid/std``].
* ``quality`` -- [``fd_dinov2``, ``cmmd``, ``prdc/*``, ``pref/pickscore``]
  (:mod:`gligen_eval.scoring.quality_modern`).
* ``clip`` -- CLIP scores [``clip/global``, ``clip/regional``, ``clip/image``], rows in ``clip.jsonl``.
* ``condition`` -- spatial modalities: the condition re-extracted from each image against the
  layout's input condition [``cond/<name>``] and on the real images [``cond/real/<name>``], rows in
  ``cond.jsonl`` (:mod:`gligen_eval.scoring.consistency`).
* ``comp`` -- counts, relations and colours on ``detector``'s detections, COCO-MIG with ``comp.mig``
  [``comp/*``, ``mig/*``], rows in ``comp.jsonl`` (:mod:`gligen_eval.scoring.compositional`).
* ``inpaint`` -- inpainting samples: PSNR outside the boxes [``inpaint/outside_psnr``].
* the config's ``scorers`` mapping -- any further scorer, built-in or ``"package.module:Class"``.

``scoring.bootstrap`` adds percentile intervals over layouts (seeded) [``<key>/lo``, ``<key>/hi``]
to ``box/AP``, ``kp/AP`` (``scoring.bootstrap_ap`` draws, per-image matches re-accumulated), the
per-instance, CLIP, condition and compositional means.

Caching: every pass keeps its rows keyed by (sample key, model fingerprint) (``detections.jsonl``,
``clip.jsonl``, ``cond.jsonl``; real images get the key ``real-<hash of the file's bytes>``); FID
reference statistics are cached under ``fid.cache_dir``. Scoring again with another metric or another
detector reuses every image and every earlier result.

Distributed: every pass works in fixed chunks of the sample order (:mod:`gligen_eval.chunks`); each
rank takes its share and appends to its own record file. Rank 0 merges the record files and computes
every metric.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from gligen_eval import distributed, schema, store
from gligen_eval.config import RunConfig
from gligen_eval.records import Layout, SampleRecord

log = logging.getLogger("gligen_eval")


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
    """Run every configured scorer; writes instances/breakdowns/metrics (and the scorers' row files) on rank 0.

    Returns ``(metrics, scorers)``: ``metrics`` is ``None`` on ranks other than 0; ``scorers``
    describes every model used for scoring (name, fingerprint) for the manifest.
    """
    from gligen_eval.scoring.coco import lvis_style_of
    from gligen_eval.scoring.detection import merge_rank_detections
    from gligen_eval.scoring.protocol import ScoreContext, configured_scorers

    dist = dist or distributed.DistInfo()
    ctx = ScoreContext(rd, cfg, layouts, samples, device=device, dist=dist, progress=progress)
    ctx.shared["lvis"] = lvis_style_of(layouts)
    scorers = configured_scorers(cfg)
    for s in scorers:  # every rank: its share of what is not cached
        s.run(ctx)
    described = _describe(scorers)
    distributed.barrier(dist)
    if not dist.is_main:
        return None, described
    if dist.enabled:
        merge_rank_detections(rd)
        for s in scorers:
            s.merge(ctx)
    ctx.shared["detections"] = rd.detections()

    metrics: dict[str, Any] = {}
    breakdowns: dict[str, Any] = {}
    for s in scorers:  # rank 0: the metrics, in order (a scorer may read what earlier ones shared)
        out = s.score(ctx)
        metrics.update(out.metrics)
        breakdowns.update(out.breakdowns)
    described = _describe(scorers)
    box = ctx.shared["box"]
    metrics = _order(metrics)
    metrics[schema.N_SAMPLES] = len(samples)
    metrics[schema.N_LAYOUTS] = len(layouts)
    metrics[schema.N_INSTANCES] = len(box.records)
    if box.unmapped:
        metrics[schema.N_INSTANCES_UNMAPPED] = box.unmapped
    store.write_jsonl(rd.path(store.INSTANCES), (r.to_dict() for r in box.records))
    store.atomic_write_json(rd.path(store.BREAKDOWNS), breakdowns)
    store.atomic_write_json(rd.path(store.METRICS), metrics)
    return metrics, described


def _describe(scorers: Sequence[Any]) -> dict[str, Any]:
    """The manifest's ``models`` entries of the scorers; a user scorer's entry also records its key specs,
    so that reports and compare of the run know them without importing its code."""
    from gligen_eval.scoring.protocol import builtin_scorers, spec_record

    builtin = set(builtin_scorers())
    out: dict[str, Any] = {}
    for s in scorers:
        roles = s.describe()
        if type(s) not in builtin:
            roles = {role: dict(info) for role, info in (roles or {s.name: {"name": s.name}}).items()}
            for info in roles.values():
                info["keys"] = [spec_record(k) for k in s.keys]
        out.update(roles)
    return out


def preflight(cfg: RunConfig, *, device: str, layouts: Sequence[Layout] | None = None) -> None:
    """Every scorer's check before any image is generated: weight files and ids exist and are readable,
    the real images it reads are there for ``layouts``; builds no model (scoring builds each once). A
    spatial ``model.modality`` also builds its condition extractor (kept cached for scoring)."""
    from gligen_eval.scoring.protocol import configured_scorers

    for s in configured_scorers(cfg):
        s.check(layouts, device=device)


def uses_random_scoring_weights(cfg: RunConfig) -> bool:
    """Whether any scoring model of ``cfg`` has random weights (a ``.yaml`` detector, ``tiny`` CLIP/OWLv2/FID features)."""
    from gligen_eval.scoring.protocol import configured_scorers

    return any(s.random_weights() for s in configured_scorers(cfg))
