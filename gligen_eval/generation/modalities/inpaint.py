"""Grounded inpainting: regenerate the inside of the boxes, keep the input image elsewhere.

An inpainting GLIGEN UNet takes 9 input channels: the 4 latent channels, the input image's latent
``z0`` times the *known mask* (4 channels), and the known mask (1 channel). The known mask is 1
outside every grounded box and 0 inside (:func:`~.preservation.known_mask`, drawn at latent
resolution). Per batch, for every sample:

1. the input image (``input_images``: the layout's image, a drawn background, or images given in
   code; :mod:`.images`) is fitted to the output size and encoded: ``z0 = vae.encode(x)`` (a posterior
   *sample* by default, as the official script and diffusers do, or its ``mean``), times the VAE
   scaling factor;
2. before every UNet evaluation the known region is replaced by ``z0`` noised to the current step
   (the official PLMS sampler and diffusers' pipelines)::

       latents = add_noise(z0, noise, t) * known + latents * (1 - known)

3. with ``paste_known=True`` the known region of the final latents is replaced by ``z0`` itself
   after the last step (neither the official script nor diffusers does this; it makes the
   preserved region exact in latent space, see :mod:`.preservation`).

Random numbers (the posterior sample, the noise of step 2) come from the sample's own generator,
in that order, right before and after the sampler's initial noise: a sample does not depend on its
batch, and at batch 1 the draws follow diffusers' ``StableDiffusionGLIGENPipeline`` (which draws
them from the global torch generator) one for one. The noise of step 2 fills a channel-last
tensor, as diffusers' ``randn_like`` of its (channel-last) input latent does; this changes which
normal numbers land where, not their distribution.

The grounding scale is forced to 1 at every step (``scale=``; the official inpainting setting).
The grounding tokens are those of the wrapped modality (text+box or text+image+box).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, Union

import torch

from gligen_eval.errors import InputError
from gligen_eval.generation.grounding import GroundingContext, GroundingInputs, GroundingTokenizer, get_grounding
from gligen_eval.generation.modalities.images import INPUT_IMAGE_SOURCES, fit_image, input_image_for, load_rgb
from gligen_eval.generation.modalities.preservation import known_mask

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image as PILImage

    from gligen_eval.records import Layout

InputImagesOption = Union[str, Mapping[str, Any], Callable[["Layout", int, int], "PILImage.Image"]]


def image_to_tensor(image: "PILImage.Image") -> torch.Tensor:
    """RGB PIL image -> ``(3, H, W)`` float32 in [-1, 1] (the VAE's input range)."""
    import numpy as np

    arr = np.asarray(image.convert("RGB")).astype(np.float32) / 255.0
    return 2.0 * torch.from_numpy(arr).permute(2, 0, 1) - 1.0


class InpaintTokenizer(GroundingTokenizer):
    """Grounded inpainting around the grounding tokens of ``inner_modality`` (module docstring).

    Options:

    * ``input_images``: ``"layout"`` (``Layout.image_path``), ``"synthetic"`` (a drawn background per
      layout id), a mapping ``layout_id -> PIL image or path``, or a callable
      ``(layout, width, height) -> PIL image``;
    * ``paste_known``: paste ``z0`` into the known region after the last step (default False);
    * ``vae_latent``: ``"sample"`` (default) or ``"mean"`` of the VAE posterior;
    * ``scale``: the grounding scale at every step (default 1);
    * the wrapped modality's own options (e.g. ``reference_images``).
    """

    inner_modality = "text-box"
    in_channels = 9
    options = ("input_images", "paste_known", "vae_latent", "scale")

    def __init__(
        self,
        input_images: InputImagesOption = "layout",
        paste_known: bool = False,
        vae_latent: str = "sample",
        scale: float = 1.0,
        **inner_options: Any,
    ):
        if isinstance(input_images, str) and input_images not in INPUT_IMAGE_SOURCES:
            raise ValueError(
                f"input_images must be one of {', '.join(INPUT_IMAGE_SOURCES)}, a mapping or a callable, "
                f"got {input_images!r}"
            )
        if vae_latent not in ("sample", "mean"):
            raise ValueError(f"vae_latent must be 'sample' or 'mean', got {vae_latent!r}")
        if float(scale) < 0:
            raise ValueError(f"scale must be >= 0, got {scale}")
        self.input_images = input_images
        self.paste_known = bool(paste_known)
        self.vae_latent = vae_latent
        self.scale = float(scale)
        self.inner = get_grounding(self.inner_modality, **inner_options)
        self.inner.in_channels = 9
        self.modality = "inpaint-" + self.inner.modality
        self.position_net_type = self.inner.position_net_type

    def check(self, components: Mapping[str, Any]) -> None:
        self.inner.check(components)

    def describe(self) -> dict[str, Any]:
        inner = self.inner.describe()
        inner.pop("modality")
        own = {k: v for k, v in super().describe().items() if k == "modality" or k in InpaintTokenizer.options}
        return {**own, **inner}

    def grounded_boxes(self, layout: "Layout", max_objects: int) -> list:
        return self.inner.grounded_boxes(layout, max_objects)

    def input_image(self, layout: "Layout", width: int, height: int) -> "PILImage.Image":
        """The input image of ``layout`` as the sampler uses it (``width`` x ``height`` RGB)."""
        src = self.input_images
        if isinstance(src, str):
            return input_image_for(layout, width, height, source=src)  # type: ignore[arg-type]
        if callable(src):
            return fit_image(src(layout, width, height), width, height)
        if layout.layout_id not in src:
            raise InputError("no input image given for this layout", record=layout.layout_id)
        image = src[layout.layout_id]
        if not hasattr(image, "convert"):
            image = load_rgb(image, layout_id=layout.layout_id, what="input image")
        return fit_image(image, width, height)

    def prepare(self, layouts: Sequence["Layout"], ctx: GroundingContext) -> GroundingInputs:
        if ctx.image_size is None or ctx.scheduler is None:
            raise ValueError("inpainting needs the image size and the scheduler in the grounding context")
        gi = self.inner.prepare(layouts, ctx)
        height, width = ctx.image_size
        _, h, w = ctx.latent_shape
        vae = ctx.components["vae"]
        device = ctx.device
        generators = ctx.generators
        if generators is None or len(generators) != len(layouts):
            raise ValueError("inpainting needs one random generator per sample in the grounding context")

        store = ctx.cache.setdefault(("inpaint_input", width, height), {})
        for layout in layouts:
            if layout.layout_id not in store:
                store[layout.layout_id] = image_to_tensor(self.input_image(layout, width, height))
        pixels = torch.stack([store[layout.layout_id] for layout in layouts])
        with torch.no_grad():
            dist = vae.encode(pixels.to(device=vae.device, dtype=vae.dtype)).latent_dist
        z0 = dist.mean
        if self.vae_latent == "sample":
            shape = tuple(dist.mean.shape[1:])
            eps = torch.cat([torch.randn((1, *shape), generator=g, dtype=dist.mean.dtype) for g in generators])
            z0 = dist.mean + dist.std * eps.to(dist.mean.device)
        z0 = (vae.config.scaling_factor * z0).to(device=device, dtype=ctx.dtype)
        if tuple(z0.shape[2:]) != (h, w):
            raise ValueError(f"the VAE encodes {width}x{height} images to {tuple(z0.shape[2:])}, expected {(h, w)}")
        known = torch.stack(
            [torch.from_numpy(known_mask(self.inner.grounded_boxes(lay, ctx.max_objects), h, w)) for lay in layouts]
        )
        known = known.unsqueeze(1).to(device=device, dtype=ctx.dtype)
        scheduler = ctx.scheduler

        c = z0.shape[1]

        def draw(g: torch.Generator) -> torch.Tensor:
            # filled as a channel-last tensor, like diffusers' randn_like of its channel-last input latent
            out = torch.empty((1, c, h, w), dtype=z0.dtype).to(memory_format=torch.channels_last)
            return out.normal_(generator=g).contiguous()

        def replace_known(latents: torch.Tensor, t: Any, step: int) -> torch.Tensor:
            noise = torch.cat([draw(g) for g in generators])
            tt = t.reshape(1) if torch.is_tensor(t) else torch.tensor([t])
            noisy = scheduler.add_noise(z0, noise.to(device), tt)
            return noisy * known + latents * (1 - known)

        def paste(latents: torch.Tensor) -> torch.Tensor:
            return z0 * known + latents * (1 - known)

        gi.extra_channels = torch.cat([z0 * known, known], dim=1)
        gi.fixed_scale = self.scale
        gi.step_hook = replace_known
        gi.final_hook = paste if self.paste_known else None
        gi.extras.update(input_latents=z0, known_mask=known)
        return gi


class InpaintTextBoxTokenizer(InpaintTokenizer):
    """Grounded inpainting with text+box tokens (``gligen-inpainting-text-box``)."""

    modality = "inpaint-text-box"
    inner_modality = "text-box"


class InpaintTextImageBoxTokenizer(InpaintTokenizer):
    """Grounded inpainting with text+image+box tokens (``gligen-inpainting-text-image-box``)."""

    modality = "inpaint-text-image-box"
    inner_modality = "text-image-box"
    options = InpaintTokenizer.options + ("reference_images", "style_image", "normalize_constant")
