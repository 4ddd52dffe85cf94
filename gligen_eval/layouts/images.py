"""A folder of images with captions (the spatial benchmarks' layouts): JSON Lines, one row per image.

```
{"id": "robot-1", "caption": "a humanoid robot", "image": "robot.jpg", "map": "robot_canny.png"}
{"id": "bird-2", "caption": "a bird on a branch", "image": "bird.jpg",
 "boxes": [{"phrase": "bird", "box": [0.2, 0.1, 0.7, 0.8]}]}
```

``id`` (or ``layout_id``) and ``caption`` are required, and at least one of ``image`` (the real
photo: maps are extracted from it, and it is the real-image reference) and ``map`` (a given
condition map, :attr:`Layout.condition_map`). Relative paths are relative to ``images_dir`` when
given, else to the file's folder; every file must exist. ``boxes`` (normalized xyxy with a
``phrase``, optional ``category``) and ``width``/``height`` are optional. The source is the
``.jsonl`` file or a folder holding exactly one ``.jsonl``. Every error names the file and line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from gligen_eval.boxes import area_xyxy
from gligen_eval.errors import InputError
from gligen_eval.layouts.common import check_selection_options, count_note, keep_largest, subsample, warn
from gligen_eval.records import GroundedObject, Layout

ROW_KEYS = ("id", "layout_id", "caption", "image", "map", "boxes", "width", "height")


def image_list_file(path: str | os.PathLike) -> Path:
    """The ``.jsonl`` of a source path (the file itself, or the only one in a folder)."""
    p = Path(path)
    if p.is_file():
        return p
    if not p.is_dir():
        raise InputError("layout source not found", path=str(path))
    found = sorted(q for q in p.glob("*.jsonl") if q.is_file())
    if len(found) != 1:
        what = "no .jsonl file" if not found else f"{len(found)} .jsonl files ({', '.join(q.name for q in found)})"
        raise InputError(f"an image folder source needs exactly one .jsonl of rows (id, caption, image); found {what}",
                         path=str(path))  # fmt: skip
    return found[0]


def sniff_jsonl_kind(path: Path) -> str:
    """``images`` when the first row of a ``.jsonl`` is an image row, else ``jsonl`` (our layout format)."""
    try:
        with path.open("rb") as f:
            for raw in f:
                if raw.strip():
                    row = json.loads(raw)
                    break
            else:
                return "jsonl"
    except (OSError, ValueError, RecursionError):
        return "jsonl"  # the jsonl reader reports the problem with its line number
    if isinstance(row, dict) and "objects" not in row and "caption" in row and ("image" in row or "map" in row):
        return "images"
    return "jsonl"


def _file(value: Any, key: str, base: Path, path: Path, rec: str) -> str:
    if not isinstance(value, str) or not value:
        raise InputError(f"'{key}' must be a file path", path=str(path), record=rec)
    p = Path(value).expanduser()
    p = p if p.is_absolute() else base / p
    if not p.is_file():
        raise InputError(f"{key} file not found: {p}", path=str(path), record=rec)
    return str(p)


def _boxes(value: Any, path: Path, rec: str) -> list[GroundedObject]:
    if not isinstance(value, list) or not all(isinstance(b, dict) for b in value):
        raise InputError("'boxes' must be a list of {\"phrase\", \"box\"} objects", path=str(path), record=rec)
    out = []
    for i, b in enumerate(value):
        extra = set(b) - {"phrase", "box", "category"}
        if extra or "phrase" not in b or "box" not in b:
            raise InputError(f"boxes[{i}] needs 'phrase' and 'box' (optional 'category'), got keys {sorted(b)}",
                             path=str(path), record=rec)  # fmt: skip
        try:
            out.append(GroundedObject(phrase=b["phrase"], box=tuple(b["box"]), category=b.get("category")))
        except (TypeError, ValueError) as e:
            raise InputError(f"boxes[{i}]: {e}", path=str(path), record=rec) from None
    return out


def load_image_folder(
    path: str | os.PathLike,
    *,
    images_dir: str | os.PathLike | None = None,
    max_objects: int | None = 30,
    min_area: float = 0.0,
    limit: int | None = None,
    seed: int = 0,
) -> list[Layout]:
    """Layouts from an image folder's JSON Lines (format in the module docstring)."""
    check_selection_options(max_objects, min_area, limit, seed)
    src = image_list_file(path)
    base = Path(images_dir).expanduser() if images_dir is not None else src.parent
    layouts: list[Layout] = []
    seen: dict[str, int] = {}
    truncated = 0
    for lineno, raw in enumerate(src.read_bytes().splitlines(), start=1):
        rec = f"line {lineno}"
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except (ValueError, RecursionError) as e:  # malformed, not UTF-8, a number too long, nesting too deep
            raise InputError(f"malformed JSON ({type(e).__name__}: {str(e)[:120]})", path=str(src), record=rec) from None
        if not isinstance(row, dict):
            raise InputError("expected a JSON object (one image row)", path=str(src), record=rec)
        unknown = sorted(set(row) - set(ROW_KEYS))
        if unknown:
            raise InputError(f"unknown key(s) {', '.join(unknown)} (known: {', '.join(ROW_KEYS)})", path=str(src), record=rec)
        lid = row.get("id", row.get("layout_id"))
        if not isinstance(lid, (str, int)) or isinstance(lid, bool) or str(lid) == "":
            raise InputError("missing 'id'", path=str(src), record=rec)
        lid = str(lid)
        rec = f"line {lineno}, layout {lid}"
        if not isinstance(row.get("caption"), str):
            raise InputError("missing 'caption' (a string)", path=str(src), record=rec)
        if "image" not in row and "map" not in row:
            raise InputError("a row needs 'image' (a real photo) or 'map' (a condition map), or both", path=str(src), record=rec)
        if lid in seen:
            raise InputError(f"layout id {lid!r} is also on line {seen[lid]}", path=str(src), record=rec)
        seen[lid] = lineno
        image = _file(row["image"], "image", base, src, rec) if "image" in row else None
        cmap = _file(row["map"], "map", base, src, rec) if "map" in row else None
        objects = [o for o in _boxes(row.get("boxes", []), src, rec) if area_xyxy(o.box) >= min_area]
        objects, cut = keep_largest(objects, lambda o: o.box, max_objects, reorder=False)
        truncated += cut
        try:
            layouts.append(Layout(layout_id=lid, caption=row["caption"], objects=tuple(objects), width=row.get("width"),
                                  height=row.get("height"), image_path=image, source="images", condition_map=cmap))  # fmt: skip
        except ValueError as e:
            raise InputError(str(e), path=str(src), record=rec) from None
    if truncated:
        warn(f"{src}: {count_note(truncated, 'layout')} had more than {max_objects} boxes; kept the {max_objects} largest")
    return subsample(layouts, limit, seed)
