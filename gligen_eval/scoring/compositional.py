"""Compositional grounding: counts, spatial relations and colours, on the detections a run already has.

Nothing here runs a detector: the pass reads the detections the detector pass cached (labels
already mapped to the layout's classes) and the per-instance records, and only opens the images
for the colour checks. Keys (all fractions, higher is better):

* ``comp/count_acc`` -- per image and layout class, whether the number of confident detections of
  that class (score >= ``min_score``) equals the number of objects of that class in the layout
  (NSR-1K counting). ``comp/count_precision``, ``comp/count_recall``, ``comp/count_f1`` -- HRS
  counting: per image and class ``TP = min(detected, expected)``, summed over the run;
  precision ``TP / detected``, recall ``TP / expected``, F1 ``2 TP / (detected + expected)``.
  Detections of classes the layout does not name are not counted.
* ``comp/relation_acc`` -- fraction of the checked object pairs whose relation holds between their
  detections. A layout that states relations (NSR-1K, HRS spatial: ``Layout.relations``) is checked
  on those; any other layout on every pair whose layout boxes imply one: the axis with the larger
  centre offset, when that offset exceeds ``margin`` (a fraction of the image side; pairs closer
  than that imply nothing). The relation holds when the detections' centres are ordered the same
  way on that axis (strictly). Each object gets its own detection of its class (greedy one-to-one,
  highest IoU with its box first, then the most confident unassigned one); a pair with an object
  not detected fails.
* ``comp/color_acc_hsv`` -- COCO-MIG's check: the share of the pixels of the object's layout box
  that fall in the HSV range of the colour its phrase names (``"a red car"``) is at least
  ``hsv_min_share`` (0.2). COCO-MIG measures the share inside a SAM mask of the box; here it is
  the whole box. Ranges: :func:`coco_mig_hsv_ranges` (OpenCV HSV: H in [0, 180]).
* ``comp/color_acc_clip`` -- InstanceDiffusion's check: CLIP zero-shot over the colour vocabulary
  (``"a photo of a {colour} {noun}"``) on the crop of the layout box picks the phrase's colour.
* ``comp/texture_acc_clip`` -- the same for texture, where the phrase names one of a fixed
  vocabulary (:func:`default_textures`; ``"a striped shirt"``, ``"a polka-dot cup"``), over
  ``"a photo of a {texture} {noun}"``. It runs wherever the CLIP colour check runs.

COCO-MIG (``mig=True``; layouts from :func:`gligen_eval.layouts.coco_mig.load_coco_mig`):
an instance succeeds when its best same-class IoU (the per-instance records) is at least
``mig_iou`` (0.5) and its colour passes the HSV check; ``mig/ISR`` is the success rate,
``mig/mIoU`` the mean IoU with colour failures (IoU reached, colour wrong) counted as 0, and
``mig/L{k}/ISR``, ``mig/L{k}/mIoU`` the same over the layouts with ``k`` objects (2 to 6).
Objects whose phrase names no colour of the HSV table pass the colour part.

A key is left out when nothing in the run can be checked for it (no coloured phrase, no pair).
One row per image goes to ``comp.jsonl``; with ``scoring.bootstrap`` the pooled-mean keys
(``count_acc``, ``relation_acc``, the colour rates, ``mig/ISR``, ``mig/mIoU``) get percentile
intervals over layouts (:func:`intervals`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from gligen_eval.errors import ConfigError
from gligen_eval.records import RELATIONS, Detection, InstanceRecord, Layout, SampleRecord

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

COMP_ROWS = "comp.jsonl"
COMP_KEYS = ("comp/count_acc", "comp/count_precision", "comp/count_recall", "comp/count_f1", "comp/relation_acc",
             "comp/color_acc_hsv", "comp/color_acc_clip", "comp/texture_acc_clip")  # fmt: skip
MIG_LEVELS = (2, 3, 4, 5, 6)
MIG_KEYS = ("mig/ISR", "mig/mIoU") + tuple(f"mig/L{k}/{m}" for k in MIG_LEVELS for m in ("ISR", "mIoU"))


def default_colors() -> list[str]:
    """The colour vocabulary of the CLIP check: COCO-MIG's seven colours, then four more common ones."""
    return ["red", "yellow", "green", "blue", "white", "black", "brown", "pink", "purple", "orange", "gray"]


