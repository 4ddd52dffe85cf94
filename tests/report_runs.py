"""Small, honest run directories for the reporting, compare, gallery and plugin tests.

A toy "generator" paints each grounded object as a filled rectangle in its category's color,
displaced by ``drift`` (as a fraction of the image) and a little seed-dependent jitter. Its images
and sample rows are written by the run writer (:class:`gligen_eval.writer.BatchWriter`); the
detections a toy detector finds in them (connected components per color) are listed in a
detections file, and the run is scored by the real scoring stage
(:func:`gligen_eval.scoring.pipeline.score_run`) with the file-backed detector (``kind: file``): so
``detections.jsonl``, ``instances.jsonl``, ``breakdowns.json`` and ``metrics.json`` are the
scoring's own, with the scorers the run asks for (a pose model reading known keypoints, LVIS-style
AP for an LVIS layout file, a detector asked for the layout phrases). A candidate whose images
drift away from the layout boxes is a degraded model scored against the very same layouts and seeds.
The detections files of a folder of runs carry one detector fingerprint, as the same weights would.
"""

from __future__ import annotations

import dataclasses
import gc
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from gligen_eval import store
from gligen_eval.records import Detection, GroundedObject, Layout, SampleRecord, stable_hash
from gligen_eval.scoring.filedet import FileDetector, pixel_key, read_detections, write_detections

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



# The LVIS frequency group of each toy category, for runs whose layouts come from an LVIS file.
LVIS_FREQUENCY = {"cat": "r", "dog": "c", "person": "f", "car": "f"}
PROVENANCE_GIT = {"hash": "0123456789abcdef", "dirty": False}
POINT_METRICS = ("fid", "clip/global")
TOY_DETECTOR = {"name": "toy-color-detector", "fingerprint": "toydet01"}
TOY_POSE = {"name": "toy-pose", "fingerprint": "toypose1"}


class PhraseFileDetector(FileDetector):
    """The file-backed detector asked for each image's layout phrases, like an open-vocabulary model:
    it labels each listed detection with the phrase that names its class."""

    takes_phrases = True

    def detect(self, images: list, phrases_per_image: list[list[str]]) -> list[list[Detection]]:
        out = []
        for dets, phrases in zip(super().detect(images), phrases_per_image):
            named = [dataclasses.replace(d, label=next((p for p in phrases if d.label in p.split()), d.label)) for d in dets]
            out.append(named)
        return out


PHRASE_DETECTOR = f"{__name__}:PhraseFileDetector"


def poses(layout: Layout, shift: float) -> list[Detection]:
    """Known pose detections: every person with keypoints, its points moved right by ``shift``."""
    out = []
    for o in layout.objects:
        if o.keypoints is not None:
            kps = tuple((min(1.0, x + shift), y, v) for x, y, v in o.keypoints)
            out.append(Detection(box=o.box, label="person", score=0.9, keypoints=kps))
    return out


def with_keypoints(layouts: Sequence[Layout]) -> list[Layout]:
    """The first object of every other layout gets 17 labelled keypoints across its box."""
    out = []
    for i, lay in enumerate(layouts):
        if i % 2 == 0:
            o = lay.objects[0]
            x0, y0, x1, y1 = o.box
            kps = tuple((x0 + (x1 - x0) * (k + 1) / 18, y0 + (y1 - y0) * (0.3 + 0.02 * k), 2) for k in range(17))
            lay = dataclasses.replace(lay, objects=(dataclasses.replace(o, keypoints=kps), *lay.objects[1:]))
        out.append(lay)
    return out


def _layout_source(root: Path, layouts: Sequence[Layout], *, lvis: bool) -> str:
    """A layout file holding ``layouts`` (named by their content, so runs of the same layouts share it):
    our ``.jsonl`` format, or an LVIS annotation file (pixel boxes on 96 x 96 images)."""
    digest = stable_hash([lay.content_hash() for lay in layouts], length=10)
    if not lvis:
        path = root / f"toy_layouts-{digest}.jsonl"
        store.write_jsonl(path, (lay.to_dict() for lay in layouts))
        return str(path)
    cats = {c: i + 1 for i, c in enumerate(COLORS)}
    images, anns = [], []
    for i, lay in enumerate(layouts):
        present = {o.category for o in lay.objects}
        absent = [cats[c] for c in COLORS if c not in present]
        images.append({"id": i + 1, "width": SIZE, "height": SIZE, "file_name": f"{i + 1:012d}.jpg",
                       "neg_category_ids": absent[:1], "not_exhaustive_category_ids": []})  # fmt: skip
        for o in lay.objects:
            x0, y0, x1, y1 = (v * SIZE for v in o.box)
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cats[o.category],
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0)})  # fmt: skip
    categories = [{"id": i, "name": c, "synonyms": [c], "frequency": LVIS_FREQUENCY[c]} for c, i in cats.items()]
    path = root / f"toy_lvis-{digest}.json"
    store.atomic_write_json(path, {"images": images, "annotations": anns, "categories": categories})
    return str(path)


