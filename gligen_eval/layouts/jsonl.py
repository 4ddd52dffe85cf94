"""Our own layout format: JSON Lines, one :meth:`Layout.to_dict` per line.

```
{"layout_id": "kitchen-1", "caption": "a cat on a table", "objects": [
   {"phrase": "cat", "box": [0.1, 0.2, 0.5, 0.6]}, {"phrase": "table", "box": [0.0, 0.5, 1.0, 1.0]}]}
```

Boxes are normalized xyxy; ``category``/``category_id`` are optional (free phrases), as are
``keypoints`` (17 × ``[x, y, v]`` normalized), ``reference_image``, ``width``/``height``,
``image_path`` and ``source``. Objects keep their order. Blank lines are ignored. Every error names the file and the line
number; a layout id used twice is an error. Selection (``min_area``, ``max_objects``, ``limit``/``seed``)
follows :mod:`gligen_eval.layouts.common`; layouts left without objects are skipped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from gligen_eval.boxes import area_xyxy
from gligen_eval.errors import InputError
from gligen_eval.layouts.common import TABLE_MESSAGE, TABLE_SUFFIXES, check_selection_options, json_problem, count_note, keep_largest, subsample, warn
from gligen_eval.records import Layout


def load_jsonl(
    path: str | os.PathLike,
    *,
    max_objects: int | None = 30,
    min_area: float = 0.0,
    limit: int | None = None,
    seed: int = 0,
) -> list[Layout]:
    """Layouts from a JSON Lines file (format in the module docstring)."""
    check_selection_options(max_objects, min_area, limit, seed)
    p = Path(path)
    if not p.is_file():
        raise InputError("layout file not found" if not p.exists() else "layout file is not a file", path=str(path))
    if p.suffix.lower() in TABLE_SUFFIXES:
        raise InputError(TABLE_MESSAGE, path=str(path))
    layouts: list[Layout] = []
    seen: dict[str, int] = {}
    truncated = empty = 0
    with p.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            rec = f"line {lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(f"not UTF-8 text ({e.reason} at byte {e.start})", path=str(path), record=rec) from None
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"malformed JSON at column {e.colno}: {e.msg}", path=str(path), record=rec) from None
            except (ValueError, RecursionError) as e:  # a number too long to convert, nesting too deep
                raise InputError(f"unreadable JSON ({json_problem(e)})", path=str(path), record=rec) from None
            if not isinstance(d, dict):
                raise InputError(f"expected a JSON object (one layout), got {type(d).__name__}", path=str(path), record=rec)
            for key in ("layout_id", "caption", "objects"):
                if key not in d:
                    raise InputError(f"missing field '{key}'", path=str(path), record=rec)
            if not isinstance(d["objects"], list) or not all(isinstance(o, dict) for o in d["objects"]):
                raise InputError("'objects' must be a list of objects", path=str(path), record=rec)
            try:
                layout = Layout.from_dict(d)
            except (ValueError, TypeError) as e:
                raise InputError(str(e), path=str(path), record=f"{rec}, layout {d.get('layout_id')!r}") from None
            if layout.layout_id in seen:
                raise InputError(f"layout id {layout.layout_id!r} is also on line {seen[layout.layout_id]}",
                                 path=str(path), record=rec)  # fmt: skip
            seen[layout.layout_id] = lineno
            big = [i for i, o in enumerate(layout.objects) if area_xyxy(o.box) >= min_area]
            kept, cut = keep_largest(big, lambda i: layout.objects[i].box, max_objects, reorder=False)
            truncated += cut
            if not kept:
                empty += 1
                continue
            if len(kept) != len(layout.objects) or cut:
                layout = layout.keep_objects(kept)
            layouts.append(layout)
    if truncated:
        warn(f"{path}: {count_note(truncated, 'layout')} had more than {max_objects} objects; kept the {max_objects} largest boxes")
    if empty:
        warn(f"{path}: skipped {count_note(empty, 'layout')} with no object left")
    return subsample(layouts, limit, seed)


def write_jsonl(layouts: Iterable[Layout], path: str | os.PathLike) -> Path:
    """Write layouts in the format :func:`load_jsonl` reads (atomically: a temporary file, then rename)."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for layout in layouts:
            f.write(json.dumps(layout.to_dict(), ensure_ascii=False, sort_keys=False) + "\n")
    os.replace(tmp, p)
    return p
