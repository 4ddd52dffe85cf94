"""COCO / LVIS evaluation through the three backends (hotcoco, pycocotools, faster-coco-eval), with
the summary means computed here from the library's precision / recall arrays
(see :mod:`gligen_eval.scoring.coco`), and the scoring of COCO results files."""

from __future__ import annotations

import contextlib
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from gligen_eval.errors import ConfigError, InputError
from gligen_eval.scoring.coco_inputs import _num_keypoints_of, prepare_gt, prepare_results
from gligen_eval.scoring.coco_keys import (
    BACKENDS, DEFAULT_BACKEND, IOU_TYPES, KEYPOINT_KEYS, LVIS_BACKENDS, LVIS_EXTRA_KEYS, Backend, IouType, _check_choice,
    _resolve_max_dets,
)  # fmt: skip

@dataclass(frozen=True)
class CocoResult:
    """Summary metrics plus per-category AP of one evaluation."""

    metrics: dict[str, float]
    per_category: dict[str, dict[str, float]] = field(default_factory=dict)
    """category name -> ``{"AP", "AP50", "n_gt", "n_det"}`` for categories with ground truth."""


@contextlib.contextmanager
def _maybe_quiet(quiet: bool) -> Iterator[None]:
    if quiet:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    else:
        yield


def _mean_valid(s: np.ndarray) -> float:
    v = s[s > -1]
    return float(np.mean(v)) if v.size else -1.0


def _summary(E: Any, *, ap: bool, iou: float | None = None, area: str = "all", max_det: int | None = None,
             cat_idx: Sequence[int] | None = None) -> float:  # fmt: skip
    """The arithmetic of ``COCOeval._summarize`` on the accumulated arrays."""
    p = E.params
    aind = p.areaRngLbl.index(area)
    mind = list(p.maxDets).index(p.maxDets[-1] if max_det is None else max_det)
    s = np.asarray(E.eval["precision"] if ap else E.eval["recall"])
    if iou is not None:
        s = s[np.where(iou == np.asarray(p.iouThrs))[0]]
    if ap:
        s = s[:, :, :, aind, mind] if cat_idx is None else s[:, :, list(cat_idx), aind, mind]
    else:
        s = s[:, :, aind, mind] if cat_idx is None else s[:, list(cat_idx), aind, mind]
    return _mean_valid(s)


def _summarize(E: Any, iou_type: str, lvis_style: bool, max_dets: tuple[int, ...], cats: list[Mapping[str, Any]]) -> dict[str, float]:
    if iou_type == "keypoints":
        vals = [
            _summary(E, ap=True), _summary(E, ap=True, iou=0.5), _summary(E, ap=True, iou=0.75),
            _summary(E, ap=True, area="medium"), _summary(E, ap=True, area="large"),
            _summary(E, ap=False), _summary(E, ap=False, iou=0.5), _summary(E, ap=False, iou=0.75),
            _summary(E, ap=False, area="medium"), _summary(E, ap=False, area="large"),
        ]  # fmt: skip
        return dict(zip(KEYPOINT_KEYS, vals))
    out = {
        "AP": _summary(E, ap=True),
        "AP50": _summary(E, ap=True, iou=0.5),
        "AP75": _summary(E, ap=True, iou=0.75),
        "APs": _summary(E, ap=True, area="small"),
        "APm": _summary(E, ap=True, area="medium"),
        "APl": _summary(E, ap=True, area="large"),
    }
    for m in max_dets:
        out[f"AR{m}"] = _summary(E, ap=False, max_det=m)
    out["ARs"] = _summary(E, ap=False, area="small")
    out["ARm"] = _summary(E, ap=False, area="medium")
    out["ARl"] = _summary(E, ap=False, area="large")
    if lvis_style:
        by_id = {c["id"]: c for c in cats}
        cat_ids = list(E.params.catIds)
        for key, freq in zip(LVIS_EXTRA_KEYS, ("r", "c", "f")):
            idx = [k for k, cid in enumerate(cat_ids) if by_id[cid].get("frequency") == freq]
            out[key] = _summary(E, ap=True, cat_idx=idx)
    return out


