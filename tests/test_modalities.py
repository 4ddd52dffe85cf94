"""Every grounding modality in the batched sampler on tiny models: parity with diffusers' text+image
pipeline, batches of different layouts, keypoint packing, image features, α defaults, modality
detection and loading."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gligen_eval.config import SamplerConfig  # noqa: E402
from gligen_eval.errors import ConfigError, GligenEvalError, MissingWeightsError  # noqa: E402
from gligen_eval.generation import grounding as G  # noqa: E402
from gligen_eval.generation.loading import describe, fingerprint, load_components, save_components  # noqa: E402
from gligen_eval.generation.modalities import MODALITY_NAMES, default_alpha, forced_scale  # noqa: E402
from gligen_eval.generation.modalities.images import synthetic_reference, synthetic_scene  # noqa: E402
from gligen_eval.generation.sampler import GroundedSampler, make_scheduler  # noqa: E402
from gligen_eval.generation.tiny import tiny_components  # noqa: E402
from gligen_eval.records import GroundedObject, Layout  # noqa: E402

SIZE = 32


def settings(**kw) -> SamplerConfig:
    base = dict(steps=3, height=SIZE, width=SIZE, guidance_scale=7.5, schedule="beta", beta=1.0, batch_size=1)
    base.update(kw)
    return SamplerConfig(**base)


def components(modality, seed=0):
    return tiny_components(seed=seed, sample_size=SIZE, modality=modality)


def person(cx, cy, scale=0.1, vis=2):
    """17 keypoints around (cx, cy); every third point is occluded (v=1) when vis == 2."""
    pts = []
    for k in range(17):
        x = min(1.0, max(0.0, cx + scale * np.cos(k)))
        y = min(1.0, max(0.0, cy + scale * np.sin(1.7 * k)))
        pts.append((x, y, (1 if k % 3 == 0 else 2) if vis == 2 else vis))
    return tuple(pts)


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    d = tmp_path_factory.mktemp("refs")
    paths = {}
    for name, size in (("dog", 64), ("style", 48), ("other", 40)):
        p = d / f"{name}.png"
        synthetic_reference(name, size).save(p)
        paths[name] = str(p)
    return paths


def layouts(refs):
    kp = GroundedObject("a person", (0.1, 0.1, 0.5, 0.9), category="person", keypoints=person(0.3, 0.5))
    kp2 = GroundedObject("a person", (0.5, 0.2, 0.9, 0.8), category="person", keypoints=person(0.7, 0.5, 0.15))
    return [
        Layout("two", "a dog and a cat on the grass",
               (GroundedObject("a dog", (0.05, 0.2, 0.5, 0.9), reference_image=refs["dog"]),
                GroundedObject("a cat", (0.55, 0.3, 0.95, 0.8)))),
        Layout("people", "two people in a park", (kp, kp2, GroundedObject("a tree", (0.0, 0.0, 0.3, 0.3)))),
        Layout("empty", "an empty street at night", ()),
        Layout("one", "a red car", (GroundedObject("", (0.1, 0.4, 0.9, 0.8), reference_image=refs["other"]),)),
    ]


# --------------------------------------------------------------------------------------------
# parity with diffusers' StableDiffusionGLIGENTextImagePipeline


def text_image_pipeline(comps):
    from diffusers import StableDiffusionGLIGENTextImagePipeline
    from diffusers.utils import logging as dlog

    dlog.set_verbosity_error()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = StableDiffusionGLIGENTextImagePipeline(
            **comps, safety_checker=None, feature_extractor=None, requires_safety_checker=False
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_text_image_parity_with_diffusers_pipeline(refs):
    """Phrase+image, text-only and image-only objects; diffusers' pipeline grounds at every step (β = 1)."""
    from PIL import Image

    lay = Layout("x", "a dog and a cat on the grass", (
        GroundedObject("a dog", (0.05, 0.2, 0.5, 0.9), reference_image=refs["dog"]),
        GroundedObject("a cat", (0.55, 0.3, 0.95, 0.8)),
        GroundedObject("", (0.3, 0.1, 0.6, 0.4), reference_image=refs["other"]),
    ))
    ours = GroundedSampler(components("text-image-box")).generate_arrays([lay], [7], settings(steps=4))
    pipe = text_image_pipeline(components("text-image-box"))
    ref = pipe(
        prompt=lay.caption,
        gligen_phrases=["a dog", "a cat", None],
        gligen_images=[Image.open(refs["dog"]).convert("RGB"), None, Image.open(refs["other"]).convert("RGB")],
        gligen_boxes=[list(b) for b in lay.boxes],
        height=SIZE, width=SIZE, num_inference_steps=4, guidance_scale=7.5,
        generator=torch.Generator().manual_seed(7), output_type="np",
    ).images
    assert ours.shape == ref.shape == (1, SIZE, SIZE, 3)
    assert np.abs(ours - ref).max() <= 1e-5
    assert ref.std() > 0.01


