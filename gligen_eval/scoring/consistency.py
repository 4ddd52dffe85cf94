"""The condition-consistency pass of a spatial run: re-extract, compare, cache, aggregate.

For every generated image of a spatial modality (hed, canny, depth, normal, sem) the condition is
re-extracted with the extractor that made the input maps (:func:`gligen_eval.conditions.extract_conditions`)
and compared with the layout's input condition (:func:`gligen_eval.conditions.load_condition` at the
image's size, turned back into a 0–255 map) by :mod:`gligen_eval.scoring.condition`.

* Rows: one per image in ``cond.jsonl``, keyed by (sample key, scorer fingerprint), with every
  ``cond/<name>`` value (``null`` where undefined) and the re-extracted map's file
  (``cond_maps/<sample key>.png``) and of the input condition it was compared with
  (``cond_maps/input-<hash of layout and size>.png``), for galleries. Scoring again reuses every row; the pass works in
  fixed chunks of the sample order, each rank appending to its own part (like CLIP).
* Metrics: ``cond/<name>`` is the mean over the images where it is defined (so
  ``cond/normal_angle_median`` is the mean of the per-image medians and ``cond/sem_miou`` the mean
  of the per-image mIoUs); ``cond/<name>/lo`` ``/hi`` are bootstrap intervals over layouts (pooled
  over each layout's images).
* Real-image ceiling: for the layouts whose real image (``Layout.image_path``) exists, the same
  extractor on that image (center-cropped and resized to the generated size, bicubic) against the
  condition: ``cond/real/<name>``, the mean over those layouts. When the condition was itself
  extracted from that image, the ceiling shows only what resizing loses.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from gligen_eval import distributed, store
from gligen_eval.hashing import file_sha256
from gligen_eval.imageio import pil_open
from gligen_eval.records import Layout, SampleRecord, stable_hash
from gligen_eval.scoring import condition as cm

COND_ROWS = "cond.jsonl"
COND_MAPS = "cond_maps"
ROW_VERSION = 1
"""Bumped when the comparison of the maps changes, so that cached rows are recomputed."""


@dataclass(frozen=True)
class CondItem:
    """One image to score: a generated sample or a layout's real image (``image`` absolute for real ones)."""

    key: str
    layout_id: str
    seed: int
    image: str
    width: int
    height: int
    real: bool = False


@dataclass
class ConditionScorer:
    """Re-extracts ``modality``'s condition from images and compares it with the layouts' input condition.

    ``options`` are the run's condition options (:data:`gligen_eval.conditions.CONDITION_OPTIONS`),
    given to both the extractor and the condition loader.
    """

    modality: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"condition consistency ({self.modality})"

    @property
    def keys(self) -> list[str]:
        return [f"{cm.PREFIX}/{n}" for n in cm.metric_names(self.modality)]

    def fingerprint(self) -> str:
        """Changes with the modality, the maps' options and :data:`ROW_VERSION` (not with the extraction device)."""
        opts = {k: v for k, v in self.options.items() if k != "extract_device"}
        return stable_hash({"modality": self.modality, "options": opts, "version": ROW_VERSION})

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "fingerprint": self.fingerprint(), "modality": self.modality,
                "options": dict(self.options), "keys": self.keys}  # fmt: skip

    def target(self, layout: Layout, width: int, height: int) -> Any:
        """The layout's input condition as a 0–255 map (sem: labels) of ``height`` x ``width`` (loaded square at
        the larger side, as the official preprocessing makes it; a non-square image gets it resized, nearest)."""
        from gligen_eval import conditions

        size = max(width, height)
        target = cm.condition_to_255(conditions.load_condition(layout, self.modality, size=size, **self.options),
                                     self.modality)  # fmt: skip
        if (width, height) != (size, size):
            target = _resize_map(target, width, height)
        return target

    def extract(self, images: Sequence[Any]) -> list[Any]:
        """The re-extracted maps of PIL images (0–255 maps, sem labels), one extractor load for all."""
        import numpy as np

        from gligen_eval import conditions

        return [np.asarray(m) for m in conditions.extract_conditions(list(images), self.modality, **self.options)]

    def compare(self, pred: Any, target: Any) -> dict[str, float]:
        """``{cond/<name>: value}`` of a re-extracted map against the input condition (resized to it if needed)."""
        if pred.shape[:2] != target.shape[:2]:
            pred = _resize_map(pred, target.shape[1], target.shape[0])
        return cm.compare_maps(self.modality, pred, target)


