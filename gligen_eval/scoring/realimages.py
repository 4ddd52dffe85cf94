"""The layouts' real images (``Layout.image_path``) as samples, for the real-image ceiling of a scorer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from gligen_eval.errors import InputError
from gligen_eval.hashing import file_sha256
from gligen_eval.imageio import pil_open
from gligen_eval.records import Layout, SampleRecord, stable_hash


@dataclass(frozen=True)
class RealImage:
    layout: Layout
    path: Path
    digest: str
    width: int
    height: int



def real_images(layouts: Iterable[Layout]) -> list[RealImage]:
    """The real image of each layout (``Layout.image_path``); an error names the layout without one."""
    from PIL import UnidentifiedImageError

    out = []
    for lay in layouts:
        p = real_image_path(lay)
        try:
            with pil_open(p) as im:
                w, h = im.size
        except (UnidentifiedImageError, OSError) as e:
            raise InputError(f"cannot read image ({e})", path=str(p), record=f"layout {lay.layout_id}") from None
        out.append(RealImage(lay, p.resolve(), file_sha256(p, length=24), int(w), int(h)))
    return out


def real_image_path(lay: Layout) -> Path:
    if not lay.image_path:
        raise InputError("layout has no real image; set layouts.images_dir to the folder of the layouts' images",
                         record=f"layout {lay.layout_id}")  # fmt: skip
    p = Path(lay.image_path)
    if not p.is_file():
        raise InputError("real image not found", path=str(p), record=f"layout {lay.layout_id}")
    return p


def real_samples(images: Sequence[RealImage], *, with_phrases: bool) -> list[SampleRecord]:
    """Sample records of real images (``image`` is the absolute path); the key is the file's content
    hash, plus the layout's phrases for detectors that are asked for phrases."""
    out = []
    for r in images:
        key_parts: list[Any] = [r.digest]
        if with_phrases:
            key_parts.append(sorted(set(r.layout.phrases)))
        key = "real-" + stable_hash(key_parts, length=20)
        out.append(SampleRecord(sample_key=key, layout_id=r.layout.layout_id, seed=0, image=str(r.path), width=r.width,
                                height=r.height, layout_hash=r.layout.content_hash(), settings_hash="real"))  # fmt: skip
    return out


# --------------------------------------------------------------------------------------------
# boxes
