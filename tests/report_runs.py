"""Small, honest run directories for the reporting, compare and plugin tests.

A toy "generator" paints each grounded object as a filled rectangle in its category's color,
displaced by ``drift`` (as a fraction of the image) and a little seed-dependent jitter; a toy
"detector" finds the colored rectangles again (connected components per color). The run is then
scored by the real scoring code (:func:`gligen_eval.scoring.boxes.evaluate_boxes`: COCO AP through
faster-coco-eval plus per-instance IoU records) and written as a run directory exactly as a real
run writes one. A candidate whose images drift away from the layout boxes is a degraded model
scored against the very same layouts and seeds.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from gligen_eval import store
from gligen_eval.records import Detection, GroundedObject, Layout, SampleRecord, stable_hash

COLORS = {"cat": (230, 60, 40), "dog": (40, 200, 60), "person": (50, 80, 230), "car": (230, 210, 30)}
SIZE = 96  # generated image side in pixels: the toy boxes are then COCO small and medium
HOSTILE = "<script>alert(\"x\")</script> & 'quotes' <b>bold</b>"


def make_layouts(n: int = 8, *, seed: int = 0, hostile: bool = True) -> list[Layout]:
    rng = np.random.default_rng(seed)
    cats = list(COLORS)
    out = []
    for i in range(n):
        k = 1 + int(rng.integers(0, 4)) if i else 1
        objs = []
        for j in range(k):
            w, h = rng.uniform(0.25, 0.5, size=2)
            x0, y0 = rng.uniform(0.0, 1.0 - w), rng.uniform(0.0, 1.0 - h)
            cat = cats[(i + j) % len(cats)]
            phrase = f"a {cat}" if not (hostile and i == 0) else f"a {cat} {HOSTILE}"
            objs.append(GroundedObject(phrase=phrase, box=(x0, y0, x0 + w, y0 + h), category=cat))
        caption = "a picture with " + " and ".join(o.phrase for o in objs)
        if hostile and i == 0:
            caption = f"caption {HOSTILE}"
        out.append(Layout(layout_id=f"L{i:03d}", caption=caption, objects=tuple(objs), width=64, height=64))
    return out


def paint(layout: Layout, seed: int, *, size: int = 96, drift: float = 0.0) -> np.ndarray:
    """The toy generator: objects painted where the layout asks, displaced by ``drift``."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), 128, dtype=np.uint8)
    img += rng.integers(0, 20, size=img.shape, dtype=np.uint8)
    for o in layout.objects:
        dx, dy = rng.uniform(-0.02, 0.02, size=2) + drift
        x0, y0, x1, y1 = o.box
        px0 = int(round(np.clip(x0 + dx, 0, 1) * size))
        px1 = int(round(np.clip(x1 + dx, 0, 1) * size))
        py0 = int(round(np.clip(y0 + dy, 0, 1) * size))
        py1 = int(round(np.clip(y1 + dy, 0, 1) * size))
        if px1 - px0 >= 2 and py1 - py0 >= 2:
            img[py0:py1, px0:px1] = COLORS[o.category]
    return img


def detect(img: np.ndarray) -> list[Detection]:
    """The toy detector: one box per connected region of a category color."""
    from scipy import ndimage

    h, w = img.shape[:2]
    out = []
    for label, color in COLORS.items():
        mask = np.all(np.abs(img.astype(int) - np.array(color)) <= 2, axis=-1)
        comp, n = ndimage.label(mask)
        for sl in ndimage.find_objects(comp):
            ys, xs = sl
            area = (ys.stop - ys.start) * (xs.stop - xs.start)
            if area < 4:
                continue
            fill = float(mask[sl].mean())
            box = (xs.start / w, ys.start / h, xs.stop / w, ys.stop / h)
            out.append(Detection(box=box, label=label, score=round(0.5 + 0.49 * fill * min(1.0, area / 400), 6)))
    return out


