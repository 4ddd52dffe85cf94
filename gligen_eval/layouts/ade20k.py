"""ADE20K-style scene parsing data as sem layouts: images + annotation PNGs + captions.

The folder is laid out as ADEChallengeData2016::

    ROOT/images/<split>/ADE_val_00000001.jpg
    ROOT/annotations/<split>/ADE_val_00000001.png      one-channel labels, 0 other, 1..150

(``split`` defaults to ``validation``; without split folders, ``images/`` and ``annotations/`` are
read directly). Each image with an annotation of the same stem becomes a layout: id = the stem,
``image_path`` the photo, ``condition_map`` the annotation, no boxes. ``captions`` is a JSON
``{stem: caption}``, a JSON list or JSON Lines of ``{"id", "caption"}`` rows; an image without a
caption gets one from the classes that cover most of its annotation (one warning per source).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from gligen_eval.errors import InputError
from gligen_eval.layouts.common import caption_from_phrases, check_selection_options, count_note, read_json, subsample, warn
from gligen_eval.records import Layout

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def is_ade20k_root(path: Path) -> bool:
    return (path / "images").is_dir() and (path / "annotations").is_dir()


def _split_dirs(root: Path, split: str) -> tuple[Path, Path]:
    if not is_ade20k_root(root):
        raise InputError("not an ADE20K-style folder (expected images/ and annotations/ inside)", path=str(root))
    images, annotations = root / "images" / split, root / "annotations" / split
    if images.is_dir() and annotations.is_dir():
        return images, annotations
    if (root / "images" / split).exists() or (root / "annotations" / split).exists():
        raise InputError(f"split {split!r} needs both images/{split} and annotations/{split}", path=str(root))
    return root / "images", root / "annotations"


def read_caption_table(path: str | os.PathLike) -> dict[str, str]:
    """``{id: caption}`` from a JSON object, a JSON list of rows or JSON Lines rows (``id``/``image``, ``caption``)."""
    p = Path(path)
    if p.suffix == ".jsonl":
        if not p.is_file():
            raise InputError("captions file not found", path=str(p))
        rows = []
        for lineno, raw in enumerate(p.read_bytes().splitlines(), start=1):
            if raw.strip():
                try:
                    rows.append(json.loads(raw))
                except ValueError as e:
                    raise InputError(f"malformed JSON ({e})", path=str(p), record=f"line {lineno}") from None
        data: object = rows
    else:
        data = read_json(p, "captions file")
    if isinstance(data, dict):
        items = list(data.items())
    elif isinstance(data, list):
        items = []
        for i, row in enumerate(data):
            key = row.get("id", row.get("image")) if isinstance(row, dict) else None
            if key is None or not isinstance(row.get("caption"), str):
                raise InputError("each caption row needs 'id' (or 'image') and 'caption'", path=str(p), record=f"row {i + 1}")
            items.append((Path(str(key)).stem, row["caption"]))
    else:
        raise InputError("captions must be a JSON object {id: caption} or a list of {id, caption} rows", path=str(p))
    out = {}
    for key, caption in items:
        if not isinstance(caption, str):
            raise InputError(f"caption of {key!r} is not a string", path=str(p))
        out[str(key)] = caption
    return out


def caption_from_labels(annotation: Path, top: int = 5) -> str:
    """A caption naming the ``top`` ADE20K classes that cover most of the annotation (0 "other" left out)."""
    import numpy as np

    from gligen_eval.conditions.ade20k import ADE20K_CLASSES
    from gligen_eval.imageio import pil_open

    try:
        with pil_open(annotation) as img:
            labels = np.asarray(img.convert("L"))
    except Exception as e:
        raise InputError(f"cannot read annotation ({' '.join(str(e).split())})", path=str(annotation)) from None
    counts = np.bincount(labels.ravel(), minlength=256)[1 : len(ADE20K_CLASSES) + 1]
    order = [int(i) for i in np.argsort(-counts, kind="stable") if counts[i] > 0][:top]
    return caption_from_phrases([ADE20K_CLASSES[i] for i in order]) or "a photo"


def load_ade20k(
    path: str | os.PathLike,
    *,
    captions_path: str | os.PathLike | None = None,
    split: str = "validation",
    limit: int | None = None,
    seed: int = 0,
) -> list[Layout]:
    """Sem layouts from an ADE20K-style folder (module docstring)."""
    check_selection_options(None, 0.0, limit, seed)
    root = Path(path)
    images_dir, ann_dir = _split_dirs(root, split)
    annotations = {p.stem: p for p in ann_dir.glob("*.png") if p.is_file()}
    images = {p.stem: p for p in sorted(images_dir.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()}
    ids = sorted(set(images) & set(annotations))
    if not ids:
        raise InputError(f"no image in {images_dir} has an annotation of the same name in {ann_dir}", path=str(root))
    unpaired = len(set(images) ^ set(annotations))
    if unpaired:
        warn(f"{root}: skipped {count_note(unpaired, 'file')} without a partner (image or annotation)")
    captions = read_caption_table(captions_path) if captions_path is not None else {}
    keep = subsample([{"id": i} for i in ids], limit, seed, id_of=lambda r: r["id"])
    layouts, made_up = [], 0
    for row in keep:
        lid = row["id"]
        caption = captions.get(lid)
        if caption is None or not caption.strip():
            caption = caption_from_labels(annotations[lid])
            made_up += 1
        layouts.append(Layout(layout_id=lid, caption=caption, objects=(), image_path=str(images[lid]), source="ade20k",
                              condition_map=str(annotations[lid])))  # fmt: skip
    if made_up:
        warn(f"{root}: {count_note(made_up, 'image')} had no caption; used the names of their largest classes")
    return layouts