def _known(path: Path, table: Mapping[str, Sequence[Detection]], made_by: Mapping[str, str]) -> Path:
    """Add ``table`` to the detections file at ``path``: one file serves every run of a folder, as one
    detector's weights would (its fingerprint is the model's, whatever images the file lists)."""
    old = read_detections(path)[0] if path.is_file() else {}
    return write_detections(path, {**old, **table}, detector=made_by)


def make_run(
    root: Path,
    name: str,
    *,
    layouts: Sequence[Layout] | None = None,
    seeds: Sequence[int] = (0, 1),
    drift: float = 0.0,
    model: str = "toy-painter",
    sampler: Mapping[str, Any] | None = None,
    with_ci: bool = True,
    pose_shift: float | None = None,
    lvis: bool = False,
    phrases: bool = False,
    point_metrics: Mapping[str, float] | None = None,
    config: Any = None,
    scoring: Mapping[str, Any] | None = None,
) -> Path:
    """Paint, write, detect and score one run directory; returns its path.

    ``pose_shift``: a pose model whose detections are
    the layouts' keypoints moved right by this much. ``lvis``: the layouts are read back from an LVIS
    file written from them (layout ids ``lvis-<n>``), so AP is LVIS-style. ``phrases``: the detector is
    asked for the layout phrases and answers with them (:class:`PhraseFileDetector`).
    ``point_metrics``: values of the image-statistics scorers (``fid``, ``clip/global``) this toy run
    does not compute (their tiny random stand-ins give values too close together to order runs by);
    they are added to ``metrics.json`` as those scorers write them, point values without intervals.
    ``config`` (a RunConfig) replaces the config built from the arguments; the run then goes to
    ``config.out`` and honours its ``layouts.limit``, ``sampler.seeds_per_layout`` and image size; its
    detector is replaced by the file of known detections for scoring, and the manifest records
    ``config`` as the caller gave it. ``scoring`` adds scoring settings (``error_analysis: true``: the
    box error analysis, as a real run gets it).
    """
    from PIL import Image

    from gligen_eval.config import config_from_dict
    from gligen_eval.runner import load_run_layouts
    from gligen_eval.scoring.pipeline import score_run
    from gligen_eval.writer import BatchWriter, PendingImage

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    layouts = list(layouts) if layouts is not None else make_layouts()
    out = root / name
    if config is not None:
        out, name, model = Path(config.out), config.name, config.model.name
        layouts = layouts[: config.layouts.limit or None]
        seeds = tuple(range(config.sampler.seeds_per_layout))
        source = str(config.layouts.source)
    else:
        source = _layout_source(root, layouts, lvis=lvis)
    scoring = {"backend": "faster", "bootstrap": 200 if with_ci else 0, "bootstrap_ap": 0, "bootstrap_seed": 0,
               **(scoring or {})}
    run_cfg = config if config is not None else config_from_dict({
        "name": name, "out": str(out), "model": {"name": model}, "layouts": {"source": source},
        "sampler": {"steps": 10, "height": SIZE, "width": SIZE, **(sampler or {})}, "scoring": scoring,
    })  # fmt: skip
    if lvis:
        layouts = load_run_layouts(run_cfg)  # as a run reads them: ids, categories and category ids from the file
    has_kps = any(o.keypoints is not None for lay in layouts for o in lay.objects)
    rd = store.RunDir(out)
    store.ensure_dir(rd.root)
    settings = {"model": model, "drift": drift, **run_cfg.to_dict()["sampler"]}
    s = run_cfg.sampler
    extra = {"schedule": s.schedule, **({"alpha": list(s.alpha or [0.3, 0.0, 0.7])} if s.schedule == "alpha"
                                        else {"beta": s.beta})}  # fmt: skip
    table: dict[str, list[Detection]] = {}
    pose_table: dict[str, list[Detection]] = {}

    def record(lay: Layout, seed: int, key: str):
        return lambda img: SampleRecord(sample_key=key, layout_id=lay.layout_id, seed=seed, image=rd.image_relpath(key),
                                        width=img.width, height=img.height, layout_hash=lay.content_hash(),
                                        settings_hash=stable_hash(settings), extra=extra)  # fmt: skip

    batch, order = [], []
    for lay in layouts:
        for seed in seeds:
            image = Image.fromarray(paint(lay, seed, size=s.width, drift=drift))
            key = stable_hash([settings, lay.content_hash(), seed], length=20)
            table[pixel_key(image)] = detect(np.asarray(image))
            pose_table[pixel_key(image)] = poses(lay, pose_shift or 0.0)
            batch.append(PendingImage(rd.image_path(key), image, record(lay, seed, key)))
            order.append(key)
    with BatchWriter(rd.path(store.SAMPLES), overlap=False) as writer:
        writer.submit(batch)  # one batch: the whole toy run
        written = writer.close()
    samples = [written[k] for k in order]

    # the known detections: one file per folder of runs (and per pose shift: another pose model's output)
    known = _known(out.parent / "toy_detector.json", table, TOY_DETECTOR)
    scorers_cfg: dict[str, Any] = {"detector": {"kind": PHRASE_DETECTOR if phrases else "file", "weights": str(known)}}
    if pose_shift is not None:
        known_poses = _known(out.parent / f"toy_pose-{pose_shift:g}.json", pose_table, TOY_POSE)
        scorers_cfg["pose"] = {"kind": "file", "weights": str(known_poses)}
    data = run_cfg.to_dict()
    asked = config if config is not None else config_from_dict({**data, **scorers_cfg})
    cfg = config_from_dict({**data, **scorers_cfg, "scoring": {**data["scoring"], **scoring}})

    manifest = {
        "schema_version": store.SCHEMA_VERSION, "name": name, "created": "2026-01-01T00:00:00+00:00",
        "config": asked.to_dict(), "config_hash": stable_hash(asked.to_dict()),
        "resolved": {"modality": "keypoint" if has_kps else "text-box"},
        "versions": {"gligen-eval": "test"}, "git": dict(PROVENANCE_GIT),
        "models": {"generator": {"name": model, "fingerprint": stable_hash([model, drift], length=16)}},
        "layouts": {"source": source, "count": len(layouts), "hash": stable_hash([lay.content_hash() for lay in layouts])},
        "seed_policy": "fixed seeds " + ", ".join(map(str, seeds)), "random_weights": False,
    }  # fmt: skip
    store.atomic_write_json(rd.path(store.MANIFEST), manifest)
    store.write_jsonl(rd.path(store.LAYOUTS), (lay.to_dict() for lay in layouts))
    gc.freeze()  # scoring collects garbage after each detector; the test session's objects need no scan
    try:
        _, scorers = score_run(rd, cfg, layouts, samples, device="cpu", progress=False)
    finally:
        gc.unfreeze()
    manifest["models"].update(scorers)
    store.atomic_write_json(rd.path(store.MANIFEST), manifest)
    if point_metrics:
        unknown = sorted(set(point_metrics) - set(POINT_METRICS))
        assert not unknown, f"only {POINT_METRICS} are added to a toy run's metrics, not {unknown}"
        store.atomic_write_json(rd.path(store.METRICS), {**store.read_json(rd.path(store.METRICS)), **point_metrics})
    return out


# The runs many tests read (never write): a well-grounded model, one that drifts off its boxes (a
# little better FID and CLIP score, so that the orders by box AP and by FID differ), one as well
# grounded with a worse FID, and one with a single seed per layout.
STANDARD_RUNS: dict[str, dict[str, Any]] = {
    "good": {"point_metrics": {"fid": 20.0, "clip/global": 0.27}},
    "drifted": {"drift": 0.05, "point_metrics": {"fid": 19.8, "clip/global": 0.29}},
    "blurry": {"model": "other-weights", "point_metrics": {"fid": 21.0, "clip/global": 0.27}},
    "one_seed": {"seeds": (0,), "point_metrics": {"fid": 20.0, "clip/global": 0.27}},
}


class StandardRuns:
    """:data:`STANDARD_RUNS` in one folder, each made on first use; ``runs("good", "drifted")``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._made: dict[str, Path] = {}

    def __call__(self, *names: str) -> Any:
        for n in names:
            if n not in self._made:
                self._made[n] = make_run(self.root, n, **STANDARD_RUNS[n])
        paths = tuple(self._made[n] for n in names)
        return paths[0] if len(paths) == 1 else paths
