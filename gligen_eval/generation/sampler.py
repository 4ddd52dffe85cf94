"""The batched grounded sampler.

One denoising loop for a batch of *different* layouts, on diffusers building blocks (a gated
``UNet2DConditionModel`` and its ``position_net``, a VAE, a CLIP text encoder, a scheduler):

* every sample starts from its own noise, drawn on the CPU from ``torch.Generator().manual_seed(seed)``
  with the latent shape of one sample, so an image depends on its layout, seed and settings,
  not on the batch it ran in nor on the device;
* classifier-free guidance runs the unconditional and the conditional halves in one UNet call per
  step (``[uncond; cond]``); the unconditional half has the negative prompt and the null grounding
  (all object masks zero);
* the grounding scale of step ``i`` comes from the α (official) or β (diffusers hard cut)
  schedule (:mod:`~gligen_eval.generation.schedule`); at scale 0 the position net and the gated
  layers are not run at all;
* :meth:`GroundedSampler.generate_branches` runs several grounding schedules (a τ sweep) as a tree:
  the steps their per-step scale lists share run once, and each branch continues from its own copy
  of the latents, scheduler state and generators, so every branch equals its own run exactly;
* every UNet evaluation is :func:`~gligen_eval.generation.unet_forward.grounded_forward`, the code
  the reference forward of the tests runs too; for spatial models a scale-0 step swaps in the base
  model's 4-channel first conv and drops the map channels (the official α = 0 path), while the
  unconditional half always gets the same map as the conditional one;
* the grounding tokens come from a :class:`~gligen_eval.generation.grounding.GroundingTokenizer`
  (by default the one that fits the UNet: text+box, text+image+box, keypoint, inpainting or a
  spatial map), so
  modalities plug in without touching the loop; a modality may add UNet input channels, fix the
  grounding scale, and change the latents before each step and after the last one (inpainting).

With batch 1 and the same components, the output equals diffusers' deprecated pipelines
(``output_type="np"``) to float rounding: ``StableDiffusionGLIGENPipeline`` with the β schedule
(text+box, and its inpainting path at β = 1), ``StableDiffusionGLIGENTextImagePipeline`` at β = 1
(that pipeline keeps grounding on at every step whatever its β argument says).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from gligen_eval.devices import resolve_device

from gligen_eval.config import SamplerConfig
from gligen_eval.generation.grounding import (
    GroundingContext,
    GroundingTokenizer,
    default_grounding,
    get_grounding,
    install_scaled_fusers,
    scaled_fusers,
)
from gligen_eval.generation.loading import place
from gligen_eval.generation.schedule import grounding_schedule
from gligen_eval.generation.unet_forward import grounded_forward
from gligen_eval.records import Layout

SCHEDULERS = {
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),
    "ddim": ("DDIMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "dpm": ("DPMSolverMultistepScheduler", {}),
}
"""``SamplerConfig.scheduler`` name -> diffusers scheduler class and config overrides."""


def make_scheduler(name: str, base: Any):
    """A fresh scheduler of kind ``name`` built from the configuration of ``base`` (a scheduler or its config)."""
    import diffusers

    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r} (known: {', '.join(SCHEDULERS)})")
    cls_name, overrides = SCHEDULERS[name]
    config = getattr(base, "config", base)
    return getattr(diffusers, cls_name).from_config(config, **overrides)


class GroundedSampler:
    """Generates images for batches of layouts.

    ``components``: ``unet`` (gated), ``vae``, ``text_encoder``, ``tokenizer``, ``scheduler``
    (e.g. from :func:`~gligen_eval.generation.loading.load_components` or
    :func:`~gligen_eval.generation.tiny.tiny_components`), plus ``image_encoder``, ``processor``
    and ``image_project`` for text+image grounding. The UNet's gated layers are replaced
    by their scaled form (same parameters, same state dict). ``grounding``: the modality's
    tokenizer (or its registered name); by default the one that fits the UNet
    (:func:`~gligen_eval.generation.grounding.default_grounding`).
    """

    MODEL_PARTS = ("unet", "vae", "text_encoder", "image_encoder", "image_project")
    """Components that are torch modules, placed on the sampler's device and dtype."""

    def __init__(
        self,
        components: Mapping[str, Any],
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        grounding: GroundingTokenizer | str | None = None,
    ):
        missing = [k for k in ("unet", "vae", "text_encoder", "tokenizer", "scheduler") if k not in components]
        if missing:
            raise ValueError(f"components are missing: {', '.join(missing)}")
        self.device = torch.device(resolve_device(device))
        self.dtype = dtype
        self.components = components  # kept as given (a loading.Components keeps its sources)
        placed = {
            key: place(components[key], self.device, dtype)
            for key in self.MODEL_PARTS
            if components.get(key) is not None
        }
        if any(placed[k] is not components[k] for k in placed):
            self.components = {**components, **placed}
        self.unet = self.components["unet"]
        self.vae = self.components["vae"]
        self.text_encoder = self.components["text_encoder"]
        self.tokenizer = self.components["tokenizer"]
        self.scheduler_config = self.components["scheduler"].config
        if isinstance(grounding, str):
            grounding = get_grounding(grounding)
        self.grounding = grounding if grounding is not None else default_grounding(self.components)
        self.grounding.check(self.components)
        self.num_fusers = install_scaled_fusers(self.unet)
        self._fusers = scaled_fusers(self.unet)
        self._base_conv = self._first_conv_at_zero()
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)

    # ---------------------------------------------------------------------------------------
    # public API

    def generate(
        self,
        layouts: Sequence[Layout],
        seeds: Sequence[int],
        settings: SamplerConfig,
        *,
        progress: bool = True,
    ) -> list:
        """One PIL image per (layout, seed) pair, in order."""
        from PIL import Image

        arrays = self.generate_arrays(layouts, seeds, settings, progress=progress)
        return [Image.fromarray(a) for a in to_uint8(arrays)]

    def generate_arrays(
        self,
        layouts: Sequence[Layout],
        seeds: Sequence[int],
        settings: SamplerConfig,
        *,
        progress: bool = False,
    ) -> np.ndarray:
        """Float32 images in [0, 1], shape (N, H, W, 3), for the (layout, seed) pairs."""
        return self.generate_tensors(layouts, seeds, settings, progress=progress).permute(0, 2, 3, 1).numpy()

    @torch.no_grad()
    def generate_tensors(
        self,
        layouts: Sequence[Layout],
        seeds: Sequence[int],
        settings: SamplerConfig,
        *,
        progress: bool = False,
    ) -> torch.Tensor:
        """Float32 CPU images in [0, 1], shape (N, 3, H, W); batches of ``settings.batch_size``."""
        return self._generate(layouts, seeds, settings, progress=progress, output="image")

    @torch.no_grad()
    def generate_latents(
        self,
        layouts: Sequence[Layout],
        seeds: Sequence[int],
        settings: SamplerConfig,
        *,
        progress: bool = False,
    ) -> torch.Tensor:
        """The final latents (before the VAE decoder), shape (N, 4, H / f, W / f), on the CPU in the sampler's dtype."""
        return self._generate(layouts, seeds, settings, progress=progress, output="latent")

    @torch.no_grad()
    def generate_branches(
        self,
        layouts: Sequence[Layout],
        seeds: Sequence[int],
        settings_per_branch: Sequence[SamplerConfig],
        *,
        progress: bool = False,
        output: str = "image",
    ) -> list[torch.Tensor]:
        """What :meth:`generate_tensors` returns for each of ``settings_per_branch``, sharing the work.

        The settings may differ only in their grounding schedule (``schedule``, ``alpha``, ``beta``:
        a τ sweep). Branches run the same denoising steps once for as long as their per-step scale lists
        are equal, and split at the first step where they differ, each continuing from its own copy of the
        latents, scheduler state and generators. So every branch equals its own run exactly (same batches,
        same operations in the same order), for hard cuts and decay segments alike. ``output="latent"``:
        the final latents instead (see :meth:`generate_latents`).
        """
        branches = list(settings_per_branch)
        if not branches:
            return []
        shared = {_without_schedule(b) for b in branches}
        if len(shared) != 1:
            raise ValueError("branches may differ only in schedule, alpha and beta")
        return self._generate(layouts, seeds, branches, progress=progress, output=output)

    def _generate(self, layouts, seeds, branches, *, progress: bool, output: str):
        """One tensor per branch for a list of settings, or one tensor for a single SamplerConfig."""
        single = isinstance(branches, SamplerConfig)
        branches = [branches] if single else list(branches)
        settings = branches[0]
        layouts = list(layouts)
        seeds = [int(s) for s in seeds]
        if len(layouts) != len(seeds):
            raise ValueError(f"got {len(layouts)} layouts but {len(seeds)} seeds; pass one seed per layout")
        if not layouts:
            if output == "latent":
                f = self.vae_scale_factor
                empty = torch.zeros(0, self.unet.config.out_channels, settings.height // f, settings.width // f)
            else:
                empty = torch.zeros(0, 3, settings.height, settings.width)
            return empty if single else [empty.clone() for _ in branches]
        self._check_settings(settings)
        cache: dict[Any, Any] = {}
        bs = max(1, int(settings.batch_size))
        n_batches = math.ceil(len(layouts) / bs)
        n = self._loop_length(settings)
        bar = _progress_bar(n_batches * tree_steps([self._scales(n, b) for b in branches]), progress)
        out = []
        try:
            for start in range(0, len(layouts), bs):
                out.append(
                    self._sample_batch(
                        layouts[start : start + bs], seeds[start : start + bs], branches, cache, bar, output
                    )
                )
        finally:
            if bar is not None:
                bar.close()
        per_branch = [torch.cat([batch[k] for batch in out]) for k in range(len(branches))]
        return per_branch[0] if single else per_branch

    def default_alpha(self) -> list[float]:
        """The official ``[p1, p2, p3]`` schedule of this sampler's modality (used when settings.alpha is None)."""
        from gligen_eval.generation.modalities import default_alpha

        return default_alpha(self.grounding.describe()["modality"])

    def _first_conv_at_zero(self):
        """A spatial model's base 4-channel first conv for the scale-0 steps (official α = 0 path), if known."""
        from gligen_eval.generation.modalities import MODALITIES
        from gligen_eval.generation.unet_forward import base_conv_in

        spec = MODALITIES.get(self.grounding.describe()["modality"])
        if spec is None or not spec.spatial:
            return None
        conv = base_conv_in(self.unet)
        if conv is None:
            import warnings

            warnings.warn(
                "this spatial UNet does not know its base model's 4-channel first conv (load it with model.base); "
                "scale-0 steps keep the trained first conv and the map channels",
                stacklevel=3,
            )
        return conv

    # ---------------------------------------------------------------------------------------
    # the loop

    def _set_scale(self, scale: float) -> None:
        for fuser in self._fusers:
            fuser.scale = scale

    def _check_settings(self, settings: SamplerConfig) -> None:
        if settings.height % self.vae_scale_factor or settings.width % self.vae_scale_factor:
            raise ValueError(
                f"height/width must be multiples of {self.vae_scale_factor}, got {settings.height}x{settings.width}"
            )
        if not 1 <= settings.max_objects <= 30:
            raise ValueError(f"max_objects must be in [1, 30], got {settings.max_objects}")
        if settings.steps < 1:
            raise ValueError(f"steps must be >= 1, got {settings.steps}")

    def _loop_length(self, settings: SamplerConfig) -> int:
        scheduler = make_scheduler(settings.scheduler, self.scheduler_config)
        scheduler.set_timesteps(settings.steps)
        return len(scheduler.timesteps)

    def _encode_prompts(self, prompts: Sequence[str], cache: dict) -> torch.Tensor:
        """``last_hidden_state`` of each prompt (padded to the tokenizer's maximum length), cached per call."""
        store = cache.setdefault("prompt_embeds", {})
        new = list(dict.fromkeys(p for p in prompts if p not in store))
        if new:
            ids = self.tokenizer(
                new,
                padding="max_length",
                max_length=self.tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids.to(self.device)
            attention_mask = None
            if getattr(self.text_encoder.config, "use_attention_mask", False):
                attention_mask = (ids != self.tokenizer.pad_token_id).long()
            hidden = self.text_encoder(ids, attention_mask=attention_mask)[0].to(self.dtype)
            for p, h in zip(new, hidden):
                store[p] = h
        return torch.stack([store[p] for p in prompts])

    def _sample_batch(self, layouts, seeds, branches: list[SamplerConfig], cache: dict, bar, output: str) -> list:
        """One output tensor per branch (the same tensor for branches whose scales never differ)."""
        settings = branches[0]
        b = len(layouts)
        cfg = settings.guidance_scale > 1.0
        scheduler = make_scheduler(settings.scheduler, self.scheduler_config)
        scheduler.set_timesteps(settings.steps, device=self.device)
        timesteps = scheduler.timesteps

        # text conditioning: [uncond; cond]
        prompt_embeds = self._encode_prompts([layout.caption for layout in layouts], cache)
        if cfg:
            negative = self._encode_prompts([settings.negative_prompt] * b, cache)
            prompt_embeds = torch.cat([negative, prompt_embeds])

        # grounding
        latent_shape = (
            self.unet.config.out_channels,
            settings.height // self.vae_scale_factor,
            settings.width // self.vae_scale_factor,
        )
        # one generator per sample: the grounding's random draws (if any), then the initial noise,
        # then the draws of the step hooks and of stochastic scheduler steps
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        ctx = GroundingContext(
            components=self.components,
            device=self.device,
            dtype=self.dtype,
            max_objects=settings.max_objects,
            latent_shape=latent_shape,
            cache=cache,
            image_size=(settings.height, settings.width),
            seeds=list(seeds),
            generators=generators,
            scheduler=scheduler,
        )
        grounding = self.grounding.prepare(layouts, ctx)
        if cfg:
            gligen = {k: torch.cat([grounding.uncond[k], grounding.cond[k]]) for k in grounding.cond}
        else:
            gligen = dict(grounding.cond)
        extra = grounding.extra_channels
        if extra is not None and cfg:
            extra = torch.cat([extra, extra])
        if grounding.fixed_scale is not None:
            branch_scales = [[float(grounding.fixed_scale)] * len(timesteps) for _ in branches]
        else:
            branch_scales = [self._scales(len(timesteps), s) for s in branches]

        latents = torch.cat(
            [torch.randn((1, *latent_shape), generator=g, dtype=self.dtype) for g in generators]
        ).to(self.device)
        latents = latents * scheduler.init_noise_sigma
        step_kwargs = _step_kwargs(scheduler, generators)

        def step(i: int, latents: torch.Tensor, scale: float) -> torch.Tensor:
            t = timesteps[i]
            if grounding.step_hook is not None:
                latents = grounding.step_hook(latents, t, i)
            model_input = torch.cat([latents, latents]) if cfg else latents
            model_input = scheduler.scale_model_input(model_input, t)
            noise_pred = grounded_forward(
                self.unet, model_input, t, prompt_embeds, gligen=gligen, scale=scale, extra=extra,
                base_conv=self._base_conv, fusers=self._fusers,
            )  # fmt: skip
            if cfg:
                uncond, cond = noise_pred.chunk(2)
                noise_pred = uncond + settings.guidance_scale * (cond - uncond)
            latents = scheduler.step(noise_pred, t, latents, **step_kwargs).prev_sample
            if bar is not None:
                bar.update(1)
            return latents

        def finish(latents: torch.Tensor) -> torch.Tensor:
            if grounding.final_hook is not None:
                latents = grounding.final_hook(latents)
            if output == "latent":
                return latents.cpu()
            image = self.vae.decode(latents / self.vae.config.scaling_factor).sample
            return (image * 0.5 + 0.5).clamp(0, 1).float().cpu()

        results: list[Any] = [None] * len(branches)

        def descend(ids: list[int], i: int, latents: torch.Tensor) -> None:
            # the branches in ``ids`` agree on every scale before step i: run their common steps once
            while i < len(timesteps) and len({branch_scales[k][i] for k in ids}) == 1:
                latents = step(i, latents, branch_scales[ids[0]][i])
                i += 1
            if i == len(timesteps):
                out = finish(latents)
                for k in ids:
                    results[k] = out
                return
            # the first step where their scales differ: each group continues from its own copy of the
            # latents, the scheduler's state (PNDM and DPM-Solver keep a history) and the generators
            snapshot = (latents.clone(), copy.deepcopy(scheduler.__dict__), [g.get_state() for g in generators])
            groups: dict[float, list[int]] = {}
            for k in ids:
                groups.setdefault(branch_scales[k][i], []).append(k)
            for group in groups.values():
                scheduler.__dict__.clear()
                scheduler.__dict__.update(copy.deepcopy(snapshot[1]))
                for g, state in zip(generators, snapshot[2]):
                    g.set_state(state)
                descend(group, i, snapshot[0].clone())

        try:
            descend(list(range(len(branches))), 0, latents)
        finally:
            self._set_scale(1.0)
        return results

    def _scales(self, num_steps: int, settings: SamplerConfig) -> list[float]:
        alpha = settings.alpha if settings.alpha is not None else self.default_alpha()
        return grounding_schedule(num_steps, settings.schedule, alpha=alpha, beta=settings.beta)


def tree_steps(scale_lists: Sequence[Sequence[float]]) -> int:
    """Denoising steps (UNet evaluations per batch) that branches with these per-step scales need together:
    the number of distinct prefixes ``scales[: i + 1]``."""
    return len({tuple(scales[: i + 1]) for scales in scale_lists for i in range(len(scales))})


def _without_schedule(settings: SamplerConfig) -> tuple:
    """The settings that branches must share (all but the grounding schedule)."""
    return tuple(sorted((k, repr(v)) for k, v in dataclasses.asdict(settings).items()
                        if k not in ("schedule", "alpha", "beta")))  # fmt: skip


def _step_kwargs(scheduler, generators) -> dict[str, Any]:
    params = inspect.signature(scheduler.step).parameters
    kwargs: dict[str, Any] = {}
    if "eta" in params:
        kwargs["eta"] = 0.0
    if "generator" in params:
        kwargs["generator"] = generators[0] if len(generators) == 1 else generators
    return kwargs


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="generate", unit="step", leave=False)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[0, 1] floats → uint8, rounding like diffusers' ``numpy_to_pil``."""
    return (images * 255).round().astype(np.uint8)
