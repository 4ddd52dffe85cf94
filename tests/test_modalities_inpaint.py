"""Grounded inpainting: parity with diffusers' pipelines, what is preserved exactly (latent space)
and what only approximately (pixels, measured as PSNR), input images, masks."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gligen_eval.config import SamplerConfig  # noqa: E402
from gligen_eval.errors import InputError  # noqa: E402
from gligen_eval.generation import grounding as G  # noqa: E402
from gligen_eval.generation.modalities.images import fit_image, input_image_for, synthetic_scene  # noqa: E402
from gligen_eval.generation.modalities.preservation import box_mask, known_mask, outside_psnr  # noqa: E402
from gligen_eval.generation.sampler import GroundedSampler, make_scheduler  # noqa: E402
from gligen_eval.generation.tiny import tiny_components  # noqa: E402
from gligen_eval.records import GroundedObject, Layout  # noqa: E402

SIZE = 32
DOG = Layout("beach", "a dog on a beach", (GroundedObject("a dog", (0.25, 0.3, 0.7, 0.8)),))
CATS = Layout("cats", "two cats", (GroundedObject("a cat", (0.0, 0.0, 0.4, 0.5)),
                                   GroundedObject("a cat", (0.6, 0.5, 1.0, 1.0))))


def settings(**kw) -> SamplerConfig:
    base = dict(steps=4, height=SIZE, width=SIZE, guidance_scale=7.5, schedule="beta", beta=1.0, batch_size=1)
    base.update(kw)
    return SamplerConfig(**base)


def components(modality="inpaint-text-box"):
    return tiny_components(seed=0, sample_size=SIZE, modality=modality)


def pipeline(cls_name, comps):
    import diffusers
    from diffusers.utils import logging as dlog

    dlog.set_verbosity_error()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = getattr(diffusers, cls_name)(**comps, safety_checker=None, feature_extractor=None,
                                            requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# --------------------------------------------------------------------------------------------
# parity: diffusers draws the VAE posterior sample and the known-region noise from the global
# generator, in the order ours draws them from the sample's generator


@pytest.mark.parametrize("modality, cls_name", [
    ("inpaint-text-box", "StableDiffusionGLIGENPipeline"),
    ("inpaint-text-image-box", "StableDiffusionGLIGENTextImagePipeline"),
])
def test_inpainting_parity_with_diffusers_pipeline(modality, cls_name):
    image = synthetic_scene("beach", SIZE, SIZE)  # the VAE's sample_size is the output size (32)
    tok = G.get_grounding(modality, input_images={"beach": image})
    ours = GroundedSampler(components(modality), grounding=tok).generate_arrays([DOG], [5], settings())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        ref = pipeline(cls_name, components(modality))(
            prompt=DOG.caption,
            gligen_phrases=DOG.phrases,
            gligen_boxes=[list(b) for b in DOG.boxes],
            gligen_inpaint_image=image,
            gligen_scheduled_sampling_beta=1.0,
            height=SIZE, width=SIZE, num_inference_steps=4, guidance_scale=7.5,
            generator=torch.Generator().manual_seed(123),  # only feeds latents the pipeline replaces
            output_type="np",
        ).images
    assert ours.shape == ref.shape == (1, SIZE, SIZE, 3)
    assert np.abs(ours - ref).max() <= 1e-5
    assert ref.std() > 0.01


# --------------------------------------------------------------------------------------------
# preservation


def _ctx(smp, seeds, scheduler):
    return G.GroundingContext(
        components=smp.components, device=smp.device, dtype=torch.float32, max_objects=30,
        latent_shape=(4, SIZE // 2, SIZE // 2), image_size=(SIZE, SIZE), seeds=list(seeds),
        generators=[torch.Generator().manual_seed(s) for s in seeds], scheduler=scheduler,
    )


def test_known_region_entering_each_step_is_the_noised_input_exactly():
    """Bit for bit: before every UNet call the outside cells are add_noise(z0, noise_i, t_i)."""
    comps = components()
    tok = G.get_grounding("inpaint-text-box", input_images="synthetic")
    smp = GroundedSampler(comps, grounding=tok)
    seeds = [1, 2]
    captured = []
    h = smp.unet.register_forward_pre_hook(lambda m, a: captured.append((a[0][:, :4].clone(), a[1])))
    try:
        smp.generate_arrays([DOG, CATS], seeds, settings(batch_size=2))
    finally:
        h.remove()
    # replay the draws: posterior sample (prepare), initial noise, then one channel-last draw per step
    scheduler = make_scheduler("pndm", smp.scheduler_config)
    scheduler.set_timesteps(4)
    ctx = _ctx(smp, seeds, scheduler)
    gi = tok.prepare([DOG, CATS], ctx)
    z0, known = gi.extras["input_latents"], gi.extras["known_mask"]
    for g in ctx.generators:
        torch.randn((1, 4, SIZE // 2, SIZE // 2), generator=g)
    assert len(captured) == len(scheduler.timesteps) == 5
    for (x, t), t_ref in zip(captured, scheduler.timesteps):
        noise = torch.cat([
            torch.empty((1, 4, SIZE // 2, SIZE // 2)).to(memory_format=torch.channels_last).normal_(generator=g)
            for g in ctx.generators
        ])
        expected = scheduler.add_noise(z0, noise.contiguous(), t_ref.reshape(1))
        cond = x[2:]  # [uncond; cond]: both halves get the same latents
        assert torch.equal(cond * known, expected * known)
        assert torch.equal(x[:2], cond)
        assert not torch.equal(cond * (1 - known), expected * (1 - known))  # the inside is generated


@pytest.mark.parametrize("scale", [0.0, 1.0])
def test_paste_known_preserves_the_outside_exactly_in_latent_space(scale):
    comps = components()
    seeds = [3, 4]
    lays = [DOG, CATS]
    pasted = G.get_grounding("inpaint-text-box", input_images="synthetic", paste_known=True, scale=scale)
    official = G.get_grounding("inpaint-text-box", input_images="synthetic", scale=scale)
    smp = GroundedSampler(comps, grounding=pasted)
    latents = smp.generate_latents(lays, seeds, settings(batch_size=2))
    scheduler = make_scheduler("pndm", smp.scheduler_config)
    gi = pasted.prepare(lays, _ctx(smp, seeds, scheduler))
    z0, known = gi.extras["input_latents"], gi.extras["known_mask"]
    assert known.sum() > 0 and (1 - known).sum() > 0
    assert torch.equal(latents * known, z0 * known)  # exact, whatever the grounding scale
    # without the final paste (the official and diffusers' semantics) the outside is only close
    plain = GroundedSampler(comps, grounding=official).generate_latents(lays, seeds, settings(batch_size=2))
    outside_err = ((plain - z0) * known).abs().max().item()
    assert 0 < outside_err < ((plain - z0) * (1 - known)).abs().max().item()
    assert torch.equal(plain * (1 - known), latents * (1 - known))  # the paste only touches the outside


def test_outside_psnr_is_measured_and_bounded_by_the_vae():
    """Pixels are only close: the decoder mixes cells (its mid-block attention is global)."""
    comps = components()
    tok = G.get_grounding("inpaint-text-box", input_images="synthetic", paste_known=True)
    smp = GroundedSampler(comps, grounding=tok)
    images = smp.generate_arrays([DOG, CATS], [1, 2], settings(batch_size=2))
    gi = tok.prepare([DOG, CATS], _ctx(smp, [1, 2], make_scheduler("pndm", smp.scheduler_config)))
    with torch.no_grad():
        decoded_input = comps["vae"].decode(gi.extras["input_latents"] / comps["vae"].config.scaling_factor).sample
    decoded_input = (decoded_input * 0.5 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    for i, lay in enumerate((DOG, CATS)):
        boxes = tok.grounded_boxes(lay, 30)
        given = input_image_for(lay, SIZE, SIZE, source="synthetic")
        vs_input = outside_psnr(images[i], given, boxes)
        vs_decoded = outside_psnr(images[i], decoded_input[i], boxes)
        whole_vs_decoded = outside_psnr(images[i], decoded_input[i], [])
        assert math.isfinite(vs_input) and math.isfinite(vs_decoded)
        # the output is closer to the decoded input latent than to the input image: the VAE bounds
        # what pixels can keep; and the outside is closer to it than the whole image is
        assert vs_decoded > vs_input
        assert vs_decoded > whole_vs_decoded


# --------------------------------------------------------------------------------------------
# masks, PSNR, input images


def test_box_mask_follows_diffusers_rule():
    from diffusers import StableDiffusionGLIGENPipeline

    boxes = [(0.25, 0.3, 0.7, 0.8), (0.0, 0.0, 0.4, 0.5), (0.33, 0.91, 0.34, 1.0)]
    for size in (16, 64):
        ref = StableDiffusionGLIGENPipeline.draw_inpaint_mask_from_boxes(None, boxes, (size, size)).numpy()
        assert np.array_equal(known_mask(boxes, size, size), ref)
    inside = box_mask([(0.25, 0.5, 0.5, 1.0)], 4, 8)
    assert inside.tolist() == [[False] * 8, [False] * 8, [False, False, True, True, False, False, False, False],
                               [False, False, True, True, False, False, False, False]]
    assert box_mask([(0.25, 0.5, 0.5, 1.0)], 4, 8, margin=1).sum() == 3 * 4
    assert not box_mask([(0.0, 1.0, 0.0, 1.0)], 8, 8).any()  # the out-of-image style location


def test_outside_psnr_values():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    assert outside_psnr(a, a, [(0.2, 0.2, 0.6, 0.6)]) == math.inf
    b = a.astype(np.float64) / 255
    c = b.copy()
    c[:8] += 0.1  # top half off by 0.1 -> MSE 0.01 -> 20 dB
    assert outside_psnr(c, b, [(0.0, 0.5, 1.0, 1.0)]) == pytest.approx(20.0)
    assert outside_psnr(c, b, [(0.0, 0.0, 1.0, 0.5)]) == math.inf  # the changed half is inside the box
    assert math.isnan(outside_psnr(c, b, [(0.0, 0.0, 1.0, 1.0)]))
    from PIL import Image

    assert outside_psnr(Image.fromarray(a), a, []) == math.inf
    with pytest.raises(ValueError, match="differ in size"):
        outside_psnr(a, a[:8], [])


def test_input_images(tmp_path):
    one = synthetic_scene("x", 48, 32)
    assert one.size == (48, 32) and np.array_equal(np.asarray(one), np.asarray(synthetic_scene("x", 48, 32)))
    assert not np.array_equal(np.asarray(one), np.asarray(synthetic_scene("y", 48, 32)))
    assert fit_image(one, 16, 16).size == (16, 16)
    photo = tmp_path / "photo.png"
    synthetic_scene("p", 60, 40).save(photo)
    lay = Layout("p", "x", (), image_path=str(photo))
    got = input_image_for(lay, 32, 32)
    assert got.size == (32, 32)
    assert np.array_equal(np.asarray(got), np.asarray(fit_image(synthetic_scene("p", 60, 40), 32, 32)))
    with pytest.raises(InputError, match=r"\[q\].*no image_path"):
        input_image_for(Layout("q", "x", ()), 32, 32)
    smp = GroundedSampler(components(), grounding=G.get_grounding("inpaint-text-box"))
    with pytest.raises(InputError, match=r"\[q\]"):
        smp.generate_arrays([Layout("q", "x", ())], [0], settings(steps=1))
    # a callable input source, and the layout's image used through image_path
    tok = G.get_grounding("inpaint-text-box", input_images=lambda layout, w, h: synthetic_scene("p", 60, 40))
    a = GroundedSampler(components(), grounding=tok).generate_arrays([lay], [0], settings(steps=2))
    b = GroundedSampler(components()).generate_arrays([lay], [0], settings(steps=2))
    assert np.array_equal(a, b)
    assert tok.describe() == {"modality": "inpaint-text-box", "input_images": "<function>", "paste_known": False,
                              "vae_latent": "sample", "scale": 1.0}


def test_the_preservation_scorer_reads_what_generation_recorded(tmp_path):
    """Two images against one stored input: 20 dB (outside the box, off by 0.1) and identical (inf) -> mean 20."""
    from PIL import Image

    from gligen_eval import store
    from gligen_eval.config import RunConfig
    from gligen_eval.records import SampleRecord
    from gligen_eval.scoring.protocol import ScoreContext
    from gligen_eval.scoring.scorers.inpaint import InpaintPreservation

    base = np.full((16, 16, 3), 100, dtype=np.uint8)
    shifted = base.copy()
    shifted[:8] += 51  # the top half off by 51 levels = 0.2 -> MSE 0.04 -> 13.98 dB, outside a bottom box
    (tmp_path / "inputs").mkdir()
    Image.fromarray(base).save(tmp_path / "inputs" / "in.png")
    samples = []
    for key, arr in (("a", shifted), ("b", base)):
        Image.fromarray(arr).save(tmp_path / f"{key}.png")
        samples.append(SampleRecord(key, "L", 0, f"{key}.png", 16, 16, "h", "s",
                                    extra={"inpaint": {"input": "inputs/in.png", "boxes": [[0.0, 0.5, 1.0, 1.0]],
                                                       "margin": 0}}))  # fmt: skip
    ctx = ScoreContext(store.RunDir(tmp_path), RunConfig(), [], samples)
    out = InpaintPreservation(RunConfig()).score(ctx)
    assert out.metrics["inpaint/outside_psnr"] == pytest.approx(10 * math.log10(1 / 0.2**2))  # the finite one
    assert InpaintPreservation(RunConfig()).score(ScoreContext(store.RunDir(tmp_path), RunConfig(), [], [])).metrics == {}
