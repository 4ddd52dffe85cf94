"""Inpainting masks and how well an inpainted image keeps the region outside its boxes.

Plain numpy (no torch), shared by the sampler (latent-resolution masks) and by scorers
(pixel-resolution masks).

**The mask rule** (:func:`box_mask`), the same as the official GLIGEN inference script and
diffusers' GLIGEN pipelines, at any resolution ``height x width``: the cells
``[int(y0 * height):int(y1 * height), int(x0 * width):int(x1 * width)]`` of every box are *inside*
(regenerated), all others are *outside* (kept). ``int`` truncates, so a box edge that falls
inside a cell rounds towards the top-left. (diffusers scales x by the height and y by the width;
the two agree on square images, the only ones its pipelines inpaint.)

**What is preserved, and how exactly.** The sampler draws the mask at latent resolution
(1 latent cell = ``vae_scale_factor`` pixels, 8 for SD). At every step, before the UNet runs, the
outside cells of the latents are replaced by the input image's latent noised to that step; with
``paste_known=True`` they are also replaced by the clean input latent after the last step. Hence:

* exact (bit for bit), in latent space: the outside cells of the latents entering each UNet
  evaluation equal ``scheduler.add_noise(z0, noise, t)``; with ``paste_known`` the outside cells of
  the final latents equal ``z0``, the VAE encoding of the input image, at any grounding scale;
* only close, in pixel space: the VAE decoder mixes neighbouring cells and cannot reproduce the
  input exactly, so :func:`outside_psnr` of the output against the input image is bounded by the
  VAE's own reconstruction PSNR (about 25-30 dB for the SD VAE on photos, much less for a tiny
  random VAE) and is lower next to the boxes. Its ``margin`` leaves out a band around each box
  (use at least ``vae_scale_factor`` pixels to skip the cells that straddle a box edge).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

Boxes = Sequence[Sequence[float]]


def box_mask(boxes: Boxes, height: int, width: int, *, margin: int = 0):
    """Boolean ``(height, width)`` array, True *inside* any box (the regenerated region).

    ``margin`` grows every box by that many cells on each side (clipped to the image).
    """
    import numpy as np

    inside = np.zeros((int(height), int(width)), dtype=bool)
    for box in boxes:
        x0, y0, x1, y1 = (float(v) for v in box)
        r0, r1 = int(y0 * height), int(y1 * height)
        c0, c1 = int(x0 * width), int(x1 * width)
        if r1 <= r0 or c1 <= c0:
            continue  # an empty box (e.g. the out-of-image location of a style image) masks nothing
        inside[max(0, r0 - margin) : min(height, r1 + margin), max(0, c0 - margin) : min(width, c1 + margin)] = True
    return inside


def known_mask(boxes: Boxes, height: int, width: int):
    """Float32 ``(height, width)``: 1 where the input is kept, 0 inside the boxes (GLIGEN's inpainting mask)."""
    return (~box_mask(boxes, height, width)).astype("float32")


def as_float_image(image: Any):
    """A PIL image or an ``(H, W, 3)`` array (uint8, or float in [0, 1]) as float64 in [0, 1]."""
    import numpy as np

    if hasattr(image, "convert") and hasattr(image, "size"):
        arr = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    else:
        arr = np.asarray(image)
        arr = arr.astype(np.float64) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float64)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {arr.shape}")
    return arr


def outside_psnr(image: Any, input_image: Any, boxes: Boxes, *, margin: int = 0) -> float:
    """PSNR (dB, peak 1.0) of ``image`` vs ``input_image`` over the pixels outside ``boxes``.

    ``image`` and ``input_image``: PIL images or ``(H, W, 3)`` arrays of the same size (uint8, or
    floats in [0, 1]); pass the input image as the sampler saw it (fitted to the output size, see
    :func:`~gligen_eval.generation.modalities.images.input_image_for`). ``boxes``: normalized xyxy.
    ``margin``: pixels left out around every box. Returns ``inf`` when the region is identical and
    ``nan`` when no pixel lies outside the boxes.
    """
    import numpy as np

    a, b = as_float_image(image), as_float_image(input_image)
    if a.shape != b.shape:
        raise ValueError(f"image {a.shape[:2]} and input image {b.shape[:2]} differ in size")
    outside = ~box_mask(boxes, a.shape[0], a.shape[1], margin=margin)
    if not outside.any():
        return math.nan
    mse = float(np.mean((a[outside] - b[outside]) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)
