"""The grounded sampler on tiny random components: parity with diffusers, determinism, batching,
scaled gated layers, loading and fingerprints."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gligen_eval.config import SamplerConfig  # noqa: E402
from gligen_eval.errors import MissingWeightsError  # noqa: E402
from gligen_eval.generation import grounding as G  # noqa: E402
from gligen_eval.generation.loading import describe, fingerprint, load_components, save_components  # noqa: E402
from gligen_eval.generation.sampler import GroundedSampler, make_scheduler  # noqa: E402
from gligen_eval.generation.tiny import tiny_components  # noqa: E402
from gligen_eval.records import GroundedObject, Layout  # noqa: E402

SIZE = 32


def obj(phrase, box):
    return GroundedObject(phrase=phrase, box=box)


DOG_CAT = Layout(
    "dog-cat",
    "a dog and a cat on the grass",
    (obj("a dog", (0.05, 0.2, 0.5, 0.9)), obj("a cat", (0.55, 0.3, 0.95, 0.8))),
)
LAYOUTS = [
    DOG_CAT,
    Layout("one", "a red car", (obj("a red car", (0.1, 0.4, 0.9, 0.8)),)),
    Layout("empty", "an empty street at night", ()),
    Layout(
        "five",
        "a table with fruit",
        (
            obj("an apple", (0.1, 0.1, 0.3, 0.3)),
            obj("a banana", (0.4, 0.1, 0.6, 0.3)),
            obj("an apple", (0.7, 0.1, 0.9, 0.3)),
            obj("a bowl", (0.2, 0.5, 0.8, 0.9)),
            obj("a dog", (0.0, 0.0, 1.0, 1.0)),
        ),
    ),
]


def settings(**kw) -> SamplerConfig:
    base = dict(steps=4, height=SIZE, width=SIZE, guidance_scale=7.5, schedule="beta", beta=0.5, batch_size=1)
    base.update(kw)
    return SamplerConfig(**base)


def components(seed=0, **kw):
    return tiny_components(seed=seed, sample_size=SIZE, **kw)


@pytest.fixture(scope="module")
def sampler():
    return GroundedSampler(components())


def diffusers_gligen(layout, seed, beta, scheduler="pndm", negative_prompt=None, guidance_scale=7.5):
    from diffusers import StableDiffusionGLIGENPipeline
    from diffusers.utils import logging as dlog

    dlog.set_verbosity_error()
    comps = components()
    comps["scheduler"] = make_scheduler(scheduler, comps["scheduler"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = StableDiffusionGLIGENPipeline(**comps, safety_checker=None, feature_extractor=None,
                                             requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe(
        prompt=layout.caption,
        gligen_phrases=layout.phrases,
        gligen_boxes=[list(b) for b in layout.boxes],
        gligen_scheduled_sampling_beta=beta,
        negative_prompt=negative_prompt,
        height=SIZE,
        width=SIZE,
        num_inference_steps=4,
        guidance_scale=guidance_scale,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
    ).images


# --------------------------------------------------------------------------------------------
# parity with diffusers' StableDiffusionGLIGENPipeline


@pytest.mark.parametrize("beta", [0.3, 0.5, 1.0])
def test_parity_with_diffusers_pipeline_beta(beta):
    ours = GroundedSampler(components()).generate_arrays([DOG_CAT], [7], settings(beta=beta))
    ref = diffusers_gligen(DOG_CAT, 7, beta)
    assert ours.shape == ref.shape == (1, SIZE, SIZE, 3)
    assert np.abs(ours - ref).max() <= 1e-5
    assert ref.std() > 0.01  # a real image, not a constant


def test_parity_ddim_negative_prompt():
    s = settings(beta=0.5, scheduler="ddim", negative_prompt="blurry, low quality")
    ours = GroundedSampler(components()).generate_arrays([DOG_CAT], [11], s)
    ref = diffusers_gligen(DOG_CAT, 11, 0.5, scheduler="ddim", negative_prompt="blurry, low quality")
    assert np.abs(ours - ref).max() <= 1e-5


def test_scale_zero_equals_plain_stable_diffusion():
    """β = 0: no grounding at any step; the images are those of the base text-to-image model."""
    from diffusers import StableDiffusionPipeline

    ours = GroundedSampler(components()).generate_arrays([DOG_CAT], [3], settings(beta=0.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = StableDiffusionPipeline(**components(), safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(DOG_CAT.caption, height=SIZE, width=SIZE, num_inference_steps=4, guidance_scale=7.5,
               generator=torch.Generator().manual_seed(3), output_type="np").images
    assert np.array_equal(ours, ref)


# --------------------------------------------------------------------------------------------
# determinism and batching


def png_bytes(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def test_same_seed_same_png_bytes_different_seed_differs():
    s = settings(schedule="alpha", alpha=[0.3, 0.0, 0.7])
    a = GroundedSampler(components()).generate([DOG_CAT, DOG_CAT], [5, 6], s, progress=False)
    b = GroundedSampler(components()).generate([DOG_CAT], [5], s, progress=False)
    assert a[0].size == (SIZE, SIZE) and a[0].mode == "RGB"
    assert png_bytes(a[0]) == png_bytes(b[0])
    assert png_bytes(a[0]) != png_bytes(a[1])


@pytest.mark.parametrize("schedule", [dict(schedule="alpha", alpha=[0.25, 0.5, 0.25]), dict(schedule="beta", beta=0.5)])
def test_batch_of_different_layouts_equals_one_by_one(sampler, schedule):
    seeds = [1, 2, 3, 4]
    batched = sampler.generate_arrays(LAYOUTS, seeds, settings(batch_size=4, **schedule))
    single = np.concatenate(
        [sampler.generate_arrays([lay], [s], settings(batch_size=1, **schedule)) for lay, s in zip(LAYOUTS, seeds)]
    )
    assert batched.shape == (4, SIZE, SIZE, 3)
    np.testing.assert_allclose(batched, single, atol=1e-4, rtol=0)
    # and the batch holds four different images
    assert min(np.abs(batched[i] - batched[j]).max() for i in range(4) for j in range(i + 1, 4)) > 1e-3


def test_uneven_last_batch_and_order(sampler):
    seeds = [9, 8, 7]
    three = sampler.generate_arrays(LAYOUTS[:3], seeds, settings(batch_size=2))
    first = sampler.generate_arrays(LAYOUTS[2:3], [7], settings(batch_size=2))
    np.testing.assert_allclose(three[2], first[0], atol=1e-4, rtol=0)


def test_without_guidance(sampler):
    s = settings(guidance_scale=1.0)
    batched = sampler.generate_arrays(LAYOUTS[:2], [1, 2], s)
    single = sampler.generate_arrays(LAYOUTS[1:2], [2], s)
    np.testing.assert_allclose(batched[1], single[0], atol=1e-4, rtol=0)


# --------------------------------------------------------------------------------------------
# grounding matters, scaled gated layers


def test_grounding_changes_the_image(sampler):
    grounded = sampler.generate_arrays([DOG_CAT], [0], settings(beta=1.0))
    base = sampler.generate_arrays([DOG_CAT], [0], settings(beta=0.0))
    moved = Layout(DOG_CAT.layout_id, DOG_CAT.caption,
                   (obj("a dog", (0.5, 0.1, 0.95, 0.5)), obj("a cat", (0.0, 0.5, 0.4, 1.0))))
    moved_img = sampler.generate_arrays([moved], [0], settings(beta=1.0))
    assert np.abs(grounded - base).max() > 2e-2
    assert np.abs(grounded - moved_img).max() > 1e-2  # the boxes matter, not only the presence of grounding


def _unet_inputs(unet, seed=0, batch=2):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, SIZE // 2, SIZE // 2, generator=g)
    ctx = torch.randn(batch, 77, unet.config.cross_attention_dim, generator=g)
    gligen = {
        "boxes": torch.rand(batch, 30, 4, generator=g),
        "positive_embeddings": torch.randn(batch, 30, unet.config.cross_attention_dim, generator=g),
        "masks": torch.cat([torch.ones(batch, 3), torch.zeros(batch, 27)], dim=1),
    }
    return x, ctx, gligen


@torch.no_grad()
def test_scaled_fusers_keep_state_dict_and_scale_one_equals_diffusers():
    from diffusers.models.attention import GatedSelfAttentionDense

    unet = components()["unet"]
    x, ctx, gligen = _unet_inputs(unet)
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    ref = unet(x, 10, encoder_hidden_states=ctx, cross_attention_kwargs={"gligen": gligen}).sample
    n = G.install_scaled_fusers(unet)
    assert n == 4 and G.install_scaled_fusers(unet) == 4  # idempotent
    after = unet.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)
    out = unet(x, 10, encoder_hidden_states=ctx, cross_attention_kwargs={"gligen": gligen}).sample
    assert torch.equal(out, ref)
    assert G.uninstall_scaled_fusers(unet) == 4
    assert sum(type(m) is GatedSelfAttentionDense for m in unet.modules()) == 4


@torch.no_grad()
def test_scale_zero_is_unplugged_base_exactly():
    unet = components()["unet"]
    x, ctx, gligen = _unet_inputs(unet)
    plain = unet(x, 10, encoder_hidden_states=ctx).sample  # no grounding input at all
    G.install_scaled_fusers(unet)
    grounded = unet(x, 10, encoder_hidden_states=ctx, cross_attention_kwargs={"gligen": gligen}).sample
    with G.unplugged(unet):
        assert G.get_grounding_scale(unet) == 0.0
        off = unet(x, 10, encoder_hidden_states=ctx, cross_attention_kwargs={"gligen": gligen}).sample
    assert G.get_grounding_scale(unet) == 1.0
    G.unplug(unet)
    assert torch.equal(unet(x, 10, encoder_hidden_states=ctx, cross_attention_kwargs={"gligen": gligen}).sample, plain)
    assert torch.equal(off, plain)
    assert (grounded - plain).abs().max() > 1e-3


@torch.no_grad()
def test_fractional_scale_scales_both_gates():
    """scale s on tanh(a) equals diffusers' layer whose gates are atanh(s * tanh(a))."""
    import copy

    unet = components()["unet"]
    x, ctx, gligen = _unet_inputs(unet, seed=1)
    s = 0.4
    reference = copy.deepcopy(unet)
    from diffusers.models.attention import GatedSelfAttentionDense

    for m in reference.modules():
        if isinstance(m, GatedSelfAttentionDense):
            m.alpha_attn.copy_(torch.atanh(s * m.alpha_attn.tanh()))
            m.alpha_dense.copy_(torch.atanh(s * m.alpha_dense.tanh()))
    ref = reference(x, 10, encoder_hidden_states=ctx, cross_attention_kwargs={"gligen": gligen}).sample
    G.set_grounding_scale(unet, s)
    out = unet(x, 10, encoder_hidden_states=ctx, cross_attention_kwargs={"gligen": gligen}).sample
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    G.set_grounding_scale(unet, 1.0)
    full = unet(x, 10, encoder_hidden_states=ctx, cross_attention_kwargs={"gligen": gligen}).sample
    assert (full - out).abs().max() > 1e-4
    with pytest.raises(ValueError):
        G.set_grounding_scale(unet, -1)