def make_run(
    root: Path,
    name: str,
    *,
    layouts: Sequence[Layout] | None = None,
    seeds: Sequence[int] = (0, 1),
    drift: float = 0.0,
    model: str = "toy-painter",
    sampler: Mapping[str, Any] | None = None,
    extra_metrics: Mapping[str, float] | None = None,
    extra_breakdowns: Mapping[str, Any] | None = None,
    with_ci: bool = True,
    config: Any = None,
    scoring: Mapping[str, Any] | None = None,
) -> Path:
    """Generate, detect, score and write one run directory; returns its path.

    ``config`` (a RunConfig) replaces the config built from the arguments; the run then goes to
    ``config.out`` and honours its ``layouts.limit``, ``sampler.seeds_per_layout`` and image size.
    ``scoring`` adds scoring settings; with ``error_analysis: true`` the run gets the box error
    analysis as a real run does (:func:`gligen_eval.scoring.errors.error_metrics`).
    """
    from PIL import Image

    from gligen_eval.config import config_from_dict
    from gligen_eval.scoring.boxes import evaluate_boxes
    from gligen_eval.scoring import stats

    layouts = list(layouts) if layouts is not None else make_layouts()
    out = root / name
    if config is not None:
        out, name, model = Path(config.out), config.name, config.model.name
        layouts = layouts[: config.layouts.limit or None]
        seeds = tuple(range(config.sampler.seeds_per_layout))
    cfg = config if config is not None else config_from_dict({
        "name": name, "out": str(out), "model": {"name": model},
        "layouts": {"source": "toy_layouts.jsonl"},
        "sampler": {"steps": 10, "height": SIZE, "width": SIZE, **(sampler or {})},
        "detector": {"weights": "toy-color-detector"}, "scoring": {"backend": "faster", **(scoring or {})},
    })  # fmt: skip
    rd = store.RunDir(out)
    rd.root.mkdir(parents=True, exist_ok=True)
    settings = {"model": model, "drift": drift, **cfg.to_dict()["sampler"]}
    samples, dets = [], {}
    for lay in layouts:
        for seed in seeds:
            img = paint(lay, seed, size=cfg.sampler.width, drift=drift)
            key = stable_hash([settings, lay.content_hash(), seed], length=20)
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, format="PNG")
            store.atomic_write_bytes(rd.image_path(key), buf.getvalue())
            s = cfg.sampler
            extra = {"schedule": s.schedule, **({"alpha": list(s.alpha or [0.3, 0.0, 0.7])} if s.schedule == "alpha"
                                                else {"beta": s.beta})}  # fmt: skip
            samples.append(SampleRecord(sample_key=key, layout_id=lay.layout_id, seed=seed, image=rd.image_relpath(key),
                                        width=cfg.sampler.width, height=cfg.sampler.height, layout_hash=lay.content_hash(),
                                        settings_hash=stable_hash(settings), extra=extra))  # fmt: skip
            dets[key] = detect(img)
    ev = evaluate_boxes(layouts, samples, dets, backend=cfg.scoring.backend, success_iou=cfg.scoring.success_iou,
                        min_score=cfg.scoring.instance_min_score)  # fmt: skip
    metrics, breakdowns, instances = ev.metrics("box"), {"box/AP_per_category": ev.result.per_category}, ev.records
    metrics.update(n_samples=len(samples), n_layouts=len(layouts), n_instances=len(instances))
    if cfg.scoring.error_analysis:
        from gligen_eval.scoring.errors import error_metrics

        err_metrics, err_breakdowns = error_metrics(ev.gt, ev.results, "box",
                                                    confusion_min_score=cfg.scoring.instance_min_score)  # fmt: skip
        metrics.update(err_metrics)
        breakdowns.update(err_breakdowns)
    if with_ci:
        for key, field in (("box/mIoU", "best_iou"), ("box/success", "hit")):
            per_layout: dict[str, list[float]] = {lay.layout_id: [] for lay in layouts}
            for inst in instances:
                per_layout[inst.layout_id].append(float(getattr(inst, field)))
            lo, hi = stats.bootstrap_ci(per_layout, "pooled_mean", n_boot=200, seed=0)
            metrics.update(stats.ci_keys(key, lo, hi))
    metrics.update(extra_metrics or {})
    breakdowns.update(extra_breakdowns or {})
    manifest = {
        "schema_version": store.SCHEMA_VERSION, "name": name, "created": "2026-01-01T00:00:00+00:00",
        "config": cfg.to_dict(), "config_hash": stable_hash(cfg.to_dict()),
        "versions": {"gligen-eval": "test"}, "git": {"hash": "0123456789abcdef", "dirty": False},
        "models": {"generator": {"name": model, "fingerprints": {"painter": stable_hash([model, drift])}},
                   "detector": {"name": "toy-color-detector", "fingerprint": "toydet01"}},
        "layouts": {"source": "toy_layouts.jsonl", "count": len(layouts),
                    "hash": stable_hash([lay.content_hash() for lay in layouts])},
        "seed_policy": "fixed seeds " + ", ".join(map(str, seeds)), "random_weights": False,
    }  # fmt: skip
    store.atomic_write_json(rd.path(store.MANIFEST), manifest)
    store.write_jsonl(rd.path(store.LAYOUTS), (lay.to_dict() for lay in layouts))
    store.write_jsonl(rd.path(store.SAMPLES), (s.to_dict() for s in samples))
    store.write_jsonl(rd.path(store.DETECTIONS), ({"sample_key": k, "detector": "toydet01",
                                                   "detections": [d.to_dict() for d in v]} for k, v in dets.items()))  # fmt: skip
    store.write_jsonl(rd.path(store.INSTANCES), (r.to_dict() for r in instances))
    store.atomic_write_json(rd.path(store.BREAKDOWNS), breakdowns)
    store.atomic_write_json(rd.path(store.METRICS), metrics)
    return out