def _per_category(E: Any, gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    names = {c["id"]: c["name"] for c in gt["categories"]}
    n_gt = Counter(a["category_id"] for a in gt["annotations"] if not a.get("iscrowd", 0))
    n_det = Counter(r["category_id"] for r in results)
    out: dict[str, dict[str, float]] = {}
    for k, cid in enumerate(E.params.catIds):
        if not n_gt.get(cid):
            continue
        out[names[cid]] = {
            "AP": _summary(E, ap=True, cat_idx=[k]),
            "AP50": _summary(E, ap=True, iou=0.5, cat_idx=[k]),
            "n_gt": int(n_gt[cid]),
            "n_det": int(n_det.get(cid, 0)),
        }
    return out


def _bbox_results_dataset(gt: Mapping[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    """The detections as a COCO dataset, with the fields ``COCO.loadRes`` gives box results.

    (``loadRes`` also adds a polygon per box for segmentation scoring, which box scoring never reads.)
    """
    for i, r in enumerate(results, start=1):
        bb = r["bbox"]
        r["area"] = bb[2] * bb[3]
        r["id"] = i
        r["iscrowd"] = 0
    return {"info": gt.get("info", {}), "images": list(gt["images"]), "categories": list(gt["categories"]),
            "annotations": results}  # fmt: skip


def _backend_eval(gt: dict[str, Any], results: list[dict[str, Any]], *, iou_type: str, backend: str,
                  lvis_style: bool, max_dets: tuple[int, ...], kpt_sigmas: Sequence[float] | None, quiet: bool) -> Any:  # fmt: skip
    """Run the backend's evaluate + accumulate; ``results`` are private copies that get annotated."""
    if backend == "hotcoco":
        E = _hotcoco_eval(gt, results, iou_type=iou_type, lvis_style=lvis_style, kpt_sigmas=kpt_sigmas)
    elif backend == "faster":
        from faster_coco_eval import COCO, COCOeval_faster

        printer = (lambda *a, **k: None) if quiet else print
        coco_gt = COCO(gt, print_function=printer)
        if iou_type == "bbox":
            coco_dt = COCO(_bbox_results_dataset(gt, results), print_function=printer)
        else:
            coco_dt = coco_gt.loadRes(results)
        E = COCOeval_faster(coco_gt, coco_dt, iou_type, lvis_style=lvis_style, print_function=printer,
                            kpt_oks_sigmas=None if kpt_sigmas is None else list(kpt_sigmas))  # fmt: skip
    else:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        if results and iou_type != "bbox":
            coco_dt = coco_gt.loadRes(results)
        else:  # (pycocotools' loadRes also fails on an empty list)
            coco_dt = COCO()
            coco_dt.dataset = _bbox_results_dataset(gt, results)
            coco_dt.createIndex()
        E = COCOeval(coco_gt, coco_dt, iou_type)
        if kpt_sigmas is not None:
            E.params.kpt_oks_sigmas = np.asarray(kpt_sigmas, dtype=float)
    E.params.maxDets = list(max_dets)
    E.evaluate()
    E.accumulate()
    if not quiet:
        try:
            E.summarize()  # the library's familiar table (pycocotools needs three max_dets for it)
        except Exception:  # noqa: BLE001 - printing only
            pass
    return E


def _hotcoco_eval(gt: dict[str, Any], results: list[dict[str, Any]], *, iou_type: str, lvis_style: bool,
                  kpt_sigmas: Sequence[float] | None) -> Any:  # fmt: skip
    """A hotcoco ``COCOeval`` on our dicts (not yet evaluated); the caller sets ``maxDets``."""
    import hotcoco

    coco_gt = hotcoco.COCO(gt)
    if iou_type == "bbox" or not results:
        coco_dt = hotcoco.COCO(_bbox_results_dataset(gt, results) if iou_type == "bbox" else
                               {"images": list(gt["images"]), "categories": list(gt["categories"]), "annotations": []})
    else:
        coco_dt = coco_gt.load_res(results)
    E = hotcoco.COCOeval(coco_gt, coco_dt, iou_type, lvis_style=lvis_style)
    if kpt_sigmas is not None:
        E.params.kpt_oks_sigmas = [float(v) for v in kpt_sigmas]
    return E


def run_coco_eval(
    gt: Mapping[str, Any],
    results: Sequence[Mapping[str, Any]],
    *,
    iou_type: IouType = "bbox",
    backend: Backend = DEFAULT_BACKEND,
    lvis_style: bool = False,
    max_dets: int | Sequence[int] | None = None,
    kpt_sigmas: Sequence[float] | None = None,
    quiet: bool = True,
    gt_path: str | None = None,
    results_path: str | None = None,
) -> CocoResult:
    """Evaluate COCO-format ``results`` against the COCO/LVIS-format ``gt`` dict.

    Neither input is modified. Bad records raise :class:`InputError` naming ``gt_path`` /
    ``results_path`` and the record; a bad argument raises :class:`ConfigError`.
    """
    _check_choice("iou_type", iou_type, IOU_TYPES)
    _check_choice("backend", backend, BACKENDS)
    if lvis_style and iou_type != "bbox":
        raise ConfigError("LVIS-style evaluation is defined for boxes only (iou_type='bbox')")
    if lvis_style and backend not in LVIS_BACKENDS:
        raise ConfigError(f"LVIS-style evaluation needs backend {' or '.join(map(repr, LVIS_BACKENDS))} "
                          "(pycocotools has no LVIS mode)")
    md = _resolve_max_dets(iou_type, lvis_style, max_dets)
    if kpt_sigmas is not None and len(kpt_sigmas) == 0:
        raise ConfigError("kpt_sigmas must not be empty")
    g = prepare_gt(gt, iou_type=iou_type, path=gt_path)
    if lvis_style:
        for i, c in enumerate(g["categories"]):
            if c.get("frequency") not in ("r", "c", "f"):
                raise InputError("LVIS-style evaluation needs 'frequency' r/c/f on every category",
                                 path=gt_path, record=f"categories[{i}]")  # fmt: skip
    r = prepare_results(list(results) if isinstance(results, tuple) else results, g, iou_type=iou_type, path=results_path)
    if kpt_sigmas is not None:
        for i, c in enumerate(g["categories"]):
            if _num_keypoints_of(c) != len(kpt_sigmas):
                raise ConfigError(f"kpt_sigmas has {len(kpt_sigmas)} values but category {c['name']!r} has "
                                  f"{_num_keypoints_of(c)} keypoints")  # fmt: skip
    with _maybe_quiet(quiet):
        E = _backend_eval(g, r, iou_type=iou_type, backend=backend, lvis_style=lvis_style,
                          max_dets=md, kpt_sigmas=kpt_sigmas, quiet=quiet)  # fmt: skip
    metrics = _summarize(E, iou_type, lvis_style, md, g["categories"])
    return CocoResult(metrics=metrics, per_category=_per_category(E, g, r))


def evaluate_coco(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]], **options: Any) -> dict[str, float]:
    """COCO summary metrics (keys: :func:`~gligen_eval.scoring.coco_keys.metric_keys`) of
    :func:`run_coco_eval` with the same options. Empty ``results`` give AP 0."""
    return run_coco_eval(gt, results, **options).metrics


def per_category_ap(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]], **options: Any) -> dict[str, dict[str, float]]:
    """Per category (by name): ``AP`` (IoU .50:.95), ``AP50``, ``n_gt`` and ``n_det``, for categories with
    ground truth (:func:`run_coco_eval` with the same options)."""
    return run_coco_eval(gt, results, **options).per_category