def _resize_map(x: Any, width: int, height: int) -> Any:
    """A map resized to ``width`` x ``height`` by nearest pixel centres (any dtype; labels stay labels)."""
    import numpy as np

    arr = np.asarray(x)
    h, w = arr.shape[:2]
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
    return arr[rows][:, cols]


def _fit_real(image: Any, width: int, height: int) -> Any:
    """The real image center-cropped to the generated aspect ratio and resized (bicubic) to its size."""
    from PIL import Image

    w, h = image.size
    scale = min(w / width, h / height)
    cw, ch = round(width * scale), round(height * scale)
    left, top = int(round((w - cw) / 2.0)), int(round((h - ch) / 2.0))  # rounded like torchvision's center_crop
    return image.crop((left, top, left + cw, top + ch)).resize((width, height), Image.BICUBIC)


def _save_map(path: Path, pred: Any) -> None:
    import numpy as np
    from PIL import Image

    arr = np.asarray(pred)
    arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8) if arr.dtype != np.uint8 else arr
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # ranks may write the same input condition
    Image.fromarray(arr).save(tmp, format="PNG")
    tmp.replace(path)


def generated_items(samples: Iterable[SampleRecord]) -> list[CondItem]:
    return [CondItem(s.sample_key, s.layout_id, s.seed, s.image, s.width, s.height) for s in samples]


def real_items(layouts: Iterable[Layout], samples: Sequence[SampleRecord]) -> list[CondItem]:
    """One item per layout with a readable real image file, at the size of that layout's first sample."""
    size = {}
    for s in samples:
        size.setdefault(s.layout_id, (s.width, s.height))
    out = []
    for lay in layouts:
        if not lay.image_path or lay.layout_id not in size or not Path(lay.image_path).is_file():
            continue
        p = Path(lay.image_path).resolve()
        w, h = size[lay.layout_id]
        key = "real-" + stable_hash([file_sha256(p, length=24), lay.content_hash(), w, h], length=20)
        out.append(CondItem(key, lay.layout_id, 0, str(p), w, h, real=True))
    return out


def _read_rgb(path: Path, item: CondItem) -> Any:
    from PIL import UnidentifiedImageError

    from gligen_eval.errors import InputError

    try:
        with pil_open(path) as im:
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        what = "real image" if item.real else "image"
        raise InputError(f"cannot read {what} ({e})", path=str(path), record=f"layout {item.layout_id}") from None


def cached_rows(rd: store.RunDir, fingerprint: str) -> dict[str, dict[str, Any]]:
    """{item key: row} of ``cond.jsonl`` (and its rank parts) for one scorer fingerprint."""
    out: dict[str, dict[str, Any]] = {}
    for f in rd.record_files(COND_ROWS):
        for r in store.iter_jsonl(f):
            if r.get("scorer") == fingerprint:
                out[r["key"]] = r
    return out


