"""COCO / LVIS evaluation of detections (boxes and keypoints).

Three interchangeable backends compute the same numbers:

* ``"hotcoco"`` (default) -- hotcoco (Rust), over ten times faster than pycocotools inside this
  scoring path, index building included; it also does LVIS-style evaluation;
* ``"pycocotools"`` -- the reference implementation (no LVIS mode);
* ``"faster"`` -- faster-coco-eval (C++), several times faster; it also does LVIS-style evaluation
  (``lvis_style=True``: negative / not-exhaustive categories, APr/APc/APf).

Metric keys (:func:`metric_keys`), in COCO ``summarize()`` order:

* bbox: ``AP AP50 AP75 APs APm APl AR1 AR10 AR100 ARs ARm ARl`` -- the ``AR<n>`` keys follow
  ``max_dets`` (default ``(1, 10, 100)``);
* keypoints: ``AP AP50 AP75 APm APl AR AR50 AR75 ARm ARl`` (at most 20 detections per image);
* LVIS (bbox, ``lvis_style=True``, default ``max_dets=(300,)``):
  ``AP AP50 AP75 APs APm APl AR300 ARs ARm ARl APr APc APf``.

Values are the library's floats, unrounded. As in pycocotools, a value is ``-1.0`` where it is
undefined (e.g. ``APs`` when no ground-truth box is small, or every AP when there is no ground truth).
The summary means are computed here from the library's ``precision``/``recall`` arrays with the same
arithmetic as ``COCOeval.summarize()`` (bit-identical, checked by the tests), so that any ``max_dets``
works with both backends and nothing is printed.

This module gathers the COCO names in one place; they live by concern in
:mod:`~gligen_eval.scoring.coco_keys` (classes, aliases, metric keys, keypoint constants),
:mod:`~gligen_eval.scoring.coco_inputs` (checking COCO-format ground truth and results),
:mod:`~gligen_eval.scoring.coco_eval` (running the backends, summaries, results files) and
:mod:`~gligen_eval.scoring.coco_gt` (the ground truth of generated images from
:class:`~gligen_eval.records.Layout` records, one COCO image per generated sample, and
:class:`~gligen_eval.records.Detection` records as COCO results; LVIS-style layouts give LVIS inputs).
"""

from __future__ import annotations

from gligen_eval.scoring.coco_eval import (
    CocoResult, _backend_eval, _bbox_results_dataset, _hotcoco_eval, _maybe_quiet, _per_category, _summarize, _summary,
    evaluate_coco, is_lvis_gt, load_json_file, per_category_ap, run_coco_eval, score_detections_file,
)  # fmt: skip
from gligen_eval.scoring.coco_gt import (
    build_coco_gt, build_eval_inputs, category_ids, detections_to_coco_results, lvis_categories, lvis_style_of,
    person_category, result_order,
)  # fmt: skip
from gligen_eval.scoring.coco_inputs import prepare_gt, prepare_results
from gligen_eval.scoring.coco_keys import (
    BACKENDS, BBOX_KEYS, CATEGORY_ALIASES, COCO80_NAMES, COCO_KEYPOINT_SIGMAS, COCO_SKELETON, DEFAULT_BACKEND,
    DEFAULT_MAX_DETS, IOU_TYPES, KEYPOINT_KEYS, LVIS_BACKENDS, LVIS_EXTRA_KEYS, Backend, IouType, _check_choice,
    _resolve_max_dets, canonical_category, metric_keys, object_class,
)  # fmt: skip

__all__ = [
    "BACKENDS", "BBOX_KEYS", "CATEGORY_ALIASES", "COCO80_NAMES", "COCO_KEYPOINT_SIGMAS", "COCO_SKELETON",
    "DEFAULT_BACKEND", "DEFAULT_MAX_DETS", "IOU_TYPES", "KEYPOINT_KEYS", "LVIS_BACKENDS", "LVIS_EXTRA_KEYS", "Backend",
    "CocoResult", "IouType", "build_coco_gt", "build_eval_inputs", "canonical_category", "category_ids",
    "detections_to_coco_results", "evaluate_coco", "is_lvis_gt", "load_json_file", "lvis_categories", "lvis_style_of",
    "metric_keys", "object_class", "per_category_ap", "person_category", "prepare_gt", "prepare_results",
    "result_order", "run_coco_eval", "score_detections_file",
]  # fmt: skip
# (the underscored names are shared with scoring.matches, scoring.resample and scoring.errors)
_SHARED = (_backend_eval, _bbox_results_dataset, _hotcoco_eval, _maybe_quiet, _per_category, _summarize, _summary,
           _check_choice, _resolve_max_dets)  # fmt: skip
