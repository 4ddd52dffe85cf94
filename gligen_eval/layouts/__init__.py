"""Layout sources: where the captions, phrases, boxes and keypoints to generate come from.

``load_layouts(source, **options)`` picks the reader from ``source``:

==========================  ==========================================================================
``sample``                  the bundled sample (``layouts/sample/``): text+box layouts; persons carry
                            their 17 keypoints (merged from ``person_keypoints_sample.json`` by
                            annotation id)
``sample-keypoints``        the same sample as keypoint layouts (persons only, at most 8 per image)
``instances_*.json``        COCO instances (+ ``captions=`` a ``captions_*.json``) → :func:`load_coco`
``person_keypoints_*.json`` COCO person keypoints → :func:`load_coco_keypoints`
``lvis*.json``              LVIS v1 / v0.5 → :func:`load_lvis`
``*.jsonl``                 our JSON Lines format, one ``Layout.to_dict()`` per line → :func:`load_jsonl`
NSR-1K ``*.val.json``       LayoutGPT NSR-1K counting / spatial → :func:`load_nsr1k`
``gpt_generated_box*.json`` HRS / DrawBench GPT layouts → :func:`load_hrs`
image folder / ``*.jsonl``  rows ``{id, caption, image, map?, boxes?}`` (spatial maps) → :func:`load_image_folder`
ADE20K folder               ``images/`` + ``annotations/`` (+ ``captions=``), sem layouts → :func:`load_ade20k`
``coco-mig:PATH``           COCO-MIG-style layouts from COCO instances → :func:`load_coco_mig`
``sample-mig``              the same from the bundled sample
==========================  ==========================================================================

Other ``.json`` names are recognised by their content. ``KIND:PATH`` (e.g. ``lvis:/data/val.json``)
names the reader explicitly; the kinds are the keys of :data:`SOURCE_KINDS`.

Options: ``captions``, ``limit``, ``seed``, ``max_objects``, ``min_area``, ``skip_crowd``,
``images_dir``, ``max_persons`` (persons with keypoints per layout, default 8, for every source: see
:func:`~gligen_eval.layouts.common.limit_persons`) and each reader's own keywords. An option set to ``None`` means "not set". An
option the chosen reader does not take is a :class:`~gligen_eval.errors.ConfigError`, except the
shared selection options at their defaults (``seed=0``, ``max_objects=30``, ``min_area=0.0``,
``skip_crowd=True``), so that one config can feed every source.

Importing this package is cheap (no torch, no numpy).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import statistics
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

from gligen_eval.errors import ConfigError, InputError
from gligen_eval.layouts.coco import load_coco, load_coco_keypoints, read_captions
from gligen_eval.layouts.ade20k import is_ade20k_root, load_ade20k
from gligen_eval.layouts.coco_mig import load_coco_mig
from gligen_eval.layouts.common import DEFAULT_MAX_PERSONS, LayoutWarning, caption_from_phrases, limit_persons, subsample
from gligen_eval.layouts.external import hrs_subset, load_hrs, load_nsr1k
from gligen_eval.layouts.images import load_image_folder, sniff_jsonl_kind
from gligen_eval.layouts.jsonl import load_jsonl, write_jsonl
from gligen_eval.layouts.lvis import LvisCategory, LvisMeta, load_lvis, load_lvis_meta, lvis_phrase
from gligen_eval.records import Layout
from gligen_eval.registry import Registry

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"
SAMPLE_INSTANCES = SAMPLE_DIR / "instances_sample.json"
SAMPLE_CAPTIONS = SAMPLE_DIR / "captions_sample.json"
SAMPLE_KEYPOINTS = SAMPLE_DIR / "person_keypoints_sample.json"


def load_sample(**options: Any) -> list[Layout]:
    """The bundled sample as text+box layouts (ids ``sample-<image_id>``); persons carry keypoints."""
    return load_coco(SAMPLE_INSTANCES, SAMPLE_CAPTIONS, keypoints_path=SAMPLE_KEYPOINTS, id_prefix="sample", **options)


def load_sample_keypoints(**options: Any) -> list[Layout]:
    """The bundled sample as keypoint layouts (ids ``sample-kp-<image_id>``)."""
    return load_coco_keypoints(SAMPLE_KEYPOINTS, SAMPLE_CAPTIONS, id_prefix="sample-kp", **options)


def load_sample_mig(**options: Any) -> list[Layout]:
    """The bundled sample as COCO-MIG-style layouts (ids ``mig-<image_id>``)."""
    return load_coco_mig(SAMPLE_INSTANCES, **options)


SOURCE_KINDS = Registry("layout source kind", {
    "coco": "gligen_eval.layouts.coco:load_coco",
    "coco-keypoints": "gligen_eval.layouts.coco:load_coco_keypoints",
    "lvis": "gligen_eval.layouts.lvis:load_lvis",
    "jsonl": "gligen_eval.layouts.jsonl:load_jsonl",
    "nsr1k": "gligen_eval.layouts.external:load_nsr1k",
    "hrs": "gligen_eval.layouts.external:load_hrs",
    "images": "gligen_eval.layouts.images:load_image_folder",
    "ade20k": "gligen_eval.layouts.ade20k:load_ade20k",
    "coco-mig": "gligen_eval.layouts.coco_mig:load_coco_mig",
}, paths=False)  # fmt: skip
"""Readers of layout files, by kind (``KIND:PATH`` selects one explicitly). A reader of one's own:
``SOURCE_KINDS.register("mine", "package.module:load_mine")``, then ``mine:PATH``; it takes the
path first and the options as keywords, and returns a list of layouts."""

BUILTIN_SOURCES: dict[str, Callable[..., list[Layout]]] = {
    "sample": load_sample,
    "sample-keypoints": load_sample_keypoints,
    "sample-mig": load_sample_mig,
}

FOLDER_KINDS = ("images", "ade20k")
"""Kinds whose source may be a folder."""

_SHARED_DEFAULTS: dict[str, Any] = {"seed": 0, "max_objects": 30, "min_area": 0.0, "skip_crowd": True}
_FIXED = {"sample": {"instances_path", "captions_path", "keypoints_path", "id_prefix"}, "sample-mig": {"id_prefix"},
          "sample-keypoints": {"person_keypoints_path", "captions_path", "id_prefix"}}  # fmt: skip


def _accepted(kind: str, fn: Callable[..., Any]) -> set[str]:
    target = {"sample": load_coco, "sample-keypoints": load_coco_keypoints, "sample-mig": load_coco_mig}.get(kind, fn)
    params = inspect.signature(target).parameters
    names = [n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return set(names[1:]) - _FIXED.get(kind, set())  # the first parameter is the path


def _sniff_name(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".jsonl"):
        return sniff_jsonl_kind(path)
    if not name.endswith(".json"):
        return None
    if name.startswith("person_keypoints"):
        return "coco-keypoints"
    if name.startswith("captions"):
        raise InputError("this is a COCO captions file; pass it as captions= next to an instances_*.json source", path=str(path))
    if "lvis" in name:
        return "lvis"
    if "instances" in name:
        return "coco"
    if name.startswith("gpt_generated_box"):
        return "hrs"
    if "nsr" in name or name in ("counting.val.json", "spatial.val.json"):
        return "nsr1k"
    return None


def _sniff_content(path: Path) -> str:
    from gligen_eval.layouts.common import read_json

    data = read_json(path)
    if isinstance(data, list):
        first = next((r for r in data if isinstance(r, dict)), None)
        if first is not None and ("object_list" in first or "obj1" in first):
            return "nsr1k"
    elif isinstance(data, dict):
        cats = data.get("categories")
        if isinstance(cats, list) and "annotations" in data:
            if any(isinstance(c, dict) and "frequency" in c for c in cats):
                return "lvis"
            if any(isinstance(c, dict) and isinstance(c.get("keypoints"), list) for c in cats):
                return "coco-keypoints"
            return "coco"
        if "annotations" in data:
            anns = data["annotations"]
            if isinstance(anns, list) and anns and isinstance(anns[0], dict) and "caption" in anns[0]:
                raise InputError("this is a COCO captions file; pass it as captions= next to an instances_*.json source",
                                 path=str(path))  # fmt: skip
        if data and all(isinstance(v, list) and len(v) == 2 and isinstance(v[0], list) for v in data.values()):
            return "hrs"
        if "layout_id" in data:
            raise InputError("holds a single layout; write one layout per line in a .jsonl file", path=str(path))
    raise InputError(
        "unrecognised layout file; expected COCO instances / person_keypoints, LVIS, NSR-1K, HRS (.json) or "
        "our .jsonl format (or name the kind: KIND:PATH with KIND one of " + ", ".join(SOURCE_KINDS) + ")",
        path=str(path),
    )


def resolve_source(source: str | os.PathLike) -> tuple[str, Path | None]:
    """``(kind, path)`` for a source string; ``path`` is None for the built-in sources."""
    text = os.fspath(source)
    if text in BUILTIN_SOURCES:
        return text, None
    kind: str | None = None
    if ":" in text:
        head, rest = text.split(":", 1)
        if head in SOURCE_KINDS:
            kind, text = head, rest
    path = Path(text).expanduser()
    if not path.exists():
        raise InputError(
            "no such layout source; use 'sample', 'sample-keypoints', a layout file (COCO instances / "
            "person_keypoints, LVIS, NSR-1K, HRS .json, or .jsonl) or KIND:PATH",
            path=text,
        )
    if path.is_dir():
        kind = kind or ("ade20k" if is_ade20k_root(path) else "images" if any(path.glob("*.jsonl")) else None)
        if kind not in FOLDER_KINDS:
            raise InputError("is a folder; point at a layout file (e.g. annotations/instances_val2017.json), an image "
                             "folder with a .jsonl of rows, or an ADE20K folder", path=text)  # fmt: skip
        return kind, path
    if kind is None:
        kind = _sniff_name(path) or _sniff_content(path)
    return kind, path


def load_layouts(source: str | os.PathLike, **options: Any) -> list[Layout]:
    """Load layouts from ``source`` (see the module docstring for sources and options)."""
    kind, path = resolve_source(source)
    fn = BUILTIN_SOURCES.get(kind) or SOURCE_KINDS.resolve(kind)
    accepted = _accepted(kind, fn)
    kwargs: dict[str, Any] = {}
    max_persons = options.pop("max_persons", None)
    max_persons = DEFAULT_MAX_PERSONS if max_persons is None else max_persons
    if "max_persons" in accepted:  # the COCO keypoint reader selects its persons itself (same rule)
        kwargs["max_persons"] = max_persons
    for key, value in options.items():
        if value is None:
            continue
        name = "captions_path" if key == "captions" else key
        if name in accepted:
            kwargs[name] = value
        elif key in _SHARED_DEFAULTS and value == _SHARED_DEFAULTS[key] and type(value) is type(_SHARED_DEFAULTS[key]):
            continue
        else:
            shown = sorted("captions" if a == "captions_path" else a for a in accepted)
            raise ConfigError(f"layout option {key}={value!r} does not apply to {kind} layouts ({os.fspath(source)}); "
                              f"accepted: {', '.join(shown)}")  # fmt: skip
    layouts = fn(**kwargs) if path is None else fn(path, **kwargs)
    if path is not None:  # relative reference images are resolved against the source's folder
        folder = str(path.parent)
        layouts = [lay if lay.source_dir is not None else dataclasses.replace(lay, source_dir=folder) for lay in layouts]
    return limit_persons(layouts, max_persons, os.fspath(source))


# --------------------------------------------------------------------------------------------
# summary


def _fmt_box(box: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in box) + "]"


def summarize_layouts(layouts: Sequence[Layout], limit: int | None = None) -> str:
    """A readable text summary: counts, objects per layout, top categories, then one line per layout
    (id, caption, objects with boxes rounded to 2 decimals); ``limit`` caps the per-layout lines."""
    n = len(layouts)
    if n == 0:
        return "0 layouts"
    counts = [len(lay.objects) for lay in layouts]
    total = sum(counts)
    lines = [
        f"{n} layout{'s' if n != 1 else ''}, {total} object{'s' if total != 1 else ''} "
        f"(per layout: min {min(counts)}, median {statistics.median(counts):g}, "
        f"mean {total / n:.1f}, max {max(counts)})"
    ]
    sources = Counter(lay.source or "-" for lay in layouts)
    lines.append("sources: " + ", ".join(f"{s} ({c})" for s, c in sources.most_common()))
    names = Counter(o.category or o.phrase for lay in layouts for o in lay.objects)
    top = names.most_common(10)
    more = len(names) - len(top)
    lines.append(f"top categories ({len(names)} distinct): " + ", ".join(f"{c} {k}" for c, k in top)
                 + (f", ... {more} more" if more > 0 else ""))  # fmt: skip
    areas = sorted((o.box[2] - o.box[0]) * (o.box[3] - o.box[1]) for lay in layouts for o in lay.objects)
    if areas:
        lines.append(f"box area (fraction of image): min {areas[0]:.3f}, median {statistics.median(areas):.3f}, "
                     f"max {areas[-1]:.3f}")  # fmt: skip
    persons = [o for lay in layouts for o in lay.objects if o.keypoints is not None]
    if persons:
        with_kp = sum(1 for lay in layouts if any(o.keypoints is not None for o in lay.objects))
        visible = sum(1 for o in persons for k in o.keypoints if k[2] == 2)
        lines.append(f"keypoints: {len(persons)} persons in {with_kp} layouts, "
                     f"{visible / len(persons):.1f} visible points per person")  # fmt: skip
    lines.append("")
    shown = layouts if limit is None else layouts[: max(0, limit)]
    for lay in shown:
        objs = []
        for o in lay.objects:
            item = f"{o.phrase} {_fmt_box(o.box)}"
            if o.keypoints is not None:
                item += f" kp {sum(1 for k in o.keypoints if k[2] == 2)}/17"
            objs.append(item)
        lines.append(f"{lay.layout_id}  {json.dumps(lay.caption, ensure_ascii=False)}  " + "; ".join(objs))
    if len(shown) < n:
        lines.append(f"... {n - len(shown)} more (showing {len(shown)} of {n})")
    return "\n".join(lines)


__all__ = [
    "BUILTIN_SOURCES",
    "LayoutWarning",
    "LvisCategory",
    "LvisMeta",
    "SAMPLE_DIR",
    "SOURCE_KINDS",
    "caption_from_phrases",
    "hrs_subset",
    "load_ade20k",
    "limit_persons",
    "load_coco",
    "load_coco_keypoints",
    "load_coco_mig",
    "load_hrs",
    "load_image_folder",
    "load_jsonl",
    "load_layouts",
    "load_lvis",
    "load_lvis_meta",
    "load_nsr1k",
    "load_sample",
    "load_sample_keypoints",
    "lvis_phrase",
    "read_captions",
    "resolve_source",
    "subsample",
    "summarize_layouts",
    "write_jsonl",
]