# --------------------------------------------------------------------------------------------
# files (bring-your-own detector)


def load_json_file(path: str | Path, what: str) -> Any:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} file not found", path=str(p))
    try:
        with p.open("rb") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise InputError(f"not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})", path=str(p)) from None
    except UnicodeDecodeError:
        raise InputError("not a UTF-8 JSON file", path=str(p)) from None


def is_lvis_gt(gt: Mapping[str, Any]) -> bool:
    """LVIS-format annotations: every category carries a ``frequency`` group."""
    cats = gt.get("categories") if isinstance(gt, Mapping) else None
    return bool(cats) and all(isinstance(c, Mapping) and c.get("frequency") in ("r", "c", "f") for c in cats)


def score_detections_file(
    layouts_json: str | Path,
    detections_json: str | Path,
    iou_type: IouType = "bbox",
    backend: Backend = DEFAULT_BACKEND,
    *,
    lvis_style: bool | None = None,
    max_dets: int | Sequence[int] | None = None,
    quiet: bool = True,
) -> dict[str, float]:
    """Score a COCO results file against a COCO/LVIS annotation file.

    ``lvis_style=None`` switches LVIS-style evaluation on for LVIS files (categories with
    ``frequency``); LVIS evaluation needs an LVIS-capable backend (``hotcoco`` or ``faster``).
    """
    gt = load_json_file(layouts_json, "annotations")
    res = load_json_file(detections_json, "detections")
    if lvis_style is None:
        lvis = iou_type == "bbox" and is_lvis_gt(gt)
    else:
        lvis = bool(lvis_style)
    if lvis and backend not in LVIS_BACKENDS:
        raise ConfigError(f"{layouts_json}: LVIS annotations are scored LVIS-style, which needs --backend "
                          f"{' or '.join(LVIS_BACKENDS)}")
    return run_coco_eval(gt, res, iou_type=iou_type, backend=backend, lvis_style=lvis, max_dets=max_dets,
                         quiet=quiet, gt_path=str(layouts_json), results_path=str(detections_json)).metrics  # fmt: skip