def test_alpha_schedule_scales_seen_per_step():
    smp = GroundedSampler(components())
    seen = []
    fuser = G.scaled_fusers(smp.unet)[0]
    handle = fuser.register_forward_pre_hook(lambda m, args: seen.append(m.scale))
    try:
        # PNDM with 4 steps runs 5 timesteps: int(0.2*5)=1 at 1, int(0.6*5)=3 decaying, 1 at 0 (not run)
        smp.generate_arrays([DOG_CAT], [0], settings(schedule="alpha", alpha=[0.2, 0.6, 0.2]))
    finally:
        handle.remove()
    assert seen == pytest.approx([1.0, 2 / 3, 1 / 3])  # scale-0 steps never call the gated layers
    assert G.get_grounding_scale(smp.unet) == 1.0


# --------------------------------------------------------------------------------------------
# grounding tokenizer


def test_phrase_features_are_encoded_once_per_call(sampler):
    batch_sizes = []
    handle = sampler.text_encoder.register_forward_hook(
        lambda m, args, kwargs, out: batch_sizes.append(kwargs.get("input_ids", args[0] if args else None).shape[0]),
        with_kwargs=True,
    )
    try:
        sampler.generate_arrays(LAYOUTS + LAYOUTS, list(range(8)), settings(batch_size=4, steps=1))
    finally:
        handle.remove()
    phrases = {o.phrase for lay in LAYOUTS for o in lay.objects}
    # batch 1: captions (4), negative prompt (1), the 5 distinct phrases; batch 2: everything cached
    assert sorted(batch_sizes) == sorted([4, 1, len(phrases)])


