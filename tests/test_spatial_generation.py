"""The five spatial modalities (hed, canny, depth, normal, sem) in the batched sampler, on tiny models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gligen_eval.config import SamplerConfig
from gligen_eval.errors import GligenEvalError
from gligen_eval.generation import grounding as G
from gligen_eval.generation.loading import load_components
from gligen_eval.generation.modalities import SPATIAL_MODALITIES, default_alpha, spec
from gligen_eval.generation.modalities.spatial import check_map, drawn_map
from gligen_eval.generation.sampler import GroundedSampler
from gligen_eval.generation.unet_forward import base_conv_in
from gligen_eval.records import GroundedObject, Layout

SIZE = 32


def _layout(i: int) -> Layout:
    return Layout(
        layout_id=f"s{i}",
        caption=["a dog on grass", "a cat on a sofa", "two birds", "a red car"][i],
        objects=(
            GroundedObject(phrase=["dog", "cat", "bird", "car"][i], box=(0.05 + 0.1 * i, 0.1, 0.55 + 0.1 * i, 0.6)),
            GroundedObject(phrase="tree", box=(0.6 - 0.1 * i, 0.5, 0.95, 0.95)),
        ),
    )


LAYOUTS = [_layout(i) for i in range(4)]


def settings(**kw) -> SamplerConfig:
    base = dict(steps=3, height=SIZE, width=SIZE, guidance_scale=7.5, batch_size=1)
    base.update(kw)
    return SamplerConfig(**base)


@pytest.fixture(scope="module", params=SPATIAL_MODALITIES)
def comps(request):
    return load_components("tiny", sample_size=SIZE, modality=request.param)


def test_batch_of_different_layouts_equals_one_by_one(comps):
    smp = GroundedSampler(comps)
    assert smp.grounding.modality == comps.modality == comps["unet"].position_net.modality
    assert smp.default_alpha() == default_alpha(comps.modality)
    s = dict(steps=2, schedule="alpha", alpha=[0.5, 0.0, 0.5])  # 3 loop steps: grounded, then 2 at scale 0
    seeds = [3, 1, 1]
    batched = smp.generate_arrays(LAYOUTS[:3], seeds, settings(batch_size=3, **s))
    single = np.concatenate([smp.generate_arrays([lay], [sd], settings(**s)) for lay, sd in zip(LAYOUTS, seeds)])
    assert batched.shape == (3, SIZE, SIZE, 3)
    np.testing.assert_allclose(batched, single, atol=1e-4, rtol=0)
    assert min(np.abs(batched[i] - batched[j]).max() for i in range(3) for j in range(i + 1, 3)) > 1e-3


def test_the_map_changes_the_image(comps):
    """Same caption and seed, another map: the grounded steps see it (tokens and extra channels)."""
    smp = GroundedSampler(comps)
    a, b = LAYOUTS[0], Layout(layout_id="moved", caption=LAYOUTS[0].caption, objects=LAYOUTS[3].objects)
    out = smp.generate_arrays([a, b], [0, 0], settings(batch_size=2, schedule="alpha", alpha=[1.0, 0.0, 0.0]))
    assert np.abs(out[0] - out[1]).max() > 1e-2


def test_first_conv_swap_and_gated_layers_at_scale_zero(comps):
    """Grounded steps: the trained 12- (HED 5-) channel first conv, the map appended, the position net
    run; scale-0 steps: the base 4-channel first conv, no map, no position net, gated layers off."""
    unet = comps["unet"]
    smp = GroundedSampler(comps)
    seen, net_calls = [], []

    def pre(module, args, kwargs):
        fusers = G.scaled_fusers(module)
        seen.append((args[0].shape[1], type(module.conv_in).__name__, fusers[0].scale))

    h1 = unet.register_forward_pre_hook(pre, with_kwargs=True)
    h2 = unet.position_net.register_forward_hook(lambda m, i, o: net_calls.append(o.shape))
    try:
        smp.generate_arrays(LAYOUTS[:2], [0, 1], settings(steps=4, batch_size=2, schedule="alpha", alpha=[0.4, 0.0, 0.6]))
    finally:
        h1.remove()
        h2.remove()
    in_ch = spec(comps.modality).in_channels
    n = len(seen)  # PNDM: steps + 1 loop iterations
    grounded = int(0.4 * n)
    assert seen[:grounded] == [(in_ch, "Conv2d", 1.0)] * grounded
    assert seen[grounded:] == [(4, "_FirstConv", 0.0)] * (n - grounded)
    assert len(net_calls) == grounded and net_calls[0][0] == 4  # [uncond; cond] of the 2 samples
    assert type(unet.conv_in).__name__ == "Conv2d"  # put back after each swap


def test_unconditional_branch_gets_null_tokens_and_the_same_map(comps):
    smp = GroundedSampler(comps)
    ctx = G.GroundingContext(components=smp.components, device=smp.device, dtype=smp.dtype, max_objects=30,
                             latent_shape=(4, SIZE // 2, SIZE // 2), image_size=(SIZE, SIZE))  # fmt: skip
    g = smp.grounding.prepare(LAYOUTS[:3], ctx)
    name = comps["unet"].position_net.input_name
    assert set(g.cond) == {name, "mask"}
    assert g.cond["mask"].tolist() == [1.0] * 3 and g.uncond["mask"].tolist() == [0.0] * 3
    assert g.uncond[name] is g.cond[name]
    out_dim = 1 if comps.modality == "hed" else 8
    assert tuple(g.extra_channels.shape) == (3, out_dim, SIZE // 2, SIZE // 2)
    with torch.no_grad():
        null = comps["unet"].position_net(**g.uncond)
        cond = comps["unet"].position_net(**g.cond)
    assert torch.allclose(null[0], null[1]) and not torch.allclose(cond[0], cond[1])  # null tokens ignore the map


def test_tiny_base_conv_is_the_tiny_base_models_own():
    base = load_components("tiny", sample_size=SIZE)["unet"].conv_in
    w, b = base_conv_in(load_components("tiny", sample_size=SIZE, modality="canny")["unet"])
    assert torch.equal(w, base.weight) and torch.equal(b, base.bias)


def test_map_sources_and_checks(monkeypatch):
    drawn = {m: drawn_map(LAYOUTS[0], m, 16) for m in SPATIAL_MODALITIES}
    for m, x in drawn.items():
        check_map(x, m, 16)
        assert np.array_equal(x, drawn_map(LAYOUTS[0], m, 16))  # deterministic
    assert drawn["sem"].dtype == np.int64 and set(np.unique(drawn["sem"])) > {0}
    calls = []

    def provider(layout, size):
        calls.append((layout.layout_id, size))
        return drawn_map(layout, "canny", size)

    tok = G.get_grounding("canny", map_provider=provider)
    assert tok.describe()["map_provider"] == "<function>"
    assert tok.map_for(LAYOUTS[1], 16).shape == (3, 16, 16) and calls == [("s1", 16)]

    import gligen_eval.conditions as conditions

    seen = []
    def fake_load_condition(layout, modality, *, size, **options):
        seen.append((modality, size, options))
        return drawn_map(layout, modality, size)

    monkeypatch.setattr(conditions, "load_condition", fake_load_condition)
    tok = G.get_grounding("depth", map="given", map_dir="/maps", canny_low=None)
    tok.map_for(LAYOUTS[0], 16)
    assert seen == [("depth", 16, {"map": "given", "map_dir": "/maps"})]
    tok = G.get_grounding("depth", map_provider="synthetic", map="given")  # an explicit source wins over drawn maps
    tok.map_for(LAYOUTS[0], 16)
    assert len(seen) == 2

    with pytest.raises(GligenEvalError, match="layout x: a sem map must be integer labels"):
        check_map(np.zeros((16, 16), np.float32), "sem", 16, layout_id="x")
    with pytest.raises(GligenEvalError, match=r"must lie in \[-1, 1\]"):
        check_map(np.full((3, 16, 16), 2.0, np.float32), "hed", 16)
    with pytest.raises(GligenEvalError, match=r"float \(3, 16, 16\)"):
        check_map(np.zeros((3, 8, 8), np.float32), "normal", 16)
    with pytest.raises(ValueError, match="map_provider"):
        G.get_grounding("hed", map_provider=3)


def test_detection_and_the_canny_depth_twins(tmp_path):
    from gligen_eval.errors import ConfigError
    from gligen_eval.generation.adapters import apply_adapter, save_adapter
    from gligen_eval.generation.checkpoints import load_official_unet, save_official

    depth = load_components("tiny", sample_size=SIZE, modality="depth")
    assert G.detect_modality(depth) == "depth"
    path = save_official(depth["unet"], tmp_path / "depth.bin")
    unet, _, info = load_official_unet(path)  # canny and depth weights look alike: the config_dict tells
    assert info.modality == "depth" and unet.position_net.modality == "depth"
    st = tmp_path / "depth.safetensors"  # no config_dict: reported as canny, assertable as depth
    save_official(depth["unet"], st)
    assert load_official_unet(st)[2].modality == "canny"
    assert load_official_unet(st, modality="depth")[2].modality == "depth"
    with pytest.raises(ConfigError, match="model.modality is 'sem'"):
        load_components(str(st), base="tiny", sample_size=SIZE, modality="sem")
    # adapters carry the position net, the downsampler and the modality
    adapter = save_adapter(depth["unet"], tmp_path / "depth-adapter.safetensors")
    plain = load_components("tiny", sample_size=SIZE)["unet"]
    applied = apply_adapter(plain, adapter, on_base_mismatch="ignore")
    assert applied.position_net.modality == "depth" and applied.downsample_net is not None
    w, _ = base_conv_in(applied)
    assert torch.equal(w, plain.conv_in.weight)  # the base's own first conv for the α = 0 steps
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(applied.downsample_net(x), depth["unet"].downsample_net(x))
        args = {"depth": x, "mask": torch.ones(1)}
        assert torch.equal(applied.position_net(**args), depth["unet"].position_net(**args))


@pytest.mark.parametrize("modality", ["canny", "sem"])
def test_official_checkpoint_on_the_tiny_base_gives_the_tiny_models_images(modality, tmp_path):
    from gligen_eval.generation.checkpoints import save_official

    tiny = load_components("tiny", sample_size=SIZE, modality=modality)
    official = load_components(str(save_official(tiny["unet"], tmp_path / f"{modality}.bin")), base="tiny", sample_size=SIZE)
    assert official.modality == modality and official.grounding_options == {"map_provider": "synthetic"}
    s = settings(steps=3, batch_size=2, schedule="alpha", alpha=[0.5, 0.0, 0.5])
    a = GroundedSampler(tiny).generate_arrays(LAYOUTS[:2], [0, 1], s)
    b = GroundedSampler(official).generate_arrays(LAYOUTS[:2], [0, 1], s)
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_gligen_eval_run_on_a_spatial_official_checkpoint(tmp_path, capsys):
    from gligen_eval.cli import main
    from gligen_eval.generation.checkpoints import save_official

    tiny = load_components("tiny", sample_size=SIZE, modality="hed")
    ckpt = save_official(tiny["unet"], tmp_path / "hed.bin")
    config = tmp_path / "hed.yaml"  # the official α default of the modality (no sampler.alpha)
    config.write_text(
        "layouts: {source: sample, limit: 3}\n"
        f"model: {{name: {ckpt}, base: tiny}}\n"
        f"sampler: {{steps: 2, height: {SIZE}, width: {SIZE}, batch_size: 3, schedule: alpha}}\n"
        f"detector: {{kind: yolo, weights: yolov8n.yaml, conf: 0.0, imgsz: {SIZE}}}\n"
        "grounding: {hed_weights: tiny}\n"  # the condition-consistency score re-extracts HED edges
    )
    out = tmp_path / "run"
    args = ["run", str(config), "--out", str(out), "--no-progress"]
    assert main(args) == 0, capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["resolved"]["modality"] == "hed"
    assert manifest["resolved"]["sampler"]["alpha"] == [0.9, 0.0, 0.1]
    assert len(list((out / "images").rglob("*.png"))) == 3


@pytest.mark.slow
def test_diffusers_folder_round_trip_keeps_modality_sizes_and_base_conv(tmp_path):
    from gligen_eval.generation.loading import save_components

    depth = load_components("tiny", sample_size=SIZE, modality="depth")
    again = load_components(str(save_components(depth, tmp_path / "depth")))
    assert again.modality == "depth"
    ours, back = depth["unet"], again["unet"]
    assert ours.state_dict().keys() == back.state_dict().keys()
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in ours.state_dict().items())
    assert back.position_net.resize_input == ours.position_net.resize_input
    assert back.downsample_net.resize_input == ours.downsample_net.resize_input
    assert all(torch.equal(a, b) for a, b in zip(base_conv_in(ours), base_conv_in(back)))
