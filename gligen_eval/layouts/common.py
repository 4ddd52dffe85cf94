"""Pieces shared by the layout sources: reading JSON with one-line errors, selection rules,
the deterministic subsample, fallback captions and the warning category.

Selection rules (the same for every source):

* objects whose box covers less than ``min_area`` of the image are dropped;
* when more than ``max_objects`` remain, the largest boxes are kept (ties: the earlier object),
  and one :class:`LayoutWarning` per file says how many layouts were truncated;
* layouts with no objects left are skipped;
* a layout grounds at most ``max_persons`` (8, the slots of the keypoint model) persons with
  keypoints (:func:`limit_persons`, applied by :func:`~gligen_eval.layouts.load_layouts` to every
  source): the largest keep theirs (ties: the earlier person). In a keypoint layout (every object
  is a person with keypoints) the other persons are dropped, as the COCO keypoint reader does; in
  a layout with other objects they stay as boxes without keypoints. One :class:`LayoutWarning` per
  file counts the layouts changed. The generator and every scorer then see the same persons: the
  layouts as loaded (and as stored in a run's ``layouts.jsonl``);
* ``limit`` keeps a deterministic subsample: every layout id is ranked by
  ``sha256([seed, layout_id])`` and the ``limit`` lowest ranks are kept. The choice depends only on
  the seed and the ids, never on file order, and a larger ``limit`` keeps a superset of a smaller one.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from gligen_eval.boxes import area_xyxy
from gligen_eval.errors import ConfigError, InputError
from gligen_eval.records import stable_hash

T = TypeVar("T")


class LayoutWarning(UserWarning):
    """Something in a layout file was changed or left out on purpose (truncation, dropped boxes)."""


def warn(message: str) -> None:
    warnings.warn(message, LayoutWarning, stacklevel=3)


TABLE_SUFFIXES = (".csv", ".tsv")
TABLE_MESSAGE = ("a CSV table is not a layout file: an HRS-Bench / DrawBench prompt table lists prompts and object "
                 "names but no boxes; use that benchmark's GPT layouts (gpt_generated_box_*.json: prompt -> "
                 "[[phrases], [boxes]]) or write our .jsonl format")


def read_json(path: str | os.PathLike, what: str = "layout file") -> Any:
    """Parse a JSON file; a missing file or malformed JSON is an :class:`InputError` naming the file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} not found" if not p.exists() else f"{what} is not a file", path=str(path))
    if p.suffix.lower() in TABLE_SUFFIXES:
        raise InputError(TABLE_MESSAGE, path=str(path))
    try:
        with p.open("r", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise InputError(f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}", path=str(path)) from None
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 text ({e.reason} at byte {e.start})", path=str(path)) from None
    except (ValueError, RecursionError) as e:  # a number too long to convert, nesting too deep
        raise InputError(f"unreadable JSON ({json_problem(e)})", path=str(path)) from None


def json_problem(e: BaseException) -> str:
    """What Python's JSON reader could not take, in a few words."""
    if isinstance(e, RecursionError):
        return "nested too deeply"
    return str(e).split(";")[0].split("\n")[0]


def check_selection_options(max_objects: int | None, min_area: float, limit: int | None, seed: int) -> None:
    if max_objects is not None and (isinstance(max_objects, bool) or not isinstance(max_objects, int) or max_objects < 1):
        raise ConfigError(f"max_objects must be a positive integer, got {max_objects!r}")
    if isinstance(min_area, bool) or not isinstance(min_area, (int, float)) or not (0.0 <= min_area < 1.0):
        raise ConfigError(f"min_area must be a fraction of the image area in [0, 1), got {min_area!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ConfigError(f"limit must be a non-negative integer or None, got {limit!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an integer, got {seed!r}")


def keep_largest(
    items: Sequence[T], box_of: Callable[[T], Sequence[float]], max_objects: int | None, *, reorder: bool = True
) -> tuple[list[T], bool]:
    """Keep the ``max_objects`` items with the largest boxes (ties: the earlier item).

    With ``reorder`` the result is ordered by box area, largest first (the GLIGEN rule for COCO);
    otherwise the kept items stay in their input order. Returns the kept items and whether any were cut.
    """
    # rounded so that equal boxes at different places tie despite float error in x1 - x0
    order = sorted(range(len(items)), key=lambda i: -round(area_xyxy(box_of(items[i])), 12))
    cut = max_objects is not None and len(order) > max_objects
    if cut:
        order = order[:max_objects]
    if not reorder:
        order.sort()
    return [items[i] for i in order], cut


DEFAULT_MAX_PERSONS = 8
"""Persons with keypoints a layout may ground (the released keypoint model has 8 person slots)."""


def limit_persons(layouts: Sequence[Any], max_persons: int | None, where: str) -> list[Any]:
    """Layouts with at most ``max_persons`` persons carrying keypoints (rule in the module docstring)."""
    from dataclasses import replace

    if max_persons is not None and (isinstance(max_persons, bool) or not isinstance(max_persons, int) or max_persons < 1):
        raise ConfigError(f"max_persons must be a positive integer, got {max_persons!r}")
    out, changed = [], 0
    for lay in layouts:
        persons = [i for i, o in enumerate(lay.objects) if o.keypoints is not None]
        if max_persons is None or len(persons) <= max_persons:
            out.append(lay)
            continue
        kept, _ = keep_largest(persons, lambda i: lay.objects[i].box, max_persons)
        keep = set(kept)
        only_persons = len(persons) == len(lay.objects)
        if only_persons:  # the extra persons go
            out.append(lay.keep_objects(i for i in range(len(lay.objects)) if i in keep))
        else:  # the extra persons stay as plain boxes
            objects = [o if o.keypoints is None or i in keep else replace(o, keypoints=None) for i, o in enumerate(lay.objects)]
            out.append(replace(lay, objects=tuple(objects)))
        changed += 1
    if changed:
        warn(f"{where}: {count_note(changed, 'layout')} had more than {max_persons} persons with keypoints; kept the "
             f"keypoints of the {max_persons} largest (other persons: dropped from keypoint layouts, kept as boxes "
             "elsewhere)")
    return out


def subsample_rank(seed: int, layout_id: str) -> str:
    return stable_hash([int(seed), str(layout_id)], length=32)


def subsample_ids(ids: Sequence[str], limit: int | None, seed: int) -> set[str]:
    """The ``limit`` ids with the lowest ``sha256([seed, id])`` rank (all ids when ``limit`` is None)."""
    if limit is None or limit >= len(ids):
        return set(ids)
    return set(sorted(ids, key=lambda i: subsample_rank(seed, i))[:limit])


def subsample(layouts: Sequence[T], limit: int | None, seed: int, id_of: Callable[[T], str] = lambda x: x.layout_id) -> list[T]:
    """Keep the deterministic subsample of :func:`subsample_ids`, in the input order."""
    keep = subsample_ids([id_of(x) for x in layouts], limit, seed)
    return [x for x in layouts if id_of(x) in keep]


def caption_from_phrases(phrases: Sequence[str]) -> str:
    """Caption for layouts that come without one: each distinct phrase once, in order of first
    appearance (the boxes carry the counts).

    >>> caption_from_phrases(["dog", "person", "car", "car"])
    'a photo of dog, person and car'
    """
    seen: dict[str, None] = {}
    for p in phrases:
        p = " ".join(p.split())
        if p:
            seen.setdefault(p, None)
    parts = list(seen)
    if not parts:
        return ""
    if len(parts) == 1:
        return f"a photo of {parts[0]}"
    return "a photo of " + ", ".join(parts[:-1]) + " and " + parts[-1]


def count_note(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"
