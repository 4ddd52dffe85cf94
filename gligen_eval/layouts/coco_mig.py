"""COCO-MIG-style layouts from COCO instance annotations: one colour per instance, levels L2-L6.

COCO-MIG (MIGC, Zhou et al. 2024) asks for several instances, each with its own colour, and
scores by how many instances come out with the right box and the right colour. Its layouts are
written here from any COCO ``instances_*.json`` (read by :func:`gligen_eval.layouts.coco.load_coco`,
so every problem names the file and the annotation):

* humans are excluded: ``person`` objects are dropped;
* the *level* of a layout is its number of instances; images with fewer than ``min(levels)`` are
  skipped, images with more than ``max(levels)`` keep their ``max(levels)`` largest boxes;
* each instance gets one colour from ``colors`` (COCO-MIG's seven: red, yellow, green, blue, white,
  black, brown), drawn by ``random.Random("coco-mig:<seed>:<layout id>")`` -- the same file and
  seed give the same colours on every machine, whatever the file order;
* phrase ``"a red dog"`` (category stays ``dog``, so detectors match by class), caption
  ``"a red dog, a blue car and a green chair"``, ``source`` ``coco-mig/L<level>``;
* ``limit``: at most that many layouts *per level* (COCO-MIG draws the same number at each level:
  160 in the paper's 800 prompts); a deterministic subsample by ``seed``. Layouts come out by level,
  then image id.
"""

from __future__ import annotations

import os
import random
from typing import Any, Sequence

from gligen_eval.errors import ConfigError
from gligen_eval.layouts.coco import OnInvalid, load_coco
from gligen_eval.layouts.common import subsample
from gligen_eval.records import GroundedObject, Layout


def coco_mig_colors() -> list[str]:
    """COCO-MIG's colour list (the colours its HSV check knows)."""
    return ["red", "yellow", "green", "blue", "white", "black", "brown"]


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def mig_caption(phrases: Sequence[str]) -> str:
    """``"a red dog, a blue car and a green chair"``."""
    if len(phrases) <= 1:
        return "".join(phrases)
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def load_coco_mig(
    instances_path: str | os.PathLike,
    *,
    levels: Sequence[int] = (2, 3, 4, 5, 6),
    limit: int | None = None,
    colors: Sequence[str] | None = None,
    min_area: float = 0.0,
    skip_crowd: bool = True,
    seed: int = 0,
    images_dir: str | os.PathLike | None = None,
    on_invalid: OnInvalid = "error",
    id_prefix: str = "mig",
) -> list[Layout]:
    """COCO-MIG-style layouts from a COCO instances file (rules in the module docstring)."""
    levels = sorted({int(k) for k in levels})
    if not levels or levels[0] < 1:
        raise ConfigError(f"levels must be positive instance counts, got {list(levels)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit (layouts per level) must be a positive integer or None, got {limit!r}")
    palette = list(colors) if colors is not None else coco_mig_colors()
    if not palette or not all(isinstance(c, str) and c.strip() for c in palette):
        raise ConfigError(f"colors must be a non-empty list of colour names, got {palette!r}")
    base = load_coco(instances_path, max_objects=None, min_area=min_area, skip_crowd=skip_crowd, seed=seed,
                     images_dir=images_dir, on_invalid=on_invalid, id_prefix=id_prefix)  # fmt: skip
    by_level: dict[int, list[Layout]] = {k: [] for k in levels}
    for lay in base:
        objs = [o for o in lay.objects if (o.category or o.phrase) != "person"][: levels[-1]]  # largest first
        if len(objs) not in by_level:
            continue
        by_level[len(objs)].append(_colored(lay, objs, palette, seed))
    out: list[Layout] = []
    for k in levels:
        out.extend(subsample(by_level[k], limit, seed))
    return out


def _colored(lay: Layout, objs: Sequence[GroundedObject], palette: Sequence[str], seed: int) -> Layout:
    rng = random.Random(f"coco-mig:{seed}:{lay.layout_id}")
    new: list[Any] = []
    for o in objs:
        color = rng.choice(list(palette))
        name = o.category or o.phrase
        new.append(GroundedObject(phrase=f"{_article(color)} {color} {name}", box=o.box, category=o.category,
                                  category_id=o.category_id, source_id=o.source_id))  # fmt: skip
    return Layout(layout_id=lay.layout_id, caption=mig_caption([o.phrase for o in new]), objects=tuple(new),
                  width=lay.width, height=lay.height, image_path=lay.image_path, source=f"coco-mig/L{len(new)}")  # fmt: skip