def test_text_box_tokens_padding_masks_and_null(sampler):
    ctx = G.GroundingContext(components=sampler.components, device=sampler.device, dtype=torch.float32,
                             max_objects=6, latent_shape=(4, 16, 16))
    gi = sampler.grounding.prepare(LAYOUTS, ctx)
    assert gi.num_objects == [2, 1, 0, 5]
    assert gi.cond["boxes"].shape == (4, 6, 4)
    assert gi.cond["positive_embeddings"].shape == (4, 6, 32)
    assert gi.cond["masks"].tolist()[3] == [1, 1, 1, 1, 1, 0]
    assert gi.cond["masks"][2].sum() == 0
    assert torch.equal(gi.cond["boxes"][0, 1], torch.tensor([0.55, 0.3, 0.95, 0.8]))
    # the same phrase gets the same feature; different phrases differ
    emb = gi.cond["positive_embeddings"]
    assert torch.equal(emb[3, 0], emb[3, 2]) and not torch.equal(emb[3, 0], emb[3, 1])
    assert torch.equal(emb[3, 4], emb[0, 0])  # "a dog" in two layouts
    assert gi.uncond["masks"].sum() == 0 and torch.equal(gi.uncond["boxes"], gi.cond["boxes"])


def test_truncation_warns_and_names_the_layout(sampler):
    many = Layout("crowded", "many things", tuple(obj(f"thing {i}", (0.0, 0.0, 0.5, 0.5)) for i in range(4)))
    with pytest.warns(UserWarning, match="crowded.*first 2"):
        out = sampler.generate_arrays([many], [0], settings(max_objects=2, steps=1))
    assert out.shape == (1, SIZE, SIZE, 3)


