"""LVIS layout source (v1 and v0.5 annotation files; both are COCO-format).

* phrase = the category's first synonym (its ``name`` when there are none) with underscores turned
  into spaces: ``"aerosol_can"`` → ``"aerosol can"``, ``"bat_(animal)"`` → ``"bat (animal)"``.
  ``strip_qualifier=True`` drops the parenthesized qualifier (``"bat"``), as GLIP's prompts do.
  ``category`` keeps the raw LVIS name and ``category_id`` the LVIS id, so scoring can map back;
* LVIS has no captions: every caption is built from the phrases
  (:func:`~gligen_eval.layouts.common.caption_from_phrases`);
* the image file is ``file_name`` (v0.5) or the last part of ``coco_url`` (v1, where the images are
  COCO 2017's), joined to ``images_dir`` when given;
* the selection rules and errors are those of :mod:`gligen_eval.layouts.coco` (LVIS has no crowd
  annotations). Layout ids are ``lvis-<image_id>``.

Each category's frequency group (``r`` rare, ``c`` common, ``f`` frequent; the basis of APr/APc/APf)
and each image's ``neg_category_ids`` and ``not_exhaustive_category_ids`` (which LVIS evaluation
needs) travel with the layouts: every object carries its category's ``frequency`` and every layout
its image's negative / not-exhaustive ids, so scoring never reopens the file. :func:`load_lvis_meta`
gives the same for the whole file.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from gligen_eval.errors import InputError
from gligen_eval.layouts.coco import CocoIndex, OnInvalid, build_layouts, index_coco
from gligen_eval.layouts.coco import _images_dir as images_dir_path
from gligen_eval.layouts.common import check_selection_options, read_json
from gligen_eval.records import Layout

Frequency = Literal["r", "c", "f"]
FREQUENCY_GROUPS: tuple[Frequency, ...] = ("r", "c", "f")

_QUALIFIER = re.compile(r"_?\([^)]*\)")


def lvis_phrase(name: str, synonyms: Any = None, *, strip_qualifier: bool = False) -> str:
    """The text phrase of an LVIS category (see the module docstring)."""
    base = synonyms[0] if isinstance(synonyms, (list, tuple)) and synonyms and isinstance(synonyms[0], str) else name
    if strip_qualifier:
        stripped = _QUALIFIER.sub("", base)
        base = stripped if stripped.strip("_ ") else base
    return " ".join(base.replace("_", " ").split())


@dataclass(frozen=True)
class LvisCategory:
    id: int
    name: str
    phrase: str
    frequency: Frequency
    synonyms: tuple[str, ...] = ()


@dataclass(frozen=True)
class LvisMeta:
    """What LVIS evaluation needs beyond the boxes."""

    categories: dict[int, LvisCategory]
    neg_category_ids: dict[str, tuple[int, ...]]
    """layout id → categories verified absent from the image."""
    not_exhaustive_category_ids: dict[str, tuple[int, ...]]
    """layout id → categories whose instances are not all annotated."""

    def frequency_groups(self) -> dict[str, list[int]]:
        """``{"r": [ids], "c": [ids], "f": [ids]}``."""
        groups: dict[str, list[int]] = {g: [] for g in FREQUENCY_GROUPS}
        for c in self.categories.values():
            groups[c.frequency].append(c.id)
        return groups


def _lvis_image_file(img: Mapping[str, Any]) -> str | None:
    if isinstance(img.get("file_name"), str) and img["file_name"]:
        return img["file_name"]
    url = img.get("coco_url")
    if isinstance(url, str) and url:
        return url.rstrip("/").rsplit("/", 1)[-1]
    return None


def _index_lvis(data: Any, path: str, *, tolerance_px: float, on_invalid: OnInvalid) -> CocoIndex:
    index = index_coco(data, path, what="LVIS annotation file", tolerance_px=tolerance_px, on_invalid=on_invalid,
                       image_file=_lvis_image_file)  # fmt: skip
    for cid, cat in index.categories.items():
        if cat.get("frequency") not in FREQUENCY_GROUPS:
            raise InputError(f"frequency must be one of 'r', 'c', 'f', got {cat.get('frequency')!r}; is this an LVIS file?",
                             path=path, record=f"category {cid}")  # fmt: skip
        syn = cat.get("synonyms")
        if syn is not None and not (isinstance(syn, list) and all(isinstance(s, str) for s in syn)):
            raise InputError(f"synonyms must be a list of strings, got {syn!r}", path=path, record=f"category {cid}")
    return index


def _categories(index: CocoIndex, strip_qualifier: bool) -> dict[int, LvisCategory]:
    return {
        cid: LvisCategory(cid, c["name"], lvis_phrase(c["name"], c.get("synonyms"), strip_qualifier=strip_qualifier),
                          c["frequency"], tuple(c.get("synonyms") or ()))
        for cid, c in index.categories.items()
    }  # fmt: skip


def load_lvis(
    path: str | os.PathLike,
    *,
    max_objects: int | None = 30,
    min_area: float = 0.0,
    limit: int | None = None,
    seed: int = 0,
    images_dir: str | os.PathLike | None = None,
    strip_qualifier: bool = False,
    tolerance_px: float = 1.0,
    on_invalid: OnInvalid = "error",
    id_prefix: str = "lvis",
) -> list[Layout]:
    """Text+box layouts from an LVIS v1 / v0.5 annotation file (rules in the module docstring)."""
    check_selection_options(max_objects, min_area, limit, seed)
    index = _index_lvis(read_json(path, "LVIS annotation file"), str(path), tolerance_px=tolerance_px, on_invalid=on_invalid)
    cats = _categories(index, strip_qualifier)
    layouts = build_layouts(
        index, phrase_of=lambda c: cats[c["id"]].phrase, id_prefix=id_prefix, source=id_prefix, captions=None,
        captions_path=None, max_objects=max_objects, min_area=min_area, skip_crowd=False, limit=limit, seed=seed,
        images_dir=images_dir_path(images_dir),
    )  # fmt: skip
    neg, nex = _image_category_ids(index, str(path), id_prefix)
    out = []
    for lay in layouts:
        objects = tuple(dataclasses.replace(o, frequency=cats[o.category_id].frequency) for o in lay.objects)  # type: ignore[index]
        out.append(dataclasses.replace(lay, objects=objects, neg_category_ids=neg.get(lay.layout_id, ()),
                                       not_exhaustive_category_ids=nex.get(lay.layout_id, ())))  # fmt: skip
    return out


def load_lvis_meta(path: str | os.PathLike, *, strip_qualifier: bool = False, id_prefix: str = "lvis") -> LvisMeta:
    """Categories with their frequency group, and each image's negative / not-exhaustive category ids."""
    p = str(path)
    index = _index_lvis(read_json(path, "LVIS annotation file"), p, tolerance_px=float("inf"), on_invalid="skip")
    neg, nex = _image_category_ids(index, p, id_prefix)
    return LvisMeta(_categories(index, strip_qualifier), neg, nex)


def _image_category_ids(index: CocoIndex, p: str, id_prefix: str) -> tuple[dict[str, tuple[int, ...]], ...]:
    """layout id -> ``neg_category_ids`` and layout id -> ``not_exhaustive_category_ids`` of every image."""
    neg: dict[str, tuple[int, ...]] = {}
    nex: dict[str, tuple[int, ...]] = {}
    for iid, img in index.images.items():
        for key, out in (("neg_category_ids", neg), ("not_exhaustive_category_ids", nex)):
            ids = img.raw.get(key, [])
            if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
                raise InputError(f"{key} must be a list of category ids, got {ids!r}", path=p, record=f"image {iid}")
            unknown = [i for i in ids if i not in index.categories]
            if unknown:
                raise InputError(f"{key} has unknown category id(s) {unknown[:5]}", path=p, record=f"image {iid}")
            out[f"{id_prefix}-{iid}"] = tuple(ids)
    return neg, nex