def default_textures() -> list[str]:
    """The texture vocabulary of the CLIP texture check (surface patterns and materials)."""
    return ["striped", "checkered", "dotted", "plaid", "floral", "wooden", "metal", "furry", "leather", "knitted"]


TEXTURE_SYNONYMS: Mapping[str, str] = {
    "stripe": "striped", "stripes": "striped", "stripy": "striped", "pinstriped": "striped",
    "checked": "checkered", "chequered": "checkered", "checkerboard": "checkered",
    "dots": "dotted", "dot": "dotted", "spotted": "dotted", "polka": "dotted", "polkadot": "dotted",
    "tartan": "plaid", "flowery": "floral", "flowered": "floral",
    "wood": "wooden", "metallic": "metal", "steel": "metal", "fur": "furry", "fuzzy": "furry",
    "knit": "knitted",
}  # fmt: skip
"""Words that name a texture of :func:`default_textures` by another form (``"polka-dot"`` → dotted)."""


def coco_mig_hsv_ranges() -> dict[str, list[tuple[tuple[int, int, int], tuple[int, int, int]]]]:
    """COCO-MIG's HSV ranges per colour (OpenCV scale: H 0-180, S and V 0-255), inclusive bounds."""
    return {
        "red": [((0, 43, 35), (6, 255, 255)), ((156, 43, 35), (180, 255, 255))],
        "blue": [((78, 43, 35), (124, 255, 255))],
        "green": [((35, 43, 35), (77, 255, 255))],
        "yellow": [((20, 43, 35), (34, 255, 255))],
        "black": [((0, 0, 0), (180, 255, 35))],
        "white": [((0, 0, 221), (180, 43, 255))],
        "brown": [((6, 43, 35), (25, 255, 255))],
    }


@dataclass(frozen=True)
class CompOptions:
    """Settings of the compositional checks (see the module notes)."""

    margin: float = 0.05
    min_score: float = 0.25
    hsv_min_share: float = 0.2
    colors: tuple[str, ...] = field(default_factory=lambda: tuple(default_colors()))
    mig: bool = False
    mig_iou: float = 0.5
    textures: tuple[str, ...] = field(default_factory=lambda: tuple(default_textures()))

    def __post_init__(self) -> None:
        if not 0.0 <= self.margin < 0.5:
            raise ConfigError(f"comp margin must be in [0, 0.5), got {self.margin}")
        for name in ("min_score", "hsv_min_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"comp {name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 < self.mig_iou <= 1.0:
            raise ConfigError(f"comp mig_iou must be in (0, 1], got {self.mig_iou}")
        colors = tuple(c.strip().lower() for c in self.colors)
        if len(colors) < 2 or len(set(colors)) != len(colors) or not all(colors):
            raise ConfigError(f"comp colors must be at least two distinct colour names, got {list(self.colors)}")
        object.__setattr__(self, "colors", colors)
        textures = tuple(t.strip().lower() for t in self.textures)
        if len(textures) == 1 or len(set(textures)) != len(textures) or not all(textures):
            raise ConfigError(f"comp textures must be distinct names, at least two (or none), got {list(self.textures)}")
        object.__setattr__(self, "textures", textures)


# --------------------------------------------------------------------------------------------
# pure functions


def phrase_color(phrase: str, colors: Iterable[str]) -> str | None:
    """The first word of ``phrase`` that is a colour of ``colors`` (``"a red car"`` → ``"red"``)."""
    vocab = {c.lower() for c in colors}
    for w in re.findall(r"[a-z]+", phrase.lower()):
        if w in vocab or (w == "grey" and "gray" in vocab):
            return "gray" if w == "grey" else w
    return None


def phrase_texture(phrase: str, textures: Iterable[str]) -> str | None:
    """The first word of ``phrase`` that names a texture of ``textures``, directly or by a synonym
    (:data:`TEXTURE_SYNONYMS`): ``"a cat on a striped rug"`` → ``"striped"``, ``"a polka-dot cup"`` →
    ``"dotted"``. ``"wood"`` as a noun counts too (``"a wood table"``)."""
    vocab = {t.lower() for t in textures}
    for w in re.findall(r"[a-z]+", phrase.lower()):
        t = w if w in vocab else TEXTURE_SYNONYMS.get(w)
        if t in vocab:
            return t
    return None


def phrase_noun(phrase: str, colors: Iterable[str]) -> str:
    """The phrase without its articles and the words of ``colors`` (``"a red car"`` → ``"car"``);
    also used with a texture vocabulary and its synonyms."""
    drop = {c.lower() for c in colors} | {"a", "an", "the", "grey"}
    words = [w for w in phrase.split() if w.lower() not in drop]
    return " ".join(words) or phrase


def center(box: Sequence[float]) -> tuple[float, float]:
    return (0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3]))


