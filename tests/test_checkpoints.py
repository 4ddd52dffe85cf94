"""Official GLIGEN checkpoints: key mapping, safe loading, round trips, manifests and parity."""

from __future__ import annotations

import json
import sys
import types

import pytest
import torch

from gligen_eval.errors import GligenEvalError, InputError, MissingWeightsError
from gligen_eval.generation import checkpoints as C
from gligen_eval.generation.keypoint_net import KeypointPositionNet

SUPPORTED = ["text-box", "text-image-box", "keypoint", "inpaint-text-box", "inpaint-text-image-box"]
SPATIAL = ["hed", "canny", "depth", "normal", "sem"]


# --------------------------------------------------------------------------------------------
# tiny models and inputs


def _tiny_unet(modality: str, seed: int = 0):
    from gligen_eval.generation.tiny import TINY_HIDDEN, tiny_components

    spec = C.MODALITIES[modality]
    unet = tiny_components(
        seed=seed, sample_size=32, attention_type=spec.attention_type, in_channels=spec.in_channels
    )["unet"]
    g = torch.Generator().manual_seed(100 + seed)
    if spec.position_net == "keypoint":
        unet.position_net = KeypointPositionNet(out_dim=TINY_HIDDEN, hidden_dim=64)
    with torch.no_grad():  # every position-net weight random, so a mis-mapped key shows
        for p in unet.position_net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return unet.eval()


