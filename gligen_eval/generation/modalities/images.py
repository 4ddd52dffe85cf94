"""Images that grounding reads: input images (inpainting) and reference images (image grounding).

Plain PIL/numpy (no torch), so scorers can rebuild exactly the image a sample was generated from.

Input images for inpainting (``input_images=``):

* ``"layout"``: the layout's own image, ``Layout.image_path`` (set by ``layouts.images_dir``);
* ``"synthetic"``: :func:`synthetic_scene`, a procedurally drawn background keyed by the layout id.
  It is the offline source for smoke runs (the bundled sample has no photos): the same layout id
  and size always give the same pixels, on every machine.

Both are brought to the output size by :func:`fit_image` (center crop to a square, then a
Lanczos resize; diffusers' GLIGEN pipelines do the same; the official script stretches instead).

Reference images for image grounding (``reference_images=``), for objects *without* a
``GroundedObject.reference_image``:

* ``"given"``: none; such an object grounds with its phrase only (its image token is the null token);
* ``"crop"``: the object's box cropped from the layout's image (``Layout.image_path``);
* ``"synthetic"``: :func:`synthetic_reference`, a drawn shape whose colours and form follow the phrase.

Objects that have a ``reference_image`` always use it (a path to an image file).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Sequence

from gligen_eval.errors import InputError
from gligen_eval.imageio import pil_open

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image as PILImage

    from gligen_eval.records import GroundedObject, Layout

InputImages = Literal["layout", "synthetic"]
ReferenceImages = Literal["given", "crop", "synthetic"]
INPUT_IMAGE_SOURCES = ("layout", "synthetic")
REFERENCE_IMAGE_SOURCES = ("given", "crop", "synthetic")


def _rng(key: str):
    import numpy as np

    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _color(rng, lo: int = 0, hi: int = 256) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(lo, hi, size=3))  # type: ignore[return-value]


def synthetic_scene(key: str, width: int, height: int) -> "PILImage.Image":
    """A deterministic outdoor-like background for ``key`` (e.g. a layout id), ``width`` x ``height`` RGB.

    Sky gradient above a horizon, ground below, a sun and a few hills/blocks; everything drawn
    with integer coordinates from a generator seeded by ``sha256(key)``.
    """
    import numpy as np
    from PIL import Image, ImageDraw

    rng = _rng("scene:" + key)
    horizon = int(height * rng.uniform(0.35, 0.65))
    top, bottom = np.array(_color(rng, 60, 200), float), np.array(_color(rng, 150, 256), float)
    t = np.linspace(0.0, 1.0, max(horizon, 1))[:, None]
    sky = (top * (1 - t) + bottom * t).round().astype(np.uint8)
    pixels = np.empty((height, width, 3), np.uint8)
    pixels[:horizon] = sky[:, None, :]
    pixels[horizon:] = np.array(_color(rng, 20, 160), np.uint8)
    img = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(img)
    r = int(min(width, height) * rng.uniform(0.06, 0.12))
    cx, cy = int(rng.integers(r, max(r + 1, width - r))), int(rng.integers(0, max(1, horizon - r)))
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_color(rng, 180, 256))
    for _ in range(int(rng.integers(2, 5))):
        w = int(width * rng.uniform(0.15, 0.45))
        h = int(height * rng.uniform(0.08, 0.3))
        x = int(rng.integers(-w // 2, width))
        if rng.random() < 0.5:
            draw.polygon([(x, horizon), (x + w // 2, horizon - h), (x + w, horizon)], fill=_color(rng, 30, 200))
        else:
            y = int(rng.integers(horizon, max(horizon + 1, height)))
            draw.rectangle((x, y - h, x + w, y), fill=_color(rng, 30, 230))
    return img


def synthetic_reference(phrase: str, size: int = 64) -> "PILImage.Image":
    """A deterministic reference image for ``phrase``: a coloured shape on a plain background."""
    from PIL import Image, ImageDraw

    rng = _rng("reference:" + phrase)
    img = Image.new("RGB", (size, size), _color(rng, 0, 256))
    draw = ImageDraw.Draw(img)
    m = int(size * rng.uniform(0.1, 0.25))
    box = (m, m, size - 1 - m, size - 1 - m)
    shape = int(rng.integers(0, 3))
    fill = _color(rng, 0, 256)
    if shape == 0:
        draw.ellipse(box, fill=fill)
    elif shape == 1:
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([(size // 2, m), (size - 1 - m, size - 1 - m), (m, size - 1 - m)], fill=fill)
    stripe = _color(rng, 0, 256)
    for k in range(int(rng.integers(1, 4))):
        y = int(size * (0.3 + 0.2 * k))
        draw.line((0, y, size - 1, y), fill=stripe, width=max(1, size // 32))
    return img


def load_rgb(path: str | Path, *, layout_id: str | None = None, what: str = "image") -> "PILImage.Image":
    """An image file as RGB; an unreadable file is an :class:`InputError` naming the path and layout."""
    from PIL import UnidentifiedImageError

    p = Path(path).expanduser()
    try:
        with pil_open(p) as im:
            return im.convert("RGB")
    except FileNotFoundError as e:
        raise InputError(f"{what} not found", path=str(p), record=layout_id) from e
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f"{what} is not a readable image ({e})", path=str(p), record=layout_id) from e


def fit_image(image: "PILImage.Image", width: int, height: int) -> "PILImage.Image":
    """``image`` as RGB of exactly ``width`` x ``height``: center crop to the target aspect, Lanczos resize.

    An image that already has the size is returned unchanged (as RGB).
    """
    from PIL import Image

    image = image.convert("RGB")
    if image.size == (width, height):
        return image
    w, h = image.size
    target = width / height
    if w / h > target:  # too wide
        cw, ch = h * target, h
    else:
        cw, ch = w, w / target
    left, top = (w - cw) / 2, (h - ch) / 2
    image = image.crop((round(left), round(top), round(left + cw), round(top + ch)))
    return image.resize((width, height), Image.LANCZOS)


def input_image_for(
    layout: "Layout", width: int, height: int, *, source: InputImages = "layout"
) -> "PILImage.Image":
    """The inpainting input image of ``layout`` at the output size (see the module docstring)."""
    if source == "synthetic":
        return synthetic_scene(layout.layout_id, width, height)
    if source != "layout":
        raise InputError(f"unknown input image source {source!r} (use one of {', '.join(INPUT_IMAGE_SOURCES)})")
    if not layout.image_path:
        raise InputError(
            "inpainting needs an input image but the layout has no image_path; set layouts.images_dir "
            "to the layouts' images, or use input_images='synthetic' for a drawn background",
            record=layout.layout_id,
        )
    return fit_image(load_rgb(layout.image_path, layout_id=layout.layout_id, what="input image"), width, height)


def crop_box(image: "PILImage.Image", box: Sequence[float]) -> "PILImage.Image":
    """The normalized xyxy ``box`` cut out of ``image`` (at least one pixel each way)."""
    w, h = image.size
    x0, y0 = int(box[0] * w), int(box[1] * h)
    x1, y1 = max(x0 + 1, int(round(box[2] * w))), max(y0 + 1, int(round(box[3] * h)))
    return image.crop((x0, y0, min(x1, w), min(y1, h)))


def reference_key(
    obj: "GroundedObject", layout: "Layout", *, source: ReferenceImages = "given"
) -> tuple[str, ...] | None:
    """What identifies the reference image of ``obj`` (a cache key), or None when it has none.

    The object's own ``reference_image`` wins; otherwise ``source`` decides (module docstring).
    """
    if obj.reference_image:
        return ("file", str(obj.reference_image))
    if source == "given":
        return None
    if source == "synthetic":
        return ("synthetic", obj.phrase)
    if source == "crop":
        if not layout.image_path:
            raise InputError(
                "reference_images='crop' needs the layout's image (image_path; set layouts.images_dir)",
                record=layout.layout_id,
            )
        return ("crop", str(layout.image_path), *(repr(float(v)) for v in obj.box))
    raise InputError(f"unknown reference image source {source!r} (use one of {', '.join(REFERENCE_IMAGE_SOURCES)})")


def reference_image(key: tuple[str, ...], *, layout_id: str | None = None) -> "PILImage.Image":
    """The image a :func:`reference_key` names."""
    kind = key[0]
    if kind == "file":
        return load_rgb(key[1], layout_id=layout_id, what="reference image")
    if kind == "synthetic":
        return synthetic_reference(key[1])
    if kind == "crop":
        image = load_rgb(key[1], layout_id=layout_id, what="layout image")
        return crop_box(image, [float(v) for v in key[2:]])
    raise ValueError(f"not a reference image key: {key!r}")