def implied_relation(box_a: Sequence[float], box_b: Sequence[float], margin: float) -> str | None:
    """The relation of ``a`` to ``b`` their boxes imply: the axis with the larger centre offset,
    when that offset exceeds ``margin``; None when the centres are closer than that."""
    (ax, ay), (bx, by) = center(box_a), center(box_b)
    dx, dy = bx - ax, by - ay
    if max(abs(dx), abs(dy)) <= margin:
        return None
    if abs(dx) >= abs(dy):
        return "left" if dx > 0 else "right"
    return "above" if dy > 0 else "below"


def relation_holds(box_a: Sequence[float], box_b: Sequence[float], relation: str) -> bool:
    """Whether ``a`` is ``relation`` of ``b`` by box centres (strict; y grows downwards)."""
    (ax, ay), (bx, by) = center(box_a), center(box_b)
    if relation == "left":
        return ax < bx
    if relation == "right":
        return ax > bx
    if relation == "above":
        return ay < by
    if relation == "below":
        return ay > by
    raise ValueError(f"unknown relation {relation!r} (known: {', '.join(RELATIONS)})")


def pairs_to_check(layout: Layout, margin: float) -> list[tuple[int, str, int]]:
    """The layout's stated relations, else the box-implied relation of every pair ``i < j``."""
    if layout.relations:
        return list(layout.relations)
    out = []
    objs = layout.objects
    for i in range(len(objs)):
        for j in range(i + 1, len(objs)):
            rel = implied_relation(objs[i].box, objs[j].box, margin)
            if rel is not None:
                out.append((i, rel, j))
    return out


def _classes(layout: Layout, aliases: Mapping[str, str] | None = None) -> list[str]:
    from gligen_eval.scoring.coco import object_class

    return [object_class(o, aliases) for o in layout.objects]


def _confident(detections: Sequence[Detection], min_score: float,
               aliases: Mapping[str, str] | None = None) -> list[tuple[str, Detection]]:  # fmt: skip
    from gligen_eval.scoring.coco import canonical_category

    return [(canonical_category(d.label, aliases), d) for d in detections if d.score >= min_score]


def assign_detections(layout: Layout, detections: Sequence[Detection], min_score: float,
                      aliases: Mapping[str, str] | None = None) -> list[Detection | None]:  # fmt: skip
    """One detection of its class per object (or None): greedy one-to-one, the highest IoU with the
    object's box first (ties: higher score), then unassigned objects take the most confident
    unassigned detection of their class."""
    from gligen_eval.scoring.instances import iou_matrix

    classes = _classes(layout, aliases)
    dets = _confident(detections, min_score, aliases)
    out: list[Detection | None] = [None] * len(classes)
    if not dets or not classes:
        return out
    ious = iou_matrix([o.box for o in layout.objects], [d.box for _, d in dets])
    cand = [(-ious[i, k], -dets[k][1].score, i, k) for i in range(len(classes)) for k in range(len(dets))
            if dets[k][0] == classes[i] and ious[i, k] > 0]  # fmt: skip
    used: set[int] = set()
    for _, _, i, k in sorted(cand):
        if out[i] is None and k not in used:
            out[i] = dets[k][1]
            used.add(k)
    for i, cls in enumerate(classes):
        if out[i] is None:
            rest = sorted((-d.score, k) for k, (c, d) in enumerate(dets) if c == cls and k not in used)
            if rest:
                k = rest[0][1]
                out[i] = dets[k][1]
                used.add(k)
    return out


