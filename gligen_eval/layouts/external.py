"""Published free-phrase layout sets.

**NSR-1K** (LayoutGPT, ``counting.val.json`` / ``spatial.val.json``): a list of records with a
``prompt`` and either ``object_list`` (counting: ``[[name, [x, y, w, h]], ...]``) or ``obj1``/``obj2``
(spatial), boxes normalized ``[x, y, w, h]`` (converted with
:func:`gligen_eval.boxes.xywh_norm_to_xyxy_norm`). Layout ids are ``nsr1k-<counting|spatial>-<id>``;
``category`` is the object name (COCO class names in this set); ``source`` is ``nsr1k/<kind>``.
Spatial prompts without a reference layout (all-zero boxes, ``image_id`` -1) are skipped.

**HRS / DrawBench GPT layouts** (attention-refocusing, ``gpt_generated_box_*.json``): a mapping
``prompt → [[phrases], [[x0, y0, x1, y1] pixels on a canvas]]`` (512 × 512). Layout ids are
``hrs-<subset>-<hash of the prompt>`` with the subset taken from the file name (``spatial``,
``drawbench-counting``, ...); phrases are free text with underscores turned into spaces
(``"parking_meter"`` → ``"parking meter"``). A phrase that names a COCO class, up to case, a leading
article and a trailing instance number (``"cat"``, ``"a Dog"``, ``"car 2"``), gets that class as its
``category``; the others (``"pedestrian 1"``, ``"sunny windowsill"``) have none, and a closed-set
detector does not score them (:func:`gligen_eval.scoring.boxes.check_detector_classes`). Boxes
that overshoot the canvas are clipped to it (one warning counts them).

Stated relations (``Layout.relations``, what the spatial checks of scoring use): NSR-1K spatial
records carry ``relation`` (``left``, ``right``, ``top`` → ``above``, ``bottom`` → ``below``; ``next to``
states no direction and is left out) between ``obj1`` and ``obj2``. HRS spatial subsets (file names
with ``spatial``) state it in the prompt: the first object of the prompt is the subject, and each
relation phrase (``on the left of``, ``on the right of``, ``above``/``over``/``on top of``/``on``,
``below``/``under``/``beneath``/``underneath``) relates it to the first object named after it
(``"a banana above a dog and on a horse"``: banana above dog, banana above horse).

The caption is the prompt. Objects keep their order in the file. Selection (``min_area``,
``max_objects`` keeping the largest boxes, ``limit``/``seed``) follows :mod:`gligen_eval.layouts.common`. These files are third-party and contain known defects
(e.g. HRS counting has boxes with two numbers and empty boxes), so by default a bad object is
dropped and counted in one warning (``on_invalid="skip"``); ``on_invalid="error"`` raises an
:class:`~gligen_eval.errors.InputError` naming the file and the record instead.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from gligen_eval.boxes import Box, area_xyxy, clip_xyxy_norm, validate_xyxy_norm, xywh_norm_to_xyxy_norm, xyxy_abs_to_xyxy_norm
from gligen_eval.errors import ConfigError, InputError
from gligen_eval.layouts.common import check_selection_options, count_note, keep_largest, read_json, subsample, warn
from gligen_eval.records import GroundedObject, Layout, stable_hash

OnInvalid = Literal["error", "skip"]


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class _Issues:
    def __init__(self, path: str, on_invalid: OnInvalid):
        if on_invalid not in ("error", "skip"):
            raise ConfigError(f"on_invalid must be 'error' or 'skip', got {on_invalid!r}")
        self.path, self.on_invalid = path, on_invalid
        self.skipped = 0
        self.first: str | None = None
        self.clipped = 0
        self.no_layout = 0
        self.truncated = 0
        self.max_objects: int | None = None

    def __call__(self, message: str, record: str) -> None:
        if self.on_invalid == "error":
            raise InputError(message, path=self.path, record=record)
        self.skipped += 1
        if self.first is None:
            self.first = f"[{record}]: {message}"

    def flush(self, canvas_note: str = "") -> None:
        if self.skipped:
            warn(f"{self.path}: skipped {count_note(self.skipped, 'invalid object')} (first: {self.first})")
        if self.clipped:
            warn(f"{self.path}: clipped {count_note(self.clipped, 'box', 'boxes')} that overshot the {canvas_note}")
        if self.no_layout:
            warn(f"{self.path}: skipped {count_note(self.no_layout, 'prompt')} with no usable box")
        if self.truncated:
            warn(f"{self.path}: {count_note(self.truncated, 'layout')} had more than {self.max_objects} objects; "
                 f"kept the {self.max_objects} largest boxes")  # fmt: skip


def _finish(
    rows: Sequence[tuple[str, str, list[GroundedObject], str, str]],
    issues: _Issues,
    *,
    max_objects: int | None,
    min_area: float,
    limit: int | None,
    seed: int,
    canvas_note: str = "",
    stated: Mapping[str, Sequence[tuple[str, str, str]]] | None = None,
) -> list[Layout]:
    """rows: (layout_id, caption, objects, source, record) → selected layouts; ``stated``: layout id →
    relations ``(subject source_id, relation, object source_id)``, kept where both objects are."""
    issues.max_objects = max_objects
    layouts = []
    seen: dict[str, str] = {}
    for lid, caption, objects, source, record in rows:
        if lid in seen:
            raise InputError(f"layout id {lid!r} is used twice ({seen[lid]} and {record})", path=issues.path, record=record)
        seen[lid] = record
        objects = [o for o in objects if area_xyxy(o.box) >= min_area]
        objects, cut = keep_largest(objects, lambda o: o.box, max_objects, reorder=False)
        issues.truncated += cut
        if not objects:
            issues.no_layout += 1
            continue
        index = {o.source_id: i for i, o in enumerate(objects)}
        rels = tuple((index[a], rel, index[b]) for a, rel, b in (stated or {}).get(lid, ()) if a in index and b in index)
        layouts.append(Layout(layout_id=lid, caption=caption, objects=tuple(objects), source=source, relations=rels))
    issues.flush(canvas_note)
    return subsample(layouts, limit, seed)


def _phrase(value: Any, *, underscores: bool = False) -> str | None:
    if isinstance(value, str) and value.strip(" _"):
        return " ".join((value.replace("_", " ") if underscores else value).split())
    return None


# --------------------------------------------------------------------------------------------
# NSR-1K


def _nsr_box(value: Any, tol: float) -> tuple[Box | None, str | None]:
    if not isinstance(value, (list, tuple)) or len(value) != 4 or not all(_num(v) for v in value):
        return None, f"box must be 4 numbers [x, y, w, h], got {value!r}"
    box = xywh_norm_to_xyxy_norm(value)
    if min(box) < -tol or max(box) > 1 + tol:
        return None, f"box {list(value)!r} lies outside the image (normalized [x, y, w, h])"
    box = clip_xyxy_norm(box)
    problem = validate_xyxy_norm(box)
    return (None, problem) if problem else (box, None)


def load_nsr1k(
    path: str | os.PathLike,
    *,
    max_objects: int | None = 30,
    min_area: float = 0.0,
    limit: int | None = None,
    seed: int = 0,
    tolerance: float = 1e-3,
    on_invalid: OnInvalid = "skip",
) -> list[Layout]:
    """NSR-1K layouts (LayoutGPT counting or spatial file); rules in the module docstring."""
    check_selection_options(max_objects, min_area, limit, seed)
    data = read_json(path, "NSR-1K file")
    return _nsr_from_data(data, str(path), max_objects=max_objects, min_area=min_area, limit=limit, seed=seed,
                          tolerance=tolerance, on_invalid=on_invalid)  # fmt: skip


def _nsr_from_data(data: Any, path: str, *, max_objects, min_area, limit, seed, tolerance, on_invalid) -> list[Layout]:
    if not isinstance(data, list):
        raise InputError(f"expected a JSON list of NSR-1K records, got {type(data).__name__}", path=path)
    issues = _Issues(path, on_invalid)
    rows = []
    stated: dict[str, list[tuple[str, str, str]]] = {}
    for i, rec in enumerate(data):
        where = f"id {rec['id']}" if isinstance(rec, Mapping) and "id" in rec else f"record {i}"
        if not isinstance(rec, Mapping):
            raise InputError("a record must be an object", path=path, record=where)
        if "id" not in rec or "prompt" not in rec:
            raise InputError("missing field 'id' or 'prompt'; is this an NSR-1K file?", path=path, record=where)
        if not isinstance(rec["prompt"], str):
            raise InputError(f"prompt must be a string, got {rec['prompt']!r}", path=path, record=where)
        if "object_list" in rec:
            kind, items = "counting", rec["object_list"]
            if not isinstance(items, list):
                raise InputError("object_list must be a list", path=path, record=where)
        elif "obj1" in rec and "obj2" in rec:
            kind, items = "spatial", [rec["obj1"], rec["obj2"]]
        else:
            raise InputError("has neither 'object_list' (counting) nor 'obj1'/'obj2' (spatial)", path=path, record=where)
        objects = []
        for j, item in enumerate(items):
            if not isinstance(item, (list, tuple)) or len(item) != 2:
                issues(f"object {j} must be [name, [x, y, w, h]], got {item!r}", where)
                continue
            name, raw = _phrase(item[0]), item[1]
            if name is None:
                issues(f"object {j} has no name", where)
                continue
            if isinstance(raw, (list, tuple)) and len(raw) == 4 and all(v == 0 for v in raw):
                continue  # no reference box (layout-free prompt)
            box, problem = _nsr_box(raw, tolerance)
            if problem:
                issues(f"object {j} ({name}): {problem}", where)
                continue
            objects.append(GroundedObject(phrase=name, box=box, category=name, source_id=f"{rec['id']}:{j}"))
        rel = _NSR_RELATIONS.get(str(rec.get("relation", "")).strip().lower()) if kind == "spatial" else None
        if rel is not None:
            stated[f"nsr1k-{kind}-{rec['id']}"] = [(f"{rec['id']}:0", rel, f"{rec['id']}:1")]
        rows.append((f"nsr1k-{kind}-{rec['id']}", " ".join(rec["prompt"].split()), objects, f"nsr1k/{kind}", where))
    return _finish(rows, issues, max_objects=max_objects, min_area=min_area, limit=limit, seed=seed, stated=stated)


_NSR_RELATIONS = {"left": "left", "right": "right", "top": "above", "above": "above", "bottom": "below", "below": "below"}


# --------------------------------------------------------------------------------------------
# HRS / DrawBench GPT layouts


def hrs_subset(path: str | os.PathLike) -> str:
    """``gpt_generated_box__spatial.json`` → ``spatial``; ``gpt_generated_box_drawbench__counting.json`` →
    ``drawbench-counting``; other names → the file stem."""
    stem = Path(path).name.split(".")[0]
    rest = re.sub(r"^gpt_generated_box_*", "", stem)
    rest = re.sub(r"_+", "-", rest).strip("-")
    return rest or stem


def load_hrs(
    path: str | os.PathLike,
    *,
    canvas: float = 512,
    max_objects: int | None = 30,
    min_area: float = 0.0,
    limit: int | None = None,
    seed: int = 0,
    subset: str | None = None,
    on_invalid: OnInvalid = "skip",
) -> list[Layout]:
    """HRS / DrawBench GPT layouts (``prompt → [[phrases], [pixel xyxy]]``); rules in the module docstring."""
    check_selection_options(max_objects, min_area, limit, seed)
    data = read_json(path, "HRS layout file")
    return _hrs_from_data(data, str(path), canvas=canvas, max_objects=max_objects, min_area=min_area, limit=limit,
                          seed=seed, subset=subset or hrs_subset(path), on_invalid=on_invalid)  # fmt: skip


def coco_class_of_phrase(phrase: str) -> str | None:
    """The COCO class a free phrase names (``"a Cat"``, ``"car 2"``, ``"motorbike"``), else ``None``."""
    from gligen_eval.scoring.coco import COCO80_NAMES, canonical_category

    words = canonical_category(phrase).split()
    if words and words[0] in ("a", "an", "the"):
        words = words[1:]
    if len(words) > 1 and words[-1].isdigit():
        words = words[:-1]
    name = canonical_category(" ".join(words))
    return name if name in COCO80_NAMES else None


def _hrs_from_data(data: Any, path: str, *, canvas, max_objects, min_area, limit, seed, subset, on_invalid) -> list[Layout]:
    if not _num(canvas) or canvas <= 0:
        raise ConfigError(f"canvas must be a positive number of pixels, got {canvas!r}")
    if not isinstance(data, Mapping):
        raise InputError(f"expected a JSON object mapping prompts to [[phrases], [boxes]], got {type(data).__name__}", path=path)
    issues = _Issues(path, on_invalid)
    rows = []
    stated: dict[str, list[tuple[str, str, str]]] = {}
    for prompt, value in data.items():
        where = f"prompt {prompt!r}"
        if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, list) for v in value)):
            raise InputError("value must be [[phrases], [boxes]]", path=path, record=where)
        phrases, boxes = value
        if len(phrases) != len(boxes):
            issues(f"{len(phrases)} phrases but {len(boxes)} boxes", where)
            phrases, boxes = [], []
        objects = []
        for j, (ph, raw) in enumerate(zip(phrases, boxes)):
            name = _phrase(ph, underscores=True)
            if name is None:
                issues(f"object {j} has no phrase", where)
                continue
            if not isinstance(raw, (list, tuple)) or len(raw) != 4 or not all(_num(v) for v in raw):
                issues(f"object {j} ({name}): box must be 4 numbers [x0, y0, x1, y1], got {raw!r}", where)
                continue
            x0, y0, x1, y1 = (float(v) for v in raw)
            cx0, cy0, cx1, cy1 = max(0.0, x0), max(0.0, y0), min(float(canvas), x1), min(float(canvas), y1)
            if not (cx1 > cx0 and cy1 > cy0):
                issues(f"object {j} ({name}): box {list(raw)!r} is empty on the {canvas:g}x{canvas:g} canvas", where)
                continue
            if (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1):
                issues.clipped += 1
            box = clip_xyxy_norm(xyxy_abs_to_xyxy_norm((cx0, cy0, cx1, cy1), canvas, canvas))
            objects.append(GroundedObject(phrase=name, box=box, category=coco_class_of_phrase(name), source_id=str(j)))
        caption = " ".join(str(prompt).split())
        lid = f"hrs-{subset}-{stable_hash(prompt, length=12)}"
        if "spatial" in subset:
            stated[lid] = [(objects[a].source_id, rel, objects[b].source_id)
                           for a, rel, b in prompt_relations(caption, [o.phrase for o in objects])]  # fmt: skip
        rows.append((lid, caption, objects, f"hrs/{subset}", where))
    return _finish(rows, issues, max_objects=max_objects, min_area=min_area, limit=limit, seed=seed,
                   canvas_note=f"{canvas:g}x{canvas:g} canvas", stated=stated)  # fmt: skip


_PROMPT_RELATIONS = (
    ("on the left of", "left"), ("to the left of", "left"), ("left of", "left"),
    ("on the right of", "right"), ("to the right of", "right"), ("right of", "right"),
    ("on top of", "above"), ("above", "above"), ("over", "above"), ("on", "above"),
    ("underneath", "below"), ("beneath", "below"), ("below", "below"), ("under", "below"),
)  # fmt: skip


def prompt_relations(prompt: str, phrases: Sequence[str]) -> list[tuple[int, str, int]]:
    """The relations a spatial prompt states between its objects, ``(subject index, relation, object
    index)``: the object named first is the subject, each relation phrase relates it to the first
    object named after that phrase (whole words, case-insensitive)."""
    text = prompt.lower()
    found: list[tuple[int, int]] = []  # (position, object index) of each object's first mention
    for i, ph in enumerate(phrases):
        m = re.search(r"\b" + re.escape(ph.lower()) + r"s?\b", text)
        if m is not None:
            found.append((m.start(), i))
    if len(found) < 2:
        return []
    found.sort()
    subject = found[0][1]
    taken: list[tuple[int, int]] = []
    hits: list[tuple[int, tuple[int, str, int]]] = []
    for words, rel in _PROMPT_RELATIONS:  # longest phrases first: "on the left of" before "on"
        for m in re.finditer(r"\b" + re.escape(words) + r"\b", text):
            if any(a < m.end() and m.start() < b for a, b in taken):
                continue
            taken.append((m.start(), m.end()))
            after = [i for pos, i in found if pos >= m.end() and i != subject]
            if after:
                hits.append((m.start(), (subject, rel, after[0])))
    out: list[tuple[int, str, int]] = []
    for _, r in sorted(hits):  # in the order the prompt states them
        if r not in out:
            out.append(r)
    return out