def test_bad_arguments(sampler):
    with pytest.raises(ValueError, match="seeds"):
        sampler.generate_arrays(LAYOUTS, [1], settings())
    with pytest.raises(ValueError, match="grounding"):
        GroundedSampler(components(attention_type="gated-text-image"), grounding=G.get_grounding("text-box"))
    with pytest.raises(ValueError, match="unknown grounding"):
        G.get_grounding("smell-box")
    assert sampler.generate_arrays([], [], settings()).shape[0] == 0


# --------------------------------------------------------------------------------------------
# tiny components, loading, fingerprints


def test_tiny_components_are_deterministic_and_grounding_is_live():
    a, b, c = components(0), components(0), components(1)
    assert fingerprint(a["unet"]) == fingerprint(b["unet"])
    assert fingerprint(a["unet"]) != fingerprint(c["unet"])
    assert fingerprint(a["text_encoder"]) == fingerprint(b["text_encoder"])
    gates = [m.alpha_attn.item() for m in a["unet"].modules() if hasattr(m, "alpha_attn")]
    assert gates and all(g > 0.4 for g in gates)
    inp = components(in_channels=9, attention_type="gated-text-image")
    assert inp["unet"].config.in_channels == 9 and hasattr(inp["unet"].position_net, "linears_image")
    tok = a["tokenizer"]
    ids = tok("a dog").input_ids
    # one token per character; "</w>" marks the end of a word: <bos> "a</w>" "d" "o" "g</w>" <eos>
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id and len(ids) == 6


def test_missing_hub_id_raises_missing_weights(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingWeightsError, match="huggingface-cli download gligen-eval-test/not-a-model"):
        load_components("gligen-eval-test/not-a-model")
    with pytest.raises(MissingWeightsError, match="model_index.json"):
        load_components(str(tmp_path))
    with pytest.raises(MissingWeightsError, match="not found"):
        load_components(str(tmp_path / "absent"))


def test_local_diffusers_folder_round_trip(tmp_path):
    comps = load_components("tiny", sample_size=SIZE)
    info = describe(comps)
    assert info["unet"]["source"].startswith("tiny") and len(info["unet"]["fingerprint"]) == 64
    folder = save_components(comps, tmp_path / "model")
    loaded = load_components(str(folder))
    info2 = describe(loaded)
    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert info2[part]["fingerprint"] == info[part]["fingerprint"], part
    assert str(folder) in info2["unet"]["source"]
    a = GroundedSampler(comps).generate_arrays([DOG_CAT], [2], settings(steps=2))
    b = GroundedSampler(loaded).generate_arrays([DOG_CAT], [2], settings(steps=2))
    assert np.array_equal(a, b)


def test_official_checkpoint_with_a_base_folder(tmp_path):
    from gligen_eval.generation.checkpoints import save_official

    comps = load_components("tiny", sample_size=SIZE)
    base = save_components(comps, tmp_path / "base")
    ckpt = save_official(comps["unet"], tmp_path / "gligen.bin")
    with pytest.raises(MissingWeightsError, match="model.base"):
        load_components(str(ckpt))
    loaded = load_components(str(ckpt), base=str(base))
    assert fingerprint(loaded["unet"]) == fingerprint(comps["unet"])
    assert "official GLIGEN checkpoint" in loaded.sources["unet"] and str(base) in loaded.sources["vae"]
    a = GroundedSampler(comps).generate_arrays([DOG_CAT], [4], settings(steps=2))
    b = GroundedSampler(loaded).generate_arrays([DOG_CAT], [4], settings(steps=2))
    assert np.array_equal(a, b)


def test_package_exports_are_lazy():
    import subprocess
    import sys

    code = ("import sys, gligen_eval.generation as g; assert 'torch' not in sys.modules; "
            "f = g.alpha_schedule; assert 'torch' not in sys.modules; print(f(4, (0.5, 0.5, 0.0)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[1.0, 1.0, 0.5, 0.0]"