def count_rows(layout: Layout, detections: Sequence[Detection], min_score: float,
               aliases: Mapping[str, str] | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Per layout class: ``{"class", "expected", "detected"}`` (confident detections of that class)."""
    from collections import Counter

    expected = Counter(_classes(layout, aliases))
    detected = Counter(c for c, _ in _confident(detections, min_score, aliases))
    return [{"class": c, "expected": n, "detected": int(detected.get(c, 0))} for c, n in sorted(expected.items())]


def count_metrics(rows: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """``count_acc`` (exact count rate) and HRS counting precision, recall and F1 over ``rows``."""
    rows = list(rows)
    if not rows:
        return {}
    tp = sum(min(r["expected"], r["detected"]) for r in rows)
    det = sum(r["detected"] for r in rows)
    exp = sum(r["expected"] for r in rows)
    out = {"count_acc": sum(r["expected"] == r["detected"] for r in rows) / len(rows),
           "count_recall": tp / exp if exp else 0.0, "count_f1": 2 * tp / (det + exp) if det + exp else 0.0}  # fmt: skip
    out["count_precision"] = tp / det if det else 0.0
    return out


def relation_rows(layout: Layout, detections: Sequence[Detection], options: CompOptions,
                  aliases: Mapping[str, str] | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """One row per checked pair: ``{"subject", "relation", "object", "holds"}`` (object indices)."""
    pairs = pairs_to_check(layout, options.margin)
    if not pairs:
        return []
    assigned = assign_detections(layout, detections, options.min_score, aliases)
    out = []
    for i, rel, j in pairs:
        a, b = assigned[i], assigned[j]
        holds = a is not None and b is not None and relation_holds(a.box, b.box, rel)
        out.append({"subject": i, "relation": rel, "object": j, "holds": bool(holds)})
    return out


def hsv_share(crop: "Image.Image", ranges: Sequence[tuple[Sequence[int], Sequence[int]]]) -> float:
    """Share of the crop's pixels inside any of the HSV ``ranges`` (OpenCV scale, inclusive)."""
    import cv2
    import numpy as np

    rgb = np.asarray(crop.convert("RGB"), dtype=np.uint8)
    if rgb.size == 0:
        return 0.0
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    mask = np.zeros(hsv.shape[:2], dtype=bool)
    for lo, hi in ranges:
        mask |= cv2.inRange(hsv, np.asarray(lo, dtype=np.uint8), np.asarray(hi, dtype=np.uint8)) > 0
    return float(mask.mean())


def mig_metrics(items: Iterable[tuple[int, float, bool]], iou_threshold: float) -> dict[str, float]:
    """COCO-MIG ``ISR`` and ``mIoU`` (overall and per level) from ``(level, best IoU, colour ok)`` per instance."""
    groups: dict[int | None, list[tuple[bool, float]]] = {None: []}
    for level, iou, color_ok in items:
        reached = iou >= iou_threshold
        value = (reached and color_ok, 0.0 if reached and not color_ok else float(iou))
        groups[None].append(value)
        if level in MIG_LEVELS:
            groups.setdefault(level, []).append(value)
    out: dict[str, float] = {}
    for level in (None, *MIG_LEVELS):
        vals = groups.get(level)
        if not vals:
            continue
        prefix = "mig" if level is None else f"mig/L{level}"
        out[f"{prefix}/ISR"] = sum(s for s, _ in vals) / len(vals)
        out[f"{prefix}/mIoU"] = sum(v for _, v in vals) / len(vals)
    return out


# --------------------------------------------------------------------------------------------
# colour checks on images


class ClipColorJudge:
    """CLIP zero-shot colour of a crop over a fixed vocabulary, with a :class:`~gligen_eval.scoring.clip.ClipScorer`."""

    def __init__(self, scorer: Any, colors: Sequence[str], template: str = "a photo of a {color} {noun}") -> None:
        self.scorer, self.colors, self.template = scorer, list(colors), template
        self._texts: dict[str, Any] = {}

    def fingerprint(self) -> str:
        from gligen_eval.records import stable_hash

        return stable_hash({"clip": self.scorer.fingerprint(), "colors": self.colors, "template": self.template})

    def _text_embeddings(self, noun: str) -> Any:
        if noun not in self._texts:
            self._texts[noun] = self.scorer.embed_texts([self.template.format(color=c, noun=noun) for c in self.colors])
        return self._texts[noun]

    def predict(self, crops: Sequence["Image.Image"], nouns: Sequence[str]) -> list[str]:
        """The predicted colour of each crop (its noun fills the prompt template)."""
        if not crops:
            return []
        images = self.scorer.embed_images(list(crops))
        out = []
        for k, noun in enumerate(nouns):
            sims = self._text_embeddings(noun) @ images[k]
            out.append(self.colors[int(sims.argmax())])
        return out


class ClipTextureJudge(ClipColorJudge):
    """CLIP zero-shot texture of a crop over a fixed vocabulary (prompts ``"a photo of a {texture} {noun}"``)."""

    def __init__(self, scorer: Any, textures: Sequence[str], template: str = "a photo of a {texture} {noun}") -> None:
        super().__init__(scorer, textures, template.replace("{texture}", "{color}"))

    @property
    def textures(self) -> list[str]:
        return self.colors


def texture_rows(image: "Image.Image", layout: Layout, options: CompOptions,
                 judge: ClipTextureJudge) -> list[dict[str, Any]]:  # fmt: skip
    """One row per object whose phrase names a texture of ``options.textures``: ``{"object",
    "texture", "clip_texture", "clip_ok"}``."""
    from gligen_eval.scoring.clip import box_to_pixels

    img = image if image.mode == "RGB" else image.convert("RGB")
    rows, crops, nouns = [], [], []
    drop = set(options.textures) | {k for k, v in TEXTURE_SYNONYMS.items() if v in options.textures} | set(options.colors)
    for i, o in enumerate(layout.objects):
        texture = phrase_texture(o.phrase, options.textures)
        if texture is None:
            continue
        rows.append({"object": i, "texture": texture, "clip_texture": None, "clip_ok": None})
        crops.append(img.crop(box_to_pixels(o.box, img.width, img.height)))
        nouns.append(o.category or phrase_noun(o.phrase.replace("-", " "), drop))
    for r, pred in zip(rows, judge.predict(crops, nouns)):
        r["clip_texture"], r["clip_ok"] = pred, pred == r["texture"]
    return rows


def color_rows(image: "Image.Image", layout: Layout, options: CompOptions,
               judge: ClipColorJudge | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """One row per object whose phrase names a colour: ``{"object", "color", "hsv_share", "hsv_ok",
    "clip_color", "clip_ok"}`` (HSV fields None for colours outside the HSV table; CLIP fields None
    without a judge)."""
    from gligen_eval.scoring.clip import box_to_pixels

    ranges = coco_mig_hsv_ranges()
    img = image if image.mode == "RGB" else image.convert("RGB")
    rows, crops, nouns = [], [], []
    for i, o in enumerate(layout.objects):
        color = phrase_color(o.phrase, set(options.colors) | set(ranges))
        if color is None:
            continue
        crop = img.crop(box_to_pixels(o.box, img.width, img.height))
        share = hsv_share(crop, ranges[color]) if color in ranges else None
        rows.append({"object": i, "color": color, "hsv_share": share,
                     "hsv_ok": None if share is None else bool(share >= options.hsv_min_share),
                     "clip_color": None, "clip_ok": None})  # fmt: skip
        crops.append(crop)
        nouns.append(o.category or phrase_noun(o.phrase, options.colors))
    if judge is not None:
        for r, pred in zip(rows, judge.predict(crops, nouns)):
            if r["color"] in judge.colors:
                r["clip_color"], r["clip_ok"] = pred, pred == r["color"]
    return rows


# --------------------------------------------------------------------------------------------
# the pass


def layout_values(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """Per key, per layout, the 0/1 (or IoU) values whose pooled mean is the key, from ``comp.jsonl``
    rows: what the bootstrap over layouts resamples (the counting precision, recall and F1 are
    ratios of sums and get no interval)."""
    out: dict[str, dict[str, list[float]]] = {}

    def add(key: str, lid: str, values: Iterable[Any]) -> None:
        vals = [float(v) for v in values if v is not None]
        if vals:
            out.setdefault(key, {}).setdefault(lid, []).extend(vals)

    for r in rows:
        lid = r["layout_id"]
        add("comp/count_acc", lid, (c["expected"] == c["detected"] for c in r["counts"]))
        add("comp/relation_acc", lid, (x["holds"] for x in r["relations"]))
        add("comp/color_acc_hsv", lid, (x["hsv_ok"] for x in r["colors"]))
        add("comp/color_acc_clip", lid, (x["clip_ok"] for x in r["colors"]))
        add("comp/texture_acc_clip", lid, (x["clip_ok"] for x in r.get("textures", ())))
        add("mig/ISR", lid, (x["success"] for x in r.get("mig", ())))
        add("mig/mIoU", lid, (x["value"] for x in r.get("mig", ())))
    return out


def intervals(rows: Iterable[Mapping[str, Any]], keys: Iterable[str], *, n_boot: int, alpha: float,
              seed: int) -> dict[str, float]:  # fmt: skip
    """``<key>/lo`` ``<key>/hi`` percentile intervals over layouts for the pooled-mean ``keys``."""
    from gligen_eval.scoring import stats

    values = layout_values(rows)
    out: dict[str, float] = {}
    for key in keys:
        if key in values:
            lo, hi = stats.bootstrap_ci(values[key], "pooled_mean", n_boot=n_boot, alpha=alpha, seed=seed)
            out.update(stats.ci_keys(key, lo, hi))
    return out


def _rate(values: Iterable[Any]) -> float | None:
    vals = [bool(v) for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def score_compositional(
    root: Any,
    layouts: Sequence[Layout],
    samples: Sequence[SampleRecord],
    detections: Mapping[str, Sequence[Detection]],
    records: Sequence[InstanceRecord],
    options: CompOptions,
    *,
    judge: ClipColorJudge | None = None,
    texture_judge: ClipTextureJudge | None = None,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """The ``comp/`` (and with ``options.mig`` the ``mig/``) metrics of a run, and one row per image.

    ``detections[sample_key]`` are labelled with the layout's classes (phrase-taking detectors'
    labels already mapped back); ``records`` are the per-instance records of the same detections;
    ``root`` is the folder the samples' ``image`` paths are relative to. The texture check uses
    ``texture_judge``, else the colour ``judge``'s CLIP over ``options.textures``.
    """
    from pathlib import Path

    from gligen_eval.imageio import pil_open

    if texture_judge is None and judge is not None and options.textures:
        texture_judge = ClipTextureJudge(judge.scorer, options.textures)
    by_id = {lay.layout_id: lay for lay in layouts}
    best_iou = {(r.sample_key, r.object_index): r.best_iou for r in records}
    rows: list[dict[str, Any]] = []
    counts: list[dict[str, Any]] = []
    relations: list[dict[str, Any]] = []
    colors: list[dict[str, Any]] = []
    textures: list[dict[str, Any]] = []
    mig_items: list[tuple[int, float, bool]] = []
    for s in samples:
        lay = by_id[s.layout_id]
        dets = list(detections.get(s.sample_key, ()))
        c_rows = count_rows(lay, dets, options.min_score)
        r_rows = relation_rows(lay, dets, options)
        with pil_open(Path(root) / s.image) as im:
            rgb = im.convert("RGB")
            k_rows = color_rows(rgb, lay, options, judge)
            t_rows = texture_rows(rgb, lay, options, texture_judge) if texture_judge is not None else []
        textures += t_rows
        counts += c_rows
        relations += r_rows
        colors += k_rows
        row = {"sample_key": s.sample_key, "layout_id": s.layout_id, "seed": s.seed, "counts": c_rows,
               "relations": r_rows, "colors": k_rows, "textures": t_rows}  # fmt: skip
        if options.mig:
            ok = {r["object"]: r["hsv_ok"] is not False for r in k_rows}
            row["mig"] = []
            for i in range(len(lay.objects)):
                item = (len(lay.objects), best_iou.get((s.sample_key, i), 0.0), ok.get(i, True))
                mig_items.append(item)
                reached = item[1] >= options.mig_iou
                row["mig"].append({"object": i, "iou": item[1], "success": reached and item[2],
                                   "value": 0.0 if reached and not item[2] else item[1]})  # fmt: skip
        rows.append(row)
    out: dict[str, float] = {f"comp/{k}": v for k, v in count_metrics(counts).items()}
    extra = {"comp/relation_acc": _rate(r["holds"] for r in relations),
             "comp/color_acc_hsv": _rate(r["hsv_ok"] for r in colors),
             "comp/color_acc_clip": _rate(r["clip_ok"] for r in colors) if judge is not None else None,
             "comp/texture_acc_clip": _rate(r["clip_ok"] for r in textures)}  # fmt: skip
    out.update({k: v for k, v in extra.items() if v is not None})
    if options.mig:
        out.update(mig_metrics(mig_items, options.mig_iou))
    return {k: out[k] for k in (*COMP_KEYS, *MIG_KEYS) if k in out}, rows