def test_text_image_style_grounding_parity(refs):
    """The official style example: an image-only entity at the out-of-image location [0, 1, 0, 1]."""
    from PIL import Image

    lay = Layout("house", "a brick house in the woods", (GroundedObject("a brick house", (0.4, 0.2, 1.0, 0.8)),))
    tok = G.get_grounding("text-image-box", style_image=refs["style"])
    ours = GroundedSampler(components("text-image-box"), grounding=tok).generate_arrays([lay], [3], settings())
    plain = GroundedSampler(components("text-image-box")).generate_arrays([lay], [3], settings())
    placeholder = Image.new("RGB", (16, 16), (128, 128, 128))
    ref = text_image_pipeline(components("text-image-box"))(
        prompt=lay.caption,
        gligen_phrases=["a brick house", "placeholder"],
        gligen_images=[placeholder, Image.open(refs["style"]).convert("RGB")],
        input_phrases_mask=[1, 0],
        input_images_mask=[0, 1],
        gligen_boxes=[[0.4, 0.2, 1.0, 0.8], [0.0, 1.0, 0.0, 1.0]],
        height=SIZE, width=SIZE, num_inference_steps=3, guidance_scale=7.5,
        generator=torch.Generator().manual_seed(3), output_type="np",
    ).images
    assert np.abs(ours - ref).max() <= 1e-5
    assert np.abs(ours - plain).max() > 1e-3  # the style entity changes the image


# --------------------------------------------------------------------------------------------
# batches of different layouts


@pytest.mark.parametrize("modality", MODALITY_NAMES)
def test_batch_of_different_layouts_equals_one_by_one(modality, refs):
    comps = load_components("tiny", sample_size=SIZE, modality=modality)
    smp = GroundedSampler(comps)
    lays, seeds = layouts(refs), [1, 2, 3, 4]
    s = settings(steps=2, schedule="alpha", alpha=[0.5, 0.0, 0.5])
    batched = smp.generate_arrays(lays, seeds, settings(steps=2, schedule="alpha", alpha=[0.5, 0.0, 0.5], batch_size=4))
    single = np.concatenate([smp.generate_arrays([lay], [sd], s) for lay, sd in zip(lays, seeds)])
    assert batched.shape == (4, SIZE, SIZE, 3)
    np.testing.assert_allclose(batched, single, atol=1e-4, rtol=0)
    assert min(np.abs(batched[i] - batched[j]).max() for i in range(4) for j in range(i + 1, 4)) > 1e-3


# --------------------------------------------------------------------------------------------
# text+image grounding tokens