def cond_missing(
    rd: store.RunDir,
    items: Sequence[CondItem],
    layouts: Sequence[Layout],
    scorer: ConditionScorer,
    *,
    chunk_size: int = 8,
    dist: distributed.DistInfo | None = None,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Score the items without a cached row; returns {item key: row} for this rank's chunks and every
    cached item. A row holds ``cond/<name>`` values (``None`` where undefined)."""
    from gligen_eval.chunks import process_missing

    dist = dist or distributed.DistInfo()
    fp = scorer.fingerprint()
    by_id = {lay.layout_id: lay for lay in layouts}
    cached = cached_rows(rd, fp)
    out = {it.key: cached[it.key] for it in items if it.key in cached}
    out_file = rd.rank_file(COND_ROWS, dist.rank if dist.enabled else None)
    targets: dict[tuple[str, int, int], Any] = {}  # one input condition per layout and size

    def process(chunk: Sequence[CondItem]) -> None:
        batch = [it for it in chunk if it.key not in out]
        images = []
        for it in batch:
            image = _read_rgb(Path(it.image) if it.real else rd.root / it.image, it)
            images.append(_fit_real(image, it.width, it.height) if it.real else image)
        rows = []
        for it, image, pred in zip(batch, images, scorer.extract(images)):
            tkey = (it.layout_id, image.width, image.height)
            condition = f"{COND_MAPS}/input-{stable_hash(list(tkey))}.png"
            if tkey not in targets:
                targets[tkey] = scorer.target(by_id[it.layout_id], image.width, image.height)
                _save_map(rd.root / condition, targets[tkey])  # the input condition, for galleries
            values = scorer.compare(pred, targets[tkey])
            rel = f"{COND_MAPS}/{it.key}.png"
            _save_map(rd.root / rel, pred)
            row = {"key": it.key, "layout_id": it.layout_id, "seed": it.seed, "image": it.image, "real": it.real,
                   "scorer": fp, "modality": scorer.modality, "condition": condition, "extracted": rel,
                   **values}  # fmt: skip
            out[it.key] = store.json_safe(row)
            rows.append(row)
        store.append_jsonl(out_file, rows)

    process_missing(items, is_done=lambda it: it.key in out, process=process, chunk_size=chunk_size, dist=dist,
                    progress=progress, desc=f"condition ({scorer.modality})")  # fmt: skip
    return out


def _per_layout(rows: Mapping[str, Mapping[str, Any]], items: Sequence[CondItem], key: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for it in items:
        vals = out.setdefault(it.layout_id, [])
        v = rows[it.key].get(key)
        if cm.finite(v):
            vals.append(float(v))
    return out


def condition_metrics(rows: Mapping[str, Mapping[str, Any]], scorer: ConditionScorer, items: Sequence[CondItem],
                      real: Sequence[CondItem] = (), *, n_boot: int, alpha: float,
                      seed: int) -> dict[str, Any]:  # fmt: skip
    """``cond/<name>`` (mean over the images where defined, ``nan`` if none), their intervals over
    layouts when ``n_boot`` > 0, and ``cond/real/<name>`` (mean over the real images) when ``real``."""
    from gligen_eval.scoring import stats

    out: dict[str, Any] = {}
    for key in scorer.keys:
        per_layout = _per_layout(rows, items, key)
        out[key] = stats.point_estimate(per_layout, "pooled_mean")
        if n_boot > 0:
            out.update(stats.ci_keys(key, *stats.bootstrap_ci(per_layout, "pooled_mean", n_boot=n_boot, alpha=alpha,
                                                              seed=seed)))  # fmt: skip
    if real:
        for key in scorer.keys:
            vals = [v for vs in _per_layout(rows, real, key).values() for v in vs]
            out[f"{cm.PREFIX}/real/{key.split('/', 1)[1]}"] = sum(vals) / len(vals) if vals else float("nan")
    return out


def condition_options(grounding_cfg: Any) -> dict[str, Any]:
    """The condition options set in a run's ``grounding`` config (unset ones are left to the defaults)."""
    from gligen_eval.conditions import CONDITION_OPTIONS

    out = {}
    for k in CONDITION_OPTIONS:
        v = getattr(grounding_cfg, k, None)
        if v is not None:
            out[k] = v
    return out


def run_modality(rd: store.RunDir, cfg: Any) -> str | None:
    """The run's modality as the manifest resolved it (else the config's ``model.modality``)."""
    try:
        resolved = rd.manifest().get("resolved") or {}
    except (OSError, ValueError):
        resolved = {}
    return resolved.get("modality") or getattr(cfg.model, "modality", None)


def is_spatial(modality: str | None) -> bool:
    return bool(modality) and bool(cm.metric_names(str(modality)))


def sample_rows(run_root: str | Path, manifest: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{sample key: row} of a finished run's generated images, for the condition scorer its manifest
    names (``models.condition``); empty when the run has no condition rows."""
    rd = store.RunDir(run_root)
    fp = ((manifest.get("models") or {}).get("condition") or {}).get("fingerprint")
    out: dict[str, dict[str, Any]] = {}
    for f in rd.record_files(COND_ROWS):
        for r in store.iter_jsonl(f):
            if not r.get("real") and (fp is None or r.get("scorer") == fp):
                out[r["key"]] = r
    return out


def check_extractor(modality: str, options: Mapping[str, Any]) -> None:
    """Build ``modality``'s extractor once (it stays cached for scoring) by extracting from a small gray
    image, so missing extractor weights fail before any image is generated."""
    from PIL import Image

    ConditionScorer(modality, dict(options)).extract([Image.new("RGB", (32, 32), (128, 128, 128))])