def _grounding(kind: str, batch: int, dim: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    if kind == "keypoint":
        return {"points": torch.rand(batch, 136, 2, generator=g), "masks": (torch.rand(batch, 136, generator=g) > 0.4).float()}
    n = 30
    boxes = torch.rand(batch, n, 4, generator=g)
    masks = (torch.rand(batch, n, generator=g) > 0.5).float()
    if kind == "text":
        return {"boxes": boxes, "masks": masks, "positive_embeddings": torch.randn(batch, n, dim, generator=g)}
    return {
        "boxes": boxes,
        "masks": masks,
        "phrases_masks": masks,
        "image_masks": (torch.rand(batch, n, generator=g) > 0.5).float() * masks,
        "phrases_embeddings": torch.randn(batch, n, dim, generator=g),
        "image_embeddings": torch.randn(batch, n, dim, generator=g),
    }


def _forward(unet, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    c = unet.config
    x = torch.randn(2, c.in_channels, 8, 8, generator=g)
    enc = torch.randn(2, 6, c.cross_attention_dim, generator=g)
    kind = C.position_net_kind(unet.state_dict())
    gligen = _grounding(kind, 2, c.cross_attention_dim, g)
    with torch.no_grad():
        return unet(x, 7, enc, cross_attention_kwargs={"gligen": gligen}).sample


# --------------------------------------------------------------------------------------------
# round trips through the official layout


@pytest.mark.parametrize("modality", SUPPORTED)
def test_official_round_trip_gives_identical_outputs(tmp_path, modality):
    unet = _tiny_unet(modality)
    path = C.save_official(unet, tmp_path / "gligen.bin")
    loaded, position_net, info = C.load_official_unet(path)
    assert info.modality == modality
    assert loaded.position_net is position_net
    assert type(position_net) is type(unet.position_net)
    assert info.config["in_channels"] == C.MODALITIES[modality].in_channels
    assert info.config["attention_head_dim"] == unet.config.attention_head_dim  # read from config_dict
    ours, back = unet.state_dict(), loaded.state_dict()
    assert set(ours) == set(back)
    assert all(torch.equal(ours[k], back[k]) for k in ours)
    assert torch.equal(_forward(unet), _forward(loaded))


def test_official_layout_names(tmp_path):
    unet = _tiny_unet("inpaint-text-box")
    official = C.to_official(unet)
    assert official["input_blocks.0.0.weight"].shape[1] == 9
    for key in (
        "time_embed.0.weight",
        "input_blocks.1.0.in_layers.2.weight",  # resnet conv1 of the first (DownBlock2D) block
        "input_blocks.2.0.op.weight",  # its downsampler
        "input_blocks.3.1.transformer_blocks.0.fuser.alpha_attn",
        "middle_block.1.transformer_blocks.0.fuser.linear.weight",
        "output_blocks.0.1.transformer_blocks.0.attn2.to_k.weight",
        "output_blocks.1.2.conv.weight",  # upsampler after a cross-attention up block
        "out.2.bias",
        "position_net.null_positive_feature",
    ):
        assert key in official, key
    adapter, base = C.split_official_keys(official, in_channels=9)
    assert "input_blocks.0.0.weight" in adapter and "input_blocks.0.0.bias" in base
    assert all(C.classify_official_key(k, in_channels=9) == "base" for k in base)


def test_keypoint_names_follow_the_documented_mapping():
    unet = _tiny_unet("keypoint")
    official = C.to_official(unet)
    pos = sorted(k for k in official if k.startswith("position_net."))
    assert pos == sorted("position_net." + k for k in (
        "person_embeddings", "keypoint_embeddings", "null_person_feature", "null_xy_feature",
        "linears.0.weight", "linears.0.bias", "linears.2.weight", "linears.2.bias", "linears.4.weight", "linears.4.bias",
    ))
    assert torch.equal(official["position_net.null_person_feature"], unet.position_net.null_identity_feature.detach())


def test_safetensors_official_file_with_base_config(tmp_path):
    unet = _tiny_unet("text-image-box", seed=1)
    path = C.save_official(unet, tmp_path / "gligen.safetensors")
    loaded, _, info = C.load_official_unet(path, base=unet.config, modality="text-image-box")
    assert info.parts == []
    assert torch.equal(_forward(unet, 3), _forward(loaded, 3))


def test_modality_mismatch_and_non_official_files(tmp_path):
    unet = _tiny_unet("text-box")
    path = C.save_official(unet, tmp_path / "m.pth")
    with pytest.raises(InputError, match="expected a keypoint checkpoint, but its weights are text-box"):
        C.load_official_unet(path, modality="keypoint")
    diffusers_layout = tmp_path / "unet.bin"
    torch.save(unet.state_dict(), diffusers_layout)
    with pytest.raises(InputError, match="not an official GLIGEN checkpoint"):
        C.load_official_unet(diffusers_layout)
    with pytest.raises(MissingWeightsError):
        C.load_official_unet(tmp_path / "absent.bin")
    with pytest.raises(GligenEvalError, match="does not fit the base"):
        C.load_official_unet(path, base={**dict(unet.config), "block_out_channels": [64, 128]})


def test_spatial_checkpoint_layouts_are_recognised(tmp_path):
    official = C.to_official(_tiny_unet("text-box"))
    official = {k: v for k, v in official.items() if not k.startswith("position_net.")}
    official["position_net.convnext_tiny_backbone.downsample_layers.0.0.weight"] = torch.zeros(8, 3, 4, 4)
    official["position_net.pos_embedding"] = torch.zeros(1, 4, 32)
    official["position_net.null_feature"] = torch.zeros(32)
    assert C.detect_official_modality({**official, "input_blocks.0.0.weight": torch.zeros(32, 5, 3, 3)}) == "hed"
    w = official["input_blocks.0.0.weight"]
    official["input_blocks.0.0.weight"] = torch.cat([w, torch.zeros(w.shape[0], 8, 3, 3)], 1)
    official["downsample_net.layers.0.weight"] = torch.zeros(4, 1, 4, 4)
    assert C.detect_official_modality(official) == "canny"  # canny and depth share one layout
    official["downsample_net.layers.0.weight"] = torch.zeros(4, 3, 4, 4)
    assert C.detect_official_modality(official) == "normal"
    official["position_net.in_conv.weight"] = torch.zeros(3, 152, 3, 3)
    official["downsample_net.layers.0.weight"] = torch.zeros(16, 152, 4, 4)
    assert C.detect_official_modality(official) == "sem"
    official["input_blocks.0.0.weight"] = w  # a spatial position net on a 4-channel UNet: no such model
    with pytest.raises(GligenEvalError, match="not a released GLIGEN modality"):
        C.detect_official_modality(official)


# --------------------------------------------------------------------------------------------
# safe loading


_EXECUTED: list[str] = []


def _side_effect(tag: str) -> str:
    _EXECUTED.append(tag)
    return tag


class _Payload:
    """Unpickling this calls _side_effect: what a malicious checkpoint would do."""

    def __reduce__(self):
        return (_side_effect, ("ran",))


def test_unsafe_pickle_is_refused_without_running_it(tmp_path):
    path = tmp_path / "evil.bin"
    torch.save({"model": {"input_blocks.0.0.weight": torch.zeros(1)}, "extra": _Payload()}, path)
    _EXECUTED.clear()
    with pytest.raises(InputError, match=r"evil\.bin: refusing to unpickle .*_side_effect") as err:
        C.read_checkpoint(path)
    assert "safetensors" in str(err.value)
    assert _EXECUTED == []

    legacy = tmp_path / "legacy.pt"  # the old (non-zip) format goes through the same unpickler
    torch.save({"x": _Payload()}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(InputError, match="refusing to unpickle"):
        C.read_checkpoint(legacy)
    assert _EXECUTED == []


def _fake_omegaconf(monkeypatch):
    """Stand-ins for OmegaConf classes, registered under the real module names only while saving."""
    root = types.ModuleType("omegaconf")
    mod = types.ModuleType("omegaconf.dictconfig")
    nodes = types.ModuleType("omegaconf.nodes")

    class DictConfig:
        def __init__(self, content):
            self._content = content
            self._metadata = None

    class AnyNode:
        def __init__(self, val):
            self._val = val

    DictConfig.__module__, DictConfig.__qualname__ = "omegaconf.dictconfig", "DictConfig"
    AnyNode.__module__, AnyNode.__qualname__ = "omegaconf.nodes", "AnyNode"
    mod.DictConfig, nodes.AnyNode = DictConfig, AnyNode
    for name, m in (("omegaconf", root), ("omegaconf.dictconfig", mod), ("omegaconf.nodes", nodes)):
        monkeypatch.setitem(sys.modules, name, m)
    return DictConfig, AnyNode


def test_pickled_config_objects_become_inert_placeholders(tmp_path, monkeypatch):
    unet = _tiny_unet("text-box", seed=2)
    DictConfig, AnyNode = _fake_omegaconf(monkeypatch)
    heads = int(unet.config.attention_head_dim)
    config = DictConfig({"model": DictConfig({"params": DictConfig({"num_heads": AnyNode(heads)})})})
    path = tmp_path / "official.bin"
    torch.save({"model": C.to_official(unet), "config_dict": vars(config), "autoencoder": {"w": torch.zeros(1)}}, path)
    for name in ("omegaconf", "omegaconf.dictconfig", "omegaconf.nodes"):
        monkeypatch.delitem(sys.modules, name)

    ckpt = C.read_checkpoint(path)
    assert isinstance(ckpt["config_dict"]["_content"]["model"], C.ConfigPlaceholder)
    assert C.official_config(ckpt) == {"model": {"params": {"num_heads": heads}}}
    loaded, _, info = C.load_official_unet(path)
    assert info.parts == ["autoencoder"]
    assert info.config["attention_head_dim"] == heads  # not the SD default of 8
    assert torch.equal(_forward(unet), _forward(loaded))


# --------------------------------------------------------------------------------------------
# full-size manifests and official parity (reference data beside the repository)


def _manifest(official_dir, modality: str) -> dict:
    spec = C.MODALITIES[modality]
    return json.loads((official_dir / "manifests" / f"{spec.manifest}.json").read_text())


def _meta_state(manifest: dict) -> dict[str, torch.Tensor]:
    return {k: torch.empty(shape, device="meta") for k, shape in manifest["params"].items()}


@pytest.mark.parametrize("modality", SUPPORTED)
def test_manifest_maps_every_official_key(official_dir, modality, record_property):
    manifest = _manifest(official_dir, modality)
    official = _meta_state(manifest)
    spec = C.MODALITIES[modality]
    assert C.detect_official_modality(official) == modality

    adapter, base = C.split_official_keys(official, in_channels=spec.in_channels)
    assert sorted(adapter) == sorted(manifest["adapter_keys"])
    assert len(base) == (686 if spec.in_channels == 4 else 685)
    record_property("adapter_keys", len(adapter))
    record_property("frozen_base_keys", len(base))

    config = C.unet_config_from_official(official, modality=modality)
    assert config == C.sd14_unet_config(modality)
    state = C.convert_official_state_dict(official, config, position_net=spec.position_net)
    pos = {k[len("position_net."):]: v for k, v in state.items() if k.startswith("position_net.")}
    unet = C.build_unet(config, position_net=spec.position_net, position_state=pos)  # meta: no memory
    ours = unet.state_dict()
    assert set(state) == set(ours)
    mismatched = [k for k in ours if tuple(ours[k].shape) != tuple(state[k].shape)]
    assert mismatched == []
    C.load_converted(unet, state)  # the same strict load a real checkpoint goes through

    back = C.to_official(unet)
    assert set(back) == set(official)
    ours_adapter = [k for k in ours if C.classify_key(k, in_channels=spec.in_channels) != "base"]
    assert len(ours_adapter) == len(adapter)
    if spec.in_channels == 9:
        assert "conv_in.weight" in ours_adapter


@pytest.mark.parametrize("modality", SPATIAL)
def test_manifest_spatial_keys_are_classified(official_dir, modality):
    manifest = _manifest(official_dir, modality)
    official = _meta_state(manifest)
    in_ch = manifest["params"]["input_blocks.0.0.weight"][1]
    adapter, base = C.split_official_keys(official, in_channels=in_ch)
    assert sorted(adapter) == sorted(manifest["adapter_keys"])
    assert len(base) == 685
    detected = C.detect_official_modality(official)
    assert detected == ("canny" if modality == "depth" else modality)  # canny and depth share one layout
    # every key maps onto our UNet (position net and downsampler under their own names) and back
    config = C.unet_config_from_official(official, modality=modality)
    assert config == C.sd14_unet_config(modality)
    state = C.convert_official_state_dict(official, config, position_net=modality)
    pos = {k[len("position_net."):]: v for k, v in state.items() if k.startswith("position_net.")}
    down = {k[len("downsample_net."):]: v for k, v in state.items() if k.startswith("downsample_net.")}
    unet = C.build_unet(config, position_net=modality, position_state=pos, downsampler_state=down)
    ours = unet.state_dict()
    assert set(state) == set(ours)
    assert [k for k in ours if tuple(ours[k].shape) != tuple(state[k].shape)] == []
    C.load_converted(unet, state)
    assert set(C.to_official(unet)) == set(official)
    assert unet.position_net.num_tokens == 64 and unet.downsample_net.out_dim == (1 if modality == "hed" else 8)


def test_frozen_base_keys_are_the_same_for_every_modality(official_dir):
    bases = []
    for modality in SUPPORTED + SPATIAL:
        manifest = _manifest(official_dir, modality)
        in_ch = manifest["params"]["input_blocks.0.0.weight"][1]
        _, base = C.split_official_keys(manifest["params"], in_channels=in_ch)
        bases.append({k: manifest["params"][k] for k in base})
    common = set.intersection(*(set(b) for b in bases))
    assert len(common) == 685
    assert all(b[k] == bases[0][k] for b in bases for k in common)


def test_official_text_position_net_fixture_parity(official_dir):
    from diffusers.models.embeddings import GLIGENTextBoundingboxProjection
    from safetensors.torch import load_file

    fx = load_file(str(official_dir / "fixtures" / "text_positionnet_A.safetensors"))
    official_state = {"position_net." + k[len("state."):]: v for k, v in fx.items() if k.startswith("state.")}
    net = C.position_net_from_official(official_state)
    assert isinstance(net, GLIGENTextBoundingboxProjection)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            out = net(boxes=fx["input.boxes"], masks=fx["input.masks"], positive_embeddings=fx["input.positive_embeddings"])
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(out, fx["output.objs"], atol=1e-5, rtol=1e-4)
