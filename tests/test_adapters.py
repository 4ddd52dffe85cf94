"""Adapters as Lego: save / apply / unplug identities, fingerprints, frozen-base check, describe."""

from __future__ import annotations

import copy
import json
import warnings

import pytest
import torch

from gligen_eval.errors import GligenEvalError, InputError
from gligen_eval.generation import adapters as A
from gligen_eval.generation import checkpoints as C
from gligen_eval.generation.keypoint_net import KeypointPositionNet

MODALITIES = ["text-box", "text-image-box", "keypoint", "inpaint-text-box", "inpaint-text-image-box"]


def _tiny_gligen(modality: str, seed: int = 0):
    from gligen_eval.generation.tiny import TINY_HIDDEN, tiny_components

    spec = C.MODALITIES[modality]
    unet = tiny_components(
        seed=seed, sample_size=32, attention_type=spec.attention_type, in_channels=spec.in_channels
    )["unet"]
    if spec.position_net == "keypoint":
        unet.position_net = KeypointPositionNet(out_dim=TINY_HIDDEN, hidden_dim=64)
    g = torch.Generator().manual_seed(200 + seed)
    with torch.no_grad():
        for p in unet.position_net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return unet.eval()


def _gligen_kwargs(unet, batch: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    kind = C.position_net_kind(unet.state_dict())
    dim = unet.config.cross_attention_dim
    if kind == "keypoint":
        return {"points": torch.rand(batch, 136, 2, generator=g), "masks": (torch.rand(batch, 136, generator=g) > 0.4).float()}
    boxes = torch.rand(batch, 30, 4, generator=g)
    masks = (torch.rand(batch, 30, generator=g) > 0.5).float()
    if kind == "text":
        return {"boxes": boxes, "masks": masks, "positive_embeddings": torch.randn(batch, 30, dim, generator=g)}
    return {
        "boxes": boxes, "masks": masks, "phrases_masks": masks, "image_masks": masks,
        "phrases_embeddings": torch.randn(batch, 30, dim, generator=g),
        "image_embeddings": torch.randn(batch, 30, dim, generator=g),
    }


def _run(unet, *, grounded: bool, in_channels: int | None = None, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ch = in_channels or unet.config.in_channels
    x = torch.randn(2, ch, 8, 8, generator=g)
    enc = torch.randn(2, 6, unet.config.cross_attention_dim, generator=g)
    kwargs = {"cross_attention_kwargs": {"gligen": _gligen_kwargs(unet, 2, g)}} if grounded else {}
    with torch.no_grad():
        return unet(x, 11, enc, **kwargs).sample


def _plain_base(gligen, seed: int = 5):
    """A plain 4-channel SD UNet holding ``gligen``'s frozen-base weights (random input conv if it had 9)."""
    if gligen.config.in_channels == 4:
        return A.unplug(gligen)
    g = torch.Generator().manual_seed(seed)
    conv = torch.randn(gligen.config.block_out_channels[0], 4, 3, 3, generator=g) * 0.05
    return A.unplug(gligen, base={"conv_in.weight": conv})


@pytest.mark.parametrize("modality", MODALITIES)
def test_save_apply_unplug_identities(tmp_path, modality):
    gligen = _tiny_gligen(modality)
    path = A.save_adapter(gligen, tmp_path / "adapter.safetensors", source="test")
    state, meta = A.load_adapter(path)
    assert meta["modality"] == modality
    assert all(C.classify_key(k, in_channels=gligen.config.in_channels) != "base" for k in state)
    assert all(".fuser." in k or k.startswith("position_net.") or k == "conv_in.weight" for k in state)
    inpaint = gligen.config.in_channels == 9
    assert json.loads(meta["replaces_base_keys"]) == (["conv_in.weight"] if inpaint else [])

    base = _plain_base(gligen)
    assert base.config.attention_type == "default" and base.config.in_channels == 4
    assert not any(".fuser." in k or k.startswith("position_net.") for k in base.state_dict())

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same base: no fingerprint warning
        plugged = A.apply_adapter(base, path)
    assert plugged.config.attention_type == gligen.config.attention_type
    # plugged == the original GLIGEN model, bit for bit
    assert torch.equal(_run(plugged, grounded=True), _run(gligen, grounded=True))
    # the base tensors are shared, not copied
    assert plugged.mid_block.resnets[0].conv1.weight.data_ptr() == base.mid_block.resnets[0].conv1.weight.data_ptr()

    unplugged = A.unplug(plugged)
    assert torch.equal(_run(unplugged, grounded=False), _run(base, grounded=False))
    ref, back = base.state_dict(), unplugged.state_dict()
    assert set(ref) == set(back) and all(torch.equal(ref[k], back[k]) for k in ref)
    if not inpaint:  # without grounding kwargs a gated UNet is its base
        assert torch.equal(_run(plugged, grounded=False), _run(base, grounded=False))
        assert not torch.equal(_run(plugged, grounded=True), _run(plugged, grounded=False))


def test_unplugging_an_inpainting_unet_needs_the_base_input_conv():
    gligen = _tiny_gligen("inpaint-text-box")
    with pytest.raises(GligenEvalError, match="pass base="):
        A.unplug(gligen)


def test_adapter_on_another_base_warns_errors_or_stays_silent(tmp_path):
    gligen = _tiny_gligen("text-box")
    path = A.save_adapter(gligen, tmp_path / "a.safetensors")
    other = A.unplug(_tiny_gligen("text-box", seed=7))
    with pytest.warns(UserWarning, match="different or modified base"):
        plugged = A.apply_adapter(other, path)
    assert torch.equal(_run(plugged, grounded=False), _run(other, grounded=False))
    with pytest.raises(GligenEvalError, match="different or modified base"):
        A.apply_adapter(other, path, on_base_mismatch="error")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        A.apply_adapter(other, path, on_base_mismatch="ignore")


def test_load_adapter_rejects_other_files(tmp_path):
    from safetensors.torch import save_file

    p = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(p))
    with pytest.raises(InputError, match="plain.safetensors: not a gligen-eval-adapter file"):
        A.load_adapter(p)
    with pytest.raises(GligenEvalError, match="no position net"):
        A.save_adapter(A.unplug(_tiny_gligen("text-box")), tmp_path / "x.safetensors")


def test_base_fingerprint_covers_base_weights_only():
    gligen = _tiny_gligen("text-box")
    base = A.unplug(gligen)
    fp = A.base_fingerprint(gligen)
    assert fp.startswith("sha256:") and fp == A.base_fingerprint(base)
    assert A.adapter_fingerprint(gligen) != A.adapter_fingerprint(_tiny_gligen("text-box", seed=1))

    tuned = copy.deepcopy(gligen)
    with torch.no_grad():
        tuned.down_blocks[1].attentions[0].transformer_blocks[0].fuser.alpha_attn.add_(0.1)
    assert A.base_fingerprint(tuned) == fp  # adapter weights do not count
    with torch.no_grad():
        tuned.up_blocks[1].resnets[0].conv2.bias[3] += 1e-6
    assert A.base_fingerprint(tuned) != fp


def test_frozen_base_check_catches_a_single_changed_weight(tmp_path):
    gligen = _tiny_gligen("text-box")
    base = A.unplug(gligen)
    n_base = len(base.state_dict())

    report = A.frozen_base_check(base, gligen)
    assert report.ok and report.checked == n_base and report.changed == []
    assert report.base_fingerprint == report.candidate_base_fingerprint
    assert "frozen base intact" in report.summary()

    bad = copy.deepcopy(gligen)
    key = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight"
    with torch.no_grad():
        bad.get_parameter(key)[0, 0] += 1e-3
    report = A.frozen_base_check(base, bad)
    assert not report.ok
    assert [c["key"] for c in report.changed] == [key]
    assert report.changed[0]["max_abs_diff"] == pytest.approx(1e-3, rel=1e-3)
    assert "1 changed" in report.summary() and key in report.summary()
    assert A.frozen_base_check(base, bad, atol=1e-2).ok
    json.dumps(report.to_dict())

    # the same check on an official-layout checkpoint file
    path = C.save_official(bad, tmp_path / "trained.bin")
    report = A.frozen_base_check(base, path)
    assert [c["key"] for c in report.changed] == [key]

    # and on an adapter file: only the recorded base fingerprint can be compared
    adapter = A.save_adapter(gligen, tmp_path / "a.safetensors")
    assert A.frozen_base_check(base, adapter).ok
    assert not A.frozen_base_check(A.unplug(bad), adapter).ok


def test_frozen_base_check_on_inpainting_reports_the_replaced_input_conv():
    gligen = _tiny_gligen("inpaint-text-box")
    base = _plain_base(gligen)
    report = A.frozen_base_check(base, gligen)
    assert report.ok
    assert report.replaced_by_adapter == ["conv_in.weight"]
    assert report.checked == len(base.state_dict()) - 1

    fewer = {k: v for k, v in gligen.state_dict().items() if k != "conv_in.bias"}
    report = A.frozen_base_check(base, fewer)
    assert not report.ok and report.missing == ["conv_in.bias"]


def test_describe_checkpoint(tmp_path):
    gligen = _tiny_gligen("keypoint")
    official = C.save_official(gligen, tmp_path / "kp.bin")
    d = A.describe_checkpoint(official)
    assert d["kind"] == "official" and d["modality"] == "keypoint" and d["supported"]
    assert d["base_fingerprint"] == A.base_fingerprint(gligen)
    assert d["adapter_fingerprint"] == A.adapter_fingerprint(gligen)
    assert d["file_sha256"].startswith("sha256:") and d["bytes"] == official.stat().st_size
    assert d["groups"]["fuser"] == sum(".fuser." in k for k in gligen.state_dict())
    json.dumps(d)

    adapter = A.save_adapter(gligen, tmp_path / "kp.safetensors", source="unit test")
    d = A.describe_checkpoint(adapter, hash_file=False)
    assert d["kind"] == "adapter" and d["source"] == "unit test" and "file_sha256" not in d
    assert d["base_fingerprint"] == A.base_fingerprint(gligen)
    assert d["adapter_fingerprint"] == A.adapter_fingerprint(gligen)

    text = _tiny_gligen("text-box")
    folder = tmp_path / "models--org--gligen-tiny" / "snapshots" / "abc123"
    text.save_pretrained(folder / "unet")
    d = A.describe_checkpoint(folder)
    assert d["kind"] == "diffusers-unet" and d["modality"] == "text-box"
    assert d["origin"] == {"hub_id": "org/gligen-tiny", "revision": "abc123"}
    assert d["base_fingerprint"] == A.base_fingerprint(text)
    json.dumps(d)