def _ctx(smp, n=30, **kw):
    scheduler = make_scheduler("pndm", smp.scheduler_config)
    scheduler.set_timesteps(2)
    return G.GroundingContext(components=smp.components, device=smp.device, dtype=torch.float32, max_objects=n,
                              latent_shape=(4, SIZE // 2, SIZE // 2), image_size=(SIZE, SIZE), scheduler=scheduler,
                              **kw)


def test_text_image_tokens_masks_and_normalization(refs):
    smp = GroundedSampler(components("text-image-box"))
    lays = layouts(refs)
    ctx = _ctx(smp, n=4)
    gi = smp.grounding.prepare(lays, ctx)
    c = gi.cond
    assert c["boxes"].shape == (4, 4, 4) and c["image_embeddings"].shape == (4, 4, 32)
    assert c["masks"].tolist()[0] == [1, 1, 0, 0] and c["masks"][2].sum() == 0
    assert c["phrases_masks"].tolist()[0] == [1, 1, 0, 0] and c["image_masks"].tolist()[0] == [1, 0, 0, 0]
    assert c["phrases_masks"].tolist()[3] == [0, 0, 0, 0] and c["image_masks"].tolist()[3] == [1, 0, 0, 0]
    norms = c["image_embeddings"].norm(dim=-1)
    assert torch.allclose(norms[c["image_masks"] > 0], torch.tensor(28.7), atol=1e-4)
    assert (norms[c["image_masks"] == 0] == 0).all()
    for key in ("masks", "phrases_masks", "image_masks"):
        assert gi.uncond[key].sum() == 0
    # 2N tokens reach the gated layers
    seen = []
    h = smp.unet.position_net.register_forward_hook(lambda m, a, out: seen.append(tuple(out.shape)))
    try:
        smp.generate_arrays(lays[:1], [0], settings(steps=1, max_objects=4))
    finally:
        h.remove()
    assert seen == [(2, 8, 32)]


def test_reference_image_sources(refs, tmp_path):
    smp = GroundedSampler(components("text-image-box"))
    photo = tmp_path / "photo.png"
    synthetic_scene("photo", 40, 30).save(photo)
    lay = Layout("l", "a cat", (GroundedObject("a cat", (0.5, 0.5, 1.0, 1.0)),), image_path=str(photo))
    masks = {}
    feats = {}
    for source in ("given", "synthetic", "crop"):
        tok = G.get_grounding("text-image-box", reference_images=source)
        gi = tok.prepare([lay], _ctx(smp))
        masks[source] = gi.cond["image_masks"][0, 0].item()
        feats[source] = gi.cond["image_embeddings"][0, 0]
    assert masks == {"given": 0.0, "synthetic": 1.0, "crop": 1.0}
    assert not torch.allclose(feats["synthetic"], feats["crop"])
    no_image = Layout("m", "a cat", lay.objects)
    with pytest.raises(GligenEvalError, match=r"\[m\].*image_path"):
        G.get_grounding("text-image-box", reference_images="crop").prepare([no_image], _ctx(smp))
    missing = Layout("n", "x", (GroundedObject("x", (0, 0, 1, 1), reference_image=str(tmp_path / "nope.png")),))
    with pytest.raises(GligenEvalError, match=r"nope.png \[n\]: reference image not found"):
        smp.grounding.prepare([missing], _ctx(smp))


def test_reference_images_are_encoded_once_per_call(refs):
    smp = GroundedSampler(components("text-image-box"))
    batches = []
    h = smp.components["image_encoder"].register_forward_hook(
        lambda m, a, kw, out: batches.append(kw["pixel_values"].shape[0]), with_kwargs=True
    )
    lays = layouts(refs)
    try:
        smp.generate_arrays(lays + lays, list(range(8)), settings(steps=1, batch_size=4))
    finally:
        h.remove()
    assert batches == [2]  # "dog" and "other": once, in the first batch


# --------------------------------------------------------------------------------------------
# keypoints


def test_keypoint_packing_in_the_sampler():
    """Largest 8 persons by box area, visibility 2 only, non-person objects ignored, 136 tokens."""
    comps = components("keypoint")
    smp = GroundedSampler(comps)
    assert type(smp.grounding).__name__ == "KeypointTokenizer"
    sizes = [0.05, 0.3, 0.1, 0.25, 0.15, 0.2, 0.12, 0.08, 0.22, 0.18]  # box widths: 10 persons
    objs = [GroundedObject("a car", (0.0, 0.0, 1.0, 1.0))]
    for i, w in enumerate(sizes):
        x0 = 0.05 * i
        kps = person(x0 + w / 2, 0.4 + 0.02 * i)
        objs.append(GroundedObject("a person", (x0, 0.1, x0 + w, 0.1 + w), keypoints=kps))
    lay = Layout("crowd", "a crowd", tuple(objs))
    gi = smp.grounding.prepare([lay, Layout("none", "a car", objs[:1])], _ctx(smp))
    points, masks = gi.cond["points"], gi.cond["masks"]
    assert points.shape == (2, 136, 2) and masks.shape == (2, 136)
    assert gi.num_objects == [8, 0] and masks[1].sum() == 0
    order = sorted(range(10), key=lambda i: -sizes[i])[:8]
    for slot, i in enumerate(order):
        kps = objs[1 + i].keypoints
        for k in range(17):
            visible = kps[k][2] == 2
            assert masks[0, slot * 17 + k].item() == (1.0 if visible else 0.0)
            if visible:
                assert torch.allclose(points[0, slot * 17 + k], torch.tensor(kps[k][:2], dtype=torch.float32))
    assert gi.uncond["masks"].sum() == 0
    seen = []
    h = smp.unet.position_net.register_forward_hook(lambda m, a, out: seen.append(tuple(out.shape)))
    try:
        base = smp.generate_arrays([lay], [0], settings(steps=2))
    finally:
        h.remove()
    assert seen == [(2, 136, 32)] * 3  # PNDM with 2 steps runs 3 timesteps
    moved = Layout("crowd", "a crowd", tuple(
        o if o.keypoints is None else GroundedObject(o.phrase, o.box, keypoints=person(0.9, 0.9)) for o in objs
    ))
    assert np.abs(smp.generate_arrays([moved], [0], settings(steps=2)) - base).max() > 1e-3


# --------------------------------------------------------------------------------------------
# α defaults and forced scales


def test_default_alpha_per_modality():
    assert default_alpha("text-box") == [0.3, 0.0, 0.7]
    assert default_alpha("text-image-box") == [1.0, 0.0, 0.0]
    assert default_alpha("keypoint") == [0.3, 0.0, 0.7]
    assert default_alpha("hed") == default_alpha("canny") == [0.9, 0.0, 0.1]
    assert default_alpha("depth") == default_alpha("normal") == default_alpha("sem") == [0.7, 0.0, 0.3]
    assert forced_scale("inpaint-text-box") == forced_scale("inpaint-text-image-box") == 1.0
    assert default_alpha("inpaint-text-box") == [1.0, 0.0, 0.0]
    assert forced_scale("text-box") is None and forced_scale("keypoint") is None
    with pytest.raises(ConfigError, match="unknown modality"):
        default_alpha("smell-box")


def test_inpainting_forces_scale_one_at_every_step():
    smp = GroundedSampler(load_components("tiny", sample_size=SIZE, modality="inpaint-text-box"))
    seen = []
    fuser = G.scaled_fusers(smp.unet)[0]
    h = fuser.register_forward_pre_hook(lambda m, a: seen.append(m.scale))
    lay = Layout("l", "a dog", (GroundedObject("a dog", (0.2, 0.2, 0.6, 0.6)),))
    try:
        smp.generate_arrays([lay], [0], settings(steps=4, schedule="alpha", alpha=[0.3, 0.0, 0.7]))
    finally:
        h.remove()
    assert seen == [1.0] * 5


# --------------------------------------------------------------------------------------------
# modality detection, loading, registry


@pytest.mark.parametrize("modality", MODALITY_NAMES)
def test_modality_detected_from_components(modality):
    comps = components(modality)
    assert G.detect_modality(comps) == modality
    assert G.default_grounding(comps).modality == modality
    loaded = load_components("tiny", sample_size=SIZE, modality=modality)
    assert loaded.modality == modality and describe(loaded)["modality"] == modality
    expected_in = 9 if modality.startswith("inpaint") else 4
    assert loaded["unet"].config.in_channels == expected_in


def test_loading_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown model.modality"):
        load_components("tiny", modality="smell-box")
    with pytest.raises(ConfigError, match="unknown grounding option"):
        G.default_grounding(components("text-box"), colour="red")
    # a text+image model without its CLIP vision parts
    comps = components("text-image-box")
    no_vision = {k: v for k, v in comps.items() if k not in ("image_encoder", "processor", "image_project")}
    folder = save_components(no_vision, tmp_path / "no-vision")
    with pytest.raises(MissingWeightsError, match="image_encoder, processor, image_project"):
        load_components(str(folder))
    # the declared modality must match the weights
    from gligen_eval.generation.checkpoints import save_official

    ckpt = save_official(components("keypoint")["unet"], tmp_path / "kp.bin")
    with pytest.raises(ConfigError, match="model.modality is 'text-box'.*keypoint"):
        load_components(str(ckpt), base="tiny", sample_size=SIZE, modality="text-box")


@pytest.mark.parametrize("modality", MODALITY_NAMES)
def test_official_checkpoint_and_folder_pick_the_right_grounding(modality, tmp_path, refs):
    """Official-layout checkpoint (+ tiny base) and diffusers folder round trips give the same images."""
    from gligen_eval.generation.checkpoints import save_official

    comps = load_components("tiny", sample_size=SIZE, modality=modality)
    ckpt = save_official(comps["unet"], tmp_path / f"{modality}.bin")
    official = load_components(str(ckpt), base="tiny", sample_size=SIZE)
    assert official.modality == modality
    official.grounding_options = dict(comps.grounding_options)
    lay = layouts(refs)[0]
    s = settings(steps=2)
    a = GroundedSampler(comps).generate_arrays([lay], [4], s)
    b = GroundedSampler(official).generate_arrays([lay], [4], s)
    assert type(GroundedSampler(official).grounding) is type(GroundedSampler(comps).grounding)
    assert np.array_equal(a, b)
    if modality in ("keypoint", "text-image-box"):  # diffusers folders: a text+image pipeline, a keypoint UNet
        folder = load_components(str(save_components(comps, tmp_path / "folder")))
        assert folder.modality == modality
        assert fingerprint(folder["unet"]) == fingerprint(comps["unet"])
        folder.grounding_options = dict(comps.grounding_options)
        assert np.array_equal(GroundedSampler(folder).generate_arrays([lay], [4], s), a)
